import AudiencePulse
import Foundation
import Kafka
import Testing

// More child-process scenarios, in the serialized suite of the crash tests so that no two
// groups of service processes compete for the CPU at once.
extension ServiceCrashTests {
    @Test("HTTP: /healthz answers at once, /readyz once partitions are restored, /metrics counts exactly what was processed — with two stage-1 workers")
    func operationsEndpoints() async throws {
        let scenario = try await ServiceScenario(prefix: "ops", partitions: 4, events: 3_000, users: 150, seed: 11)
        try await scenario.feed(slice: 10_000, pause: .zero).value
        // Trimming every 100 ms: the process runs for seconds, so it must have trimmed.
        let service = try scenario.start(
            instance: "o1", environment: ["PULSE_PROCESSING__STAGE1_WORKERS": "2", "PULSE_PROCESSING__MEMORY_TRIM_INTERVAL": "100ms"])
        #expect(try await service.waitForHTTP("/healthz", status: 200, timeout: .seconds(30)), "/healthz answers 200")
        #expect(try await service.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)), "/readyz turns 200")
        let messages = try await scenario.awaitFinals()
        try scenario.verifyFinals(messages, "ops")

        let metrics = await service.get("/metrics")
        #expect(metrics?.status == 200)
        let text = metrics?.body ?? ""
        func sample(_ series: String) -> Int? {
            text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Int($0.split(separator: " ").last ?? "") }
        }
        let audience = scenario.audience
        #expect(text.contains("\npulse_events_consumed_total \(audience.messages.count)\n"), "consumed")
        #expect(text.contains("\npulse_events_valid_total \(audience.valid.count)\n"), "valid")
        #expect(text.contains("\npulse_events_invalid_total \(audience.malformed)\n"), "invalid")
        #expect(text.contains("\npulse_events_duplicate_total \(audience.duplicates)\n"), "duplicates")
        #expect(text.contains("\npulse_dead_letters_total \(audience.malformed)\n"), "dead letters")
        #expect(text.contains("\npulse_ready 1\n"))
        for partition in 0..<4 {
            #expect(text.contains("pulse_consumer_lag{stage=\"1\",topic=\"\(scenario.input)\",partition=\"\(partition)\"} 0\n"), "lag of input partition \(partition) is 0 once all is read")
        }
        for histogram in ["pulse_batch_processing_seconds", "pulse_input_delay_seconds", "pulse_event_to_metric_seconds", "pulse_window_close_delay_seconds"] {
            #expect(text.contains("# TYPE \(histogram) histogram"), "\(histogram) exposed")
            #expect(!text.contains("\n\(histogram)_count 0\n"), "\(histogram) observed something")
        }
        #expect((sample("pulse_memory_trims_total") ?? 0) > 0, "the trimming thread ran")
        // The input is keyed by user: each user's state is on one partition, counted once.
        #expect(sample("pulse_tracked_users") == Set(audience.valid.map(\.user)).count, "tracked users")
        let finals = Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count
        #expect(text.contains("\npulse_final_records_total \(finals)\n"), "final records")
        // Both stages checkpointed (each at least once per partition, on drain if not
        // before), and count what they wrote.
        for (stage, partitions) in [("1", 4), ("2", scenario.configuration.partialsPartitions)] {
            let written = sample("pulse_checkpoints_total{stage=\"\(stage)\"}") ?? -1
            let incremental = sample("pulse_incremental_checkpoints_total{stage=\"\(stage)\"}") ?? -1
            let bytes = sample("pulse_checkpoint_bytes_total{stage=\"\(stage)\"}") ?? -1
            #expect(written >= partitions && (0...written).contains(incremental) && bytes > written, "stage \(stage): \(written) checkpoints, \(incremental) increments, \(bytes) bytes")
        }

        let status = try await service.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM drains and exits 0")
        #expect(service.logCount("stage 1 stopped") == 2 && service.logCount("stage 2 stopped") == 1, "both stages, and both stage-1 workers, drained")
        let restores = service.logLines(containing: "restored input partition")
        for worker in 0..<2 {
            #expect(restores.contains { $0.contains(" worker=\(worker) ") }, "stage-1 worker \(worker) restored input partitions")
        }
    }

    @Test("A partition with a committed offset but no readable checkpoint is not started without its state: retried and reported, not ready")
    func committedOffsetWithoutCheckpoint() async throws {
        let scenario = try await ServiceScenario(prefix: "nockpt", partitions: 2, events: 1_000, users: 50, seed: 13)
        try await scenario.feed(slice: 10_000, pause: .zero).value
        // The group's offset for partition 0 says 100 records were processed, yet no
        // checkpoint exists: starting there with an empty state would silently drop them.
        let committer = try TestBroker.consumer(group: scenario.app)
        try committer.assign([KafkaTopicPartition(topic: scenario.input, partition: 0, offset: KafkaTopicPartition.beginning)])
        try await committer.commit([KafkaTopicPartition(topic: scenario.input, partition: 0, offset: 100)])
        try await committer.close()

        // No trimming (`0s`): in a process of its own, so no other service started the thread.
        let service = try scenario.start(instance: "n1", environment: ["PULSE_PROCESSING__MEMORY_TRIM_INTERVAL": "0s"])
        #expect(try await service.waitForLog("no checkpoint is readable", count: 2, timeout: .seconds(60)), "reported, and retried")
        #expect(await service.get("/readyz")?.status == 503, "not ready while a partition cannot be restored")
        let metrics = await service.get("/metrics")?.body ?? ""
        #expect(metrics.contains("\npulse_final_records_total 0\n"), "nothing final was produced from a partial state")
        #expect(metrics.contains("\npulse_final_records_total ") && !metrics.contains("pulse_memory_trims_total"), "a zero trim interval starts no trimming thread")
        let status = try await service.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM still drains and exits 0")
    }

    @Test("Scale-out: a second process joins mid-stream and the first leaves mid-stream on 8 partitions; results exact")
    func scaleOut() async throws {
        let scenario = try await ServiceScenario(prefix: "scale", partitions: 8, events: 12_000, users: 300, seed: 21)
        // Events stream in for about 25 s, from the start (no gap long enough for the
        // partitions to count as idle).
        let feeding = scenario.feed(slice: 250, pause: .milliseconds(500))
        let first = try scenario.start(instance: "s1")
        #expect(try await first.waitForLog("stage 1 assigned", count: 1, timeout: .seconds(60)))
        try await Task.sleep(for: .seconds(2))
        let second = try scenario.start(instance: "s2")
        // The group rebalances: both processes get a share.
        #expect(try await second.waitForLog("stage 1 assigned", count: 1, timeout: .seconds(60)), "the second process got a share")
        #expect(try await first.waitForLog("stage 1 assigned", count: 2, timeout: .seconds(30)), "the first process gave a share away")
        try await Task.sleep(for: .seconds(2))
        let firstStatus = try await first.terminate(timeout: .seconds(30))
        #expect(firstStatus == 0, "the first process drains and exits 0 while events still stream in")
        #expect(try await second.waitForLog("stage 1 assigned", count: 2, timeout: .seconds(60)), "the second process took over")
        try await feeding.value
        let messages = try await scenario.awaitFinals()
        let secondStatus = try await second.terminate(timeout: .seconds(30))
        #expect(secondStatus == 0)
        print("service logs (scale-out): \(scenario.directory.path)")
        // With every process gone, no transaction is open: a partials partition whose
        // committed view still ends early is the local broker's stale last stable offset
        // (ENVIRONMENT.md), which no read_committed reader can pass. Then the missing
        // final records are the broker's, and the ones present must still be exact.
        try await scenario.verifyFinalsAfterExit(messages, "scale-out")
    }

    @Test("Zombie: one of two processes is stopped past the session timeout, its partitions move, then it resumes; results exact")
    func zombie() async throws {
        let scenario = try await ServiceScenario(prefix: "zombie", partitions: 4, events: 14_000, users: 300, seed: 31)
        let feeding = scenario.feed(slice: 250, pause: .milliseconds(500))
        let healthy = try scenario.start(instance: "z1")
        let zombie = try scenario.start(instance: "z2")
        #expect(try await zombie.waitForLog("stage 1 assigned", count: 1, timeout: .seconds(60)), "the second process joined")
        try await Task.sleep(for: .seconds(2))
        let assignmentsBefore = healthy.logCount("stage 1 assigned")
        zombie.signal(SIGSTOP)
        // session.timeout.ms is 6 s in the test configuration: the group moves the
        // stopped process's partitions to the healthy one.
        #expect(try await healthy.waitForLog("stage 1 assigned", count: assignmentsBefore + 1, timeout: .seconds(60)), "the partitions moved")
        try await Task.sleep(for: .seconds(2))
        zombie.signal(SIGCONT)
        try await feeding.value
        let messages = try await scenario.awaitFinals()
        for process in [zombie, healthy] {
            let status = try await process.terminate(timeout: .seconds(30))
            #expect(status == 0)
        }
        // Final partials announced by close markers but never delivered by the broker hold
        // their windows back (reported, not finalized wrong), and the resumed process's
        // transaction may leave the local broker's last stable offset stale on a partials
        // partition (no fencing there); only then may finals be missing.
        let held = [zombie, healthy].contains { $0.logCount("final partials announced by close markers have not arrived") > 0 }
        try await scenario.verifyFinalsAfterExit(messages, "zombie", held: held)
        print("service logs (zombie): \(scenario.directory.path)")
    }
}

extension ServiceCrashTests {
    @Test("Broker outage: the network to the broker is cut for longer than the session timeout, then restored; the service recovers by itself and results are exact")
    func brokerOutage() async throws {
        let broker = try await PrivateBroker()
        do {
            try await Self.outage(broker)
        } catch {
            try await broker.stop()
            throw error
        }
        try await broker.stop()
    }

    private static func outage(_ broker: PrivateBroker) async throws {
        try await TestBroker.$overrideServers.withValue(broker.bootstrapServers) {
            let scenario = try await ServiceScenario(prefix: "outage", partitions: 4, events: 8_000, users: 200, seed: 41)
            // The feeder's producer loses the broker too. Once the network is back it
            // reconnects within its back-off (at most 1 s here; librdkafka's default of
            // 10 s once made it deliver after the service had read everything and waited
            // out the test's 2 s idle timeout, so the rest arrived late). The idle timeout
            // must outlast the producers' reconnection (docs/operations.md): 5 s.
            let feeding = scenario.feed(slice: 250, pause: .milliseconds(500), reconnectBackoff: .seconds(1))
            let service = try scenario.start(instance: "u1", environment: ["PULSE_TIME__IDLE_TIMEOUT": "5s"])
            #expect(try await service.waitForLog("stage 1 assigned", count: 1, timeout: .seconds(60)))
            try await Task.sleep(for: .seconds(3))
            broker.proxy.cut()
            // session.timeout.ms is 6 s in the test configuration: the broker drops the
            // member from both groups while the network is down.
            try await Task.sleep(for: .seconds(10))
            #expect(service.process.isRunning, "the service rides out the outage")
            broker.proxy.restore()
            #expect(try await service.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)), "ready again after the outage")
            try await feeding.value
            let messages = try await scenario.awaitFinals(patience: .seconds(120))
            let status = try await service.terminate(timeout: .seconds(30))
            #expect(status == 0)
            try scenario.verifyFinals(messages, "outage")
            print("service log (outage): \(scenario.directory.path)")
        }
    }
}

extension ServiceCrashTests {
    @Test("Static assignment: two instances read fixed shares without a group; one is killed and restarted, the other is replaced while stopped and, fenced, exits; results exact")
    func staticAssignment() async throws {
        let scenario = try await ServiceScenario(prefix: "static", partitions: 4, events: 12_000, users: 300, seed: 43)
        func environment(_ index: Int) -> [String: String] {
            ["PULSE_PROCESSING__ASSIGNMENT": "static", "PULSE_PROCESSING__INSTANCE_COUNT": "2", "PULSE_PROCESSING__INSTANCE_INDEX": "\(index)"]
        }
        let feeding = scenario.feed(slice: 250, pause: .milliseconds(500))
        let first = try scenario.start(instance: "i0", environment: environment(0))
        let second = try scenario.start(instance: "i1", environment: environment(1))
        // Each takes its share at once: input partition p to instance p mod 2, and the
        // same for the 4 partials partitions.
        for (process, share) in [(first, "[0, 2]"), (second, "[1, 3]")] {
            #expect(try await process.waitForLog("stage 1 assigned \(share)", count: 1, timeout: .seconds(60)), "stage 1 reads \(share)")
            #expect(try await process.waitForLog("stage 2 assigned \(share)", count: 1, timeout: .seconds(60)), "stage 2 reads \(share)")
        }
        try await Task.sleep(for: .seconds(2))
        first.kill()
        let restarted = try scenario.start(instance: "i0", environment: environment(0))
        #expect(try await restarted.waitForLog("stage 1 assigned [0, 2]", count: 2, timeout: .seconds(60)), "the restarted instance takes the same share")
        // A second copy of instance 1 starts while the first copy is stopped: it fences
        // the first copy's producers, and the first copy exits when it resumes.
        second.signal(SIGSTOP)
        let replacement = try scenario.start(instance: "i1b", environment: environment(1))
        #expect(try await replacement.waitForLog("stage 1 assigned [1, 3]", count: 1, timeout: .seconds(60)))
        try await Task.sleep(for: .seconds(3))
        second.signal(SIGCONT)
        // Patience, not a limit: the stage that learns of the fencing first fails at once,
        // the other drains first (on this broker a fenced producer's commit can wait out
        // its time-out instead of being refused), within processing.shutdown_timeout (20 s).
        let fencedStatus = try await second.exitStatus(within: .seconds(150))
        #expect(fencedStatus != nil && fencedStatus != 0, "the replaced copy stops with an error instead of writing beside its replacement")
        // Whichever request found out first (adding a partition, committing offsets), the
        // failure names the fencing code.
        #expect(second.logCount("_FENCED") > 0, "and says it was fenced")
        try await feeding.value
        let messages = try await scenario.awaitFinals()
        for process in [restarted, replacement] {
            let status = try await process.terminate(timeout: .seconds(30))
            #expect(status == 0)
        }
        for process in [first, second, replacement] {
            #expect(process.logCount("stage 1 revoked") == 0 && process.logCount("stage 1 lost") == 0, "nothing moves in a static assignment")
        }
        try await scenario.verifyFinalsAfterExit(messages, "static")
        print("service logs (static): \(scenario.directory.path)")
    }
}
