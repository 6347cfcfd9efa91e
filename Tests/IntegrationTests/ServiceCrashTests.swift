import AudiencePulse
import Foundation
import Kafka
import Testing

@Suite("The service survives crashes", .serialized)
struct ServiceCrashTests {
    @Test("SIGKILL at several points while events stream in: final records stay exact and identical on repeat (exactly_once with two stage-1 workers)",
          arguments: ["exactly_once", "at_least_once"])
    func killAndRestart(guarantee: String) async throws {
        let scenario = try await ServiceScenario(prefix: "crash", partitions: 4, guarantee: guarantee)
        // Two workers: two transactional producers per process, each fencing its own
        // predecessor after a restart.
        let workers = guarantee == "exactly_once" ? 2 : 1
        let environment = ["PULSE_PROCESSING__STAGE1_WORKERS": "\(workers)"]
        // Events stream in over about 12 s while the service is killed and restarted.
        let feeding = scenario.feed()
        // Kill each run at a different moment after it got its partitions and began.
        for (round, runFor) in [Duration.milliseconds(1_500), .milliseconds(700), .milliseconds(2_500)].enumerated() {
            let service = try scenario.start(instance: "c1", environment: environment)
            let assigned = try await service.waitForLog("stage 1 assigned", count: (round + 1) * workers, timeout: .seconds(60))
            #expect(assigned, "round \(round): the service got its partitions")
            try await Task.sleep(for: runFor)
            #expect(service.process.isRunning, "round \(round): the service is still running before the kill")
            service.kill()
        }
        try await feeding.value

        let final = try scenario.start(instance: "c1", environment: environment)
        let messages = try await scenario.awaitFinals()
        let status = try await final.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM drains and exits 0")
        // Killed transactions can leave the local broker's last stable offset stale for
        // good (seen once: every partials partition's committed view ended where the first
        // killed run had left it); only then may final records be missing.
        try await scenario.verifyFinalsAfterExit(messages, guarantee)
        print("service log (\(guarantee)): \(scenario.log(of: "c1").path)")
    }

    @Test("static assignment fetches each partition ahead of its restore, at its committed offset; killed while its commits ran past its last checkpoint, the restarted service moves the partitions back to their checkpoints, and final records stay exact; restarted once more and stopped without new input, it writes no checkpoint")
    func staticReadAheadAfterKill() async throws {
        let scenario = try await ServiceScenario(prefix: "readahead", partitions: 4)
        // Checkpoints every 2 s, while offsets are committed with the partials every
        // 100 ms or so: when the process is killed, every partition still receiving events
        // has a committed offset past its checkpoint's.
        let environment = ["PULSE_PROCESSING__ASSIGNMENT": "static", "PULSE_PROCESSING__STAGE1_WORKERS": "2",
                           "PULSE_PROCESSING__CHECKPOINT_INTERVAL": "2s", "PULSE_PROCESSING__COMMIT_INTERVAL": "100ms"]
        let feeding = scenario.feed(slice: 250, pause: .milliseconds(250))
        let first = try scenario.start(instance: "r1", environment: environment)
        #expect(try await first.waitForLog("stage 1 assigned", count: 2, timeout: .seconds(60)), "the first run got its partitions")
        try await Task.sleep(for: .seconds(3))
        #expect(first.process.isRunning, "the first run is still running before the kill")
        first.kill()
        let moved = "resume at their checkpoints, not where they were fetched ahead"
        #expect(first.logCount(moved) == 0, "a first run without checkpoints starts where it fetched ahead")
        let restarted = try scenario.start(instance: "r1", environment: environment)
        try await feeding.value
        let messages = try await scenario.awaitFinals()
        #expect(restarted.logCount(moved) >= 1, "the restart moved partitions fetched ahead back to their checkpoints")
        let status = try await restarted.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM drains and exits 0")

        // Restarted on that state and stopped once ready, with nothing new to read (and
        // no idle timeout moving watermarks meanwhile): no partition changed, so its stop
        // writes no checkpoint and both changelogs end where they ended.
        let changelogs = [scenario.configuration.stageOneChangelog, scenario.configuration.stageTwoChangelog]
        var ends: [[Int32: Int64]] = []
        for changelog in changelogs { ends.append(try await scenario.lastOffsets(changelog)) }
        #expect(ends.allSatisfy { !$0.isEmpty }, "both stages checkpointed before")
        var quiet = environment
        quiet["PULSE_TIME__IDLE_TIMEOUT"] = "1h"
        let unchanged = try scenario.start(instance: "r1", environment: quiet)
        #expect(try await unchanged.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)), "restored and ready")
        #expect(try await unchanged.terminate(timeout: .seconds(30)) == 0)
        for (changelog, before) in zip(changelogs, ends) {
            #expect(try await scenario.lastOffsets(changelog) == before, "\(changelog): nothing written by a stop without changes")
        }
        try await scenario.verifyFinalsAfterExit(messages, "read ahead")
        print("service log (read ahead): \(scenario.log(of: "r1").path)")
    }

    @Test("paused (SIGSTOP) after reading all its input, the service still closes its last window by idleness, exactly; also when the input was written in transactions (commit markers at the end)", arguments: [false, true])
    func pausedAfterTheEnd(transactionalInput: Bool) async throws {
        let scenario = try await ServiceScenario(prefix: transactionalInput ? "paused-txn" : "paused", partitions: 2, events: 3_000)
        // Static assignment: no group session to lose while the process is stopped.
        let service = try scenario.start(instance: "p1", environment: ["PULSE_PROCESSING__ASSIGNMENT": "static"])
        #expect(try await service.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)), "the service got ready")
        try await scenario.feed(slice: transactionalInput ? 1_000 : 3_000, pause: .zero, transactional: transactionalInput).value
        // Every event read: the partitions are at their end, and the last window (its
        // events end before now) waits for the 2 s idle timeout.
        var consumed = false
        for _ in 0..<100 where !consumed {
            let metrics = await service.get("/metrics")?.body ?? ""
            consumed = metrics.split(separator: "\n").contains("pulse_events_consumed_total 3000")
            if !consumed { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(consumed, "the service read every event")
        // Stopped for longer than half the idle timeout, the process finds on waking that
        // it stalled and must not take the partitions' quiet for granted; nothing new
        // arrives, so it has to ask the broker whether they are still read to their end
        // (with transactional input, the end lies past the last commit marker).
        try await Task.sleep(for: .milliseconds(300))
        service.signal(SIGSTOP)
        try await Task.sleep(for: .seconds(2))
        service.signal(SIGCONT)
        let messages = try await scenario.awaitFinals(patience: .seconds(60))
        let status = try await service.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM drains and exits 0")
        try scenario.verifyFinals(messages, "paused")
        print("service log (paused): \(scenario.log(of: "p1").path)")
    }
}
