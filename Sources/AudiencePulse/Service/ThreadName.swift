import Foundation

/// Names the calling thread as the operating system shows it (`top -H`,
/// `/proc/<pid>/task/*/comm`, profilers, and the benchmark's CPU time by thread): on
/// Linux the name given to a `Thread` before it starts stays inside Foundation. The
/// kernel keeps at most 15 bytes. Does nothing where `/proc/thread-self` does not exist.
enum ThreadName {
    private static let path = "/proc/thread-self/comm"

    static func setCurrent(_ name: String) {
        try? String(decoding: name.utf8.prefix(15), as: UTF8.self).write(toFile: path, atomically: false, encoding: .utf8)
    }
}
