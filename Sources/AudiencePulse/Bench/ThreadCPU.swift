import Foundation

/// CPU time of this process's threads by what they do, from `/proc/self/task`: the
/// benchmark's answer to "where did the time go" for every run, as shares that do not
/// depend on how fast the machine happened to be. Threads are grouped by the names the
/// service gives them (``ThreadName``); helper threads a stage starts inherit its name.
/// A thread that ended between readings counts with its last reading
/// (``now(keeping:)``); one that ended before any (restore consumers, say) is not seen and
/// falls into `other`, which is the process's total less the named groups. (The suite runs
/// the two stages alone: `pulse serve`'s read model and HTTP server are not part of it.)
struct ThreadCPU: Sendable {
    /// Seconds of user + system time per thread id, with the thread's name.
    let threads: [Int: (name: String, seconds: Double)]

    /// The groups, in the order reported.
    static let groups = ["stage 1", "stage 2", "client library", "other"]

    static func group(ofThreadNamed name: String) -> String {
        if name.hasPrefix("pulse-stage-1") { return "stage 1" }
        if name.hasPrefix("pulse-stage-2") { return "stage 2" }
        if name.hasPrefix("rdk:") { return "client library" }
        return "other"
    }

    /// The process's threads now (empty where `/proc` does not exist).
    static func now() -> ThreadCPU {
        var threads: [Int: (name: String, seconds: Double)] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            guard let id = Int(entry),
                  let name = try? String(contentsOfFile: "/proc/self/task/\(entry)/comm", encoding: .utf8),
                  let seconds = SuiteBenchmark.cpuSeconds(statFile: "/proc/self/task/\(entry)/stat") else { continue }
            threads[id] = (name.trimmingCharacters(in: .newlines), seconds)
        }
        return ThreadCPU(threads: threads)
    }

    /// The process's threads now, and those of `earlier` that have ended since, as last read.
    static func now(keeping earlier: ThreadCPU) -> ThreadCPU {
        ThreadCPU(threads: earlier.threads.merging(now().threads) { _, current in current })
    }

    /// Seconds per group spent since `earlier`; `other` makes the groups add up to
    /// `processSeconds`, the process's CPU time over the same span.
    func seconds(since earlier: ThreadCPU, processSeconds: Double) -> [(group: String, seconds: Double)] {
        var byGroup: [String: Double] = [:]
        for (id, thread) in threads {
            let spent = thread.seconds - (earlier.threads[id]?.seconds ?? 0)
            byGroup[Self.group(ofThreadNamed: thread.name), default: 0] += max(spent, 0)
        }
        let named = Self.groups.dropLast().reduce(0) { $0 + (byGroup[$1] ?? 0) }
        byGroup["other"] = max(processSeconds - named, 0)
        return Self.groups.map { ($0, byGroup[$0] ?? 0) }
    }
}
