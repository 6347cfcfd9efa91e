import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `pulse serve` as a child process that the test can signal, stop and kill.
// @unchecked: the fields are set once in init; Process and the log file are safe to use from any task.
final class ServiceProcess: @unchecked Sendable {
    let process = Process()
    let log: URL
    let httpPort: Int

    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    static var binary: URL { root.appendingPathComponent(".build/debug/pulse") }

    /// Starts `pulse serve` (with `arguments` after its own); output is appended to `log`,
    /// which several runs may share.
    init(config: URL, instance: String, log: URL, httpPort: Int = 0, environment: [String: String] = [:], command: String = "serve",
         arguments: [String] = []) throws {
        self.log = log
        self.httpPort = httpPort
        process.executableURL = Self.binary
        process.arguments = (command == "serve" ? ["serve", "--config", config.path, "--instance-id", instance] : [command, "--config", config.path]) + arguments
        var variables = ProcessInfo.processInfo.environment
        if httpPort != 0 { variables["PULSE_HTTP__LISTEN"] = "127.0.0.1:\(httpPort)" }
        for (key, value) in environment { variables[key] = value }
        process.environment = variables
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Waits until the log shows `text` at least `count` times (all runs share the log).
    func waitForLog(_ text: String, count: Int, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if logCount(text) >= count { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// How often `text` occurs in the log so far.
    func logCount(_ text: String) -> Int {
        ((try? String(contentsOf: log, encoding: .utf8)) ?? "").components(separatedBy: text).count - 1
    }

    /// The log lines so far that contain `text`.
    func logLines(containing text: String) -> [String] {
        ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains(text) }.map(String.init)
    }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func signal(_ number: Int32) { Foundation.kill(process.processIdentifier, number) }

    /// The exit status once the process exits by itself (nil if it still runs after `timeout`).
    func exitStatus(within timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// SIGTERM, then the exit status (nil if it did not exit within `timeout`).
    func terminate(timeout: Duration) async throws -> Int32? {
        process.terminate()
        if let status = try await exitStatus(within: timeout) { return status }
        kill()
        return nil
    }

    /// GET `path` from the service's HTTP server: status and body (nil if nothing answered).
    func get(_ path: String) async -> (status: Int, body: String)? {
        guard let url = URL(string: "http://127.0.0.1:\(httpPort)\(path)") else { return nil }
        var request = URLRequest(url: url)
        request.timeoutInterval = 5
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, String(decoding: data, as: UTF8.self))
    }

    /// Polls `path` until it answers `status` or `timeout` passes.
    func waitForHTTP(_ path: String, status: Int, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await get(path)?.status == status { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now.
    static func freePort() -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(socket, generic, length) == 0 && getsockname(socket, generic, &length) == 0
            }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : 0
    }
}
