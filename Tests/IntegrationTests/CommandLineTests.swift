import AudiencePulse
import Foundation
import Kafka
import Logging
import Testing

/// Runs `pulse` with arguments; returns exit status, standard output and standard error.
func runPulse(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = ServiceProcess.binary
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestBroker.uniqueName("cli"))
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let out = directory.appendingPathComponent("stdout")
    let err = directory.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: out)
    process.standardError = try FileHandle(forWritingTo: err)
    try process.run()
    while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
    return (process.terminationStatus, try String(contentsOf: out, encoding: .utf8), try String(contentsOf: err, encoding: .utf8))
}

@Suite("The pulse command line")
struct CommandLineTests {
    static func writeConfig(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(TestBroker.uniqueName("config") + ".yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("exit codes: bad configuration is 2 with the key named, bad arguments 64, unreadable input 1", arguments: [
        (["serve", "--config", "/nonexistent/pulse.yaml"], Int32(2), "cannot read /nonexistent/pulse.yaml"),
        (["serve", "--config", "@unknown"], 2, "unknown key; see docs/configuration.md"),
        (["serve", "--config", "@windows"], 2, "windows[0]"),
        (["serve", "--config", "@rule"], 2, "segments.rules.broken"),
        (["serve", "--config", "@duration"], 2, "time.max_out_of_orderness"),
        (["serve", "--config", "@nobroker"], 2, "kafka.bootstrap.servers"),
        (["config", "check", "--config", "@unknown"], 2, "procesing"),
        (["replay", "/nonexistent/events.ndjson", "--config", "@good"], 1, "cannot open /nonexistent/events.ndjson"),
        (["generate", "--duplicates", "2"], 64, "--duplicates and --malformed are shares"),
        (["generate", "--jitter", "soon"], 64, "--jitter 'soon' is not a duration"),
        (["serve"], 64, "Missing expected argument '--config <config>'"),
    ] as [([String], Int32, String)])
    func exitCodes(arguments: [String], status: Int32, message: String) async throws {
        let servers = try TestBroker.bootstrapServers()
        let configs = [
            "@good": "kafka:\n  bootstrap.servers: \(servers)\n",
            "@unknown": "kafka:\n  bootstrap.servers: \(servers)\nprocesing:\n  guarantee: exactly_once\n",
            "@windows": "kafka:\n  bootstrap.servers: \(servers)\nwindows: [1 minute]\n",
            "@rule": "kafka:\n  bootstrap.servers: \(servers)\nsegments:\n  rules:\n    broken: country = \"DE\"\n",
            "@duration": "kafka:\n  bootstrap.servers: \(servers)\ntime:\n  max_out_of_orderness: 5 parsecs\n",
            "@nobroker": "topics:\n  input: x\n",
        ]
        var resolved: [String] = []
        var written: [String] = []
        defer { for path in written { try? FileManager.default.removeItem(atPath: path) } }
        for argument in arguments {
            guard let text = configs[argument] else {
                resolved.append(argument)
                continue
            }
            written.append(try Self.writeConfig(text))
            resolved.append(written[written.count - 1])
        }
        let result = try await runPulse(resolved)
        #expect(result.status == status, "pulse \(arguments.joined(separator: " ")): \(result.error)")
        #expect(result.error.contains(message), "pulse \(arguments.joined(separator: " ")) says \(result.error)")
    }

    @Test("pulse bench suite, small: the ceiling, the lean job (consumer groups, static assignment and a bounded run, two rounds), the latency step (live events at 2,000/s; percentiles from its histograms) and the state step (in a process of its own) all report, as Markdown and JSON; --log-level info: the services' log lines as JSON on standard error, the state step's process included")
    func benchSuiteSmall() async throws {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent(TestBroker.uniqueName("bench") + ".json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        // The latency step: 22 s of live input at 2,000 events/s (10 s windows close 5 s
        // after their end, and only windows that close while events still flow count, so
        // at least one does).
        let result = try await runPulse(["bench", "suite", "--brokers", try TestBroker.bootstrapServers(), "--events", "20000",
                                         "--rates", "2000", "--latency-seconds", "22",
                                         "--jobs", "lean,lean-static,lean-bounded", "--rounds", "2", "--state-users", "2000", "--state-events", "10000", "--json", json,
                                         // Any live process will do for reading a "broker's" CPU time: this one.
                                         "--broker-pid", "\(getpid())", "--log-level", "info"])
        #expect(result.status == 0, "\(result.error)")
        let logLines = result.error.split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(logLines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil }, "JSON log lines")
        #expect(logLines.contains { $0.contains("bounded run complete") }, "the bounded job's stages logged at info")
        // Only the state step's restart, in a process of its own, restores users.
        #expect(logLines.contains { $0.contains("restored input partition") && !$0.contains("\"users\":\"0\"") }, "the state step's restart logged too")
        #expect(result.output.contains("| **lean** job, consumer groups"), "\(result.output)")
        #expect(result.output.contains("| **lean** job, static assignment,"), "\(result.output)")
        #expect(result.output.contains("| **lean** job, static assignment, bounded run"), "\(result.output)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        #expect((report["ceiling_events_per_second"] as? Int ?? 0) > 0, "ceiling measured")
        #expect(report["ceiling_broker_cpu_seconds_per_million"] is NSNumber, "the broker process's CPU time read: \(report)")
        let jobs = report["jobs"] as? [[String: Any]] ?? []
        #expect(jobs.map { $0["name"] as? String } == ["lean", "lean-static", "lean-bounded"], "only the jobs asked for")
        #expect(Set(jobs.map { $0["final_records"] as? Int }).count == 1, "every job finalizes the same windows, the bounded run at the input's end: \(jobs)")
        #expect(jobs.first?["events"] as? Int == 20_000)
        #expect(jobs.first?["broker_cpu_seconds_per_million"] is NSNumber, "\(jobs)")
        #expect((jobs.first?["cpu_seconds_per_million"] as? NSNumber)?.doubleValue ?? 0 > 0, "\(jobs)")
        #expect((jobs.first?["final_records"] as? Int ?? 0) > 0, "the lean job produced final records")
        #expect((jobs.first?["consumed_seconds"] as? Double ?? 0) >= (jobs.first?["startup_seconds"] as? Double ?? 1), "consumed after it started")
        // The second round starts afresh (groups and internal topics of its own): the same work.
        let rounds = report["rounds"] as? [[String: Any]] ?? []
        #expect(rounds.count == 2)
        for round in rounds {
            let roundJobs = round["jobs"] as? [[String: Any]] ?? []
            #expect(roundJobs.map { $0["name"] as? String } == ["lean", "lean-static", "lean-bounded"])
            #expect(roundJobs.map { $0["final_records"] as? Int } == jobs.map { $0["final_records"] as? Int }, "\(round)")
        }
        #expect(result.output.contains("the median of 2 rounds"), "\(result.output)")
        let state = report["state"] as? [String: Any] ?? [:]
        let peak = state["peak_rss_mb"] as? Double ?? 0
        let baseline = state["baseline_rss_mb"] as? Double ?? 0
        #expect(baseline > 0 && peak > baseline, "the state run's own process measured its RSS: \(state)")
        #expect((state["restore_seconds"] as? Double ?? 0) > 0, "restart measured")
        #expect((state["restored_rss_mb"] as? Double ?? 0) > baseline, "RSS after the restore measured: \(state)")
        #expect((state["checkpoint_mb"] as? Double ?? 0) > 0, "checkpoints written")
        #expect(state["tracked_users"] as? Int == 2_000, "every user of the state step tracked after the restart: \(state)")
        // Latency, from the step's HdrHistograms: events from the 5 s warm-up on, each
        // counted once by the first update of segment `all` that includes it.
        let latency = try #require((report["latency"] as? [[String: Any]])?.first, "\(report)")
        func value(_ key: String) -> Int { (latency[key] as? NSNumber)?.intValue ?? -1 }
        #expect(value("rate") == 2_000)
        #expect(value("measured") > 0 && value("measured") < value("produced"), "\(latency)")
        #expect(0 < value("p50_ms") && value("p50_ms") <= value("p99_ms") && value("p99_ms") <= value("max_ms"), "\(latency)")
        #expect(value("final_records") >= 1 && value("final_windows") >= 1, "\(latency)")
        #expect(0 <= value("close_to_final_p50_ms") && value("close_to_final_p50_ms") <= value("close_to_final_max_ms"), "\(latency)")
        #expect(result.output.contains("| latency at 2,000 events/s"), "\(result.output)")
    }

    @Test("generate → topic → service gives the same final records as replay of the same generated file")
    func generateAndReplayAgree() async throws {
        let app = TestBroker.uniqueName("replay")
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 4)
        let origin = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 20) * 60_000
        let generator = ["--count", "20000", "--rate", "100", "--start", "\(origin)", "--users", "500", "--seed", "5",
                         "--duplicates", "0.02", "--malformed", "0.01", "--jitter", "2s"]
        let produced = try await runPulse(["generate", "--topic", input, "--brokers", try TestBroker.bootstrapServers()] + generator)
        #expect(produced.status == 0, "\(produced.error)")
        #expect(produced.error.contains("generate: 20000 messages"), "\(produced.error)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(app).ndjson").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let written = try await runPulse(["generate", "--output", file] + generator)
        #expect(written.status == 0)

        let configFile = try Self.writeConfig(try ServiceExactResultsTests.yaml(app: app, input: input, guarantee: "exactly_once"))
        defer { try? FileManager.default.removeItem(atPath: configFile) }
        let replayed = try await runPulse(["replay", file, "--config", configFile])
        #expect(replayed.status == 0, "\(replayed.error)")
        #expect(replayed.error.contains("replay: 20000 lines"), "\(replayed.error)")
        var expected: [String: String] = [:]
        for line in replayed.output.split(separator: "\n") {
            let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let window = try #require(json["window"] as? [String: Any])
            expected["\(json["segment"] ?? "")|\(window["start_ms"] ?? "")"] = String(line)
        }
        #expect(expected.count > 20, "replay wrote final records (20 minutes × segments)")

        let configuration = try ServiceExactResultsTests.configuration(app: app, input: input, guarantee: "exactly_once")
        var logger = Logger(label: "test.\(app)")
        logger.logLevel = .warning
        let service = PulseService(configuration: configuration, instanceID: "r1", logger: logger)
        try service.start()
        let messages = try await ServiceExactResultsTests.read(configuration.metricsTopic) { messages in
            Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count >= expected.count
        }
        #expect(service.stop(timeout: .seconds(20)))
        var served: [String: String] = [:]
        for message in messages where message.valueString.contains("\"final\":true") {
            served[message.keyString ?? ""] = message.valueString
        }
        #expect(served.count == expected.count, "missing: \(Set(expected.keys).subtracting(served.keys).sorted().prefix(10))")
        for (key, record) in expected {
            let replayed = try #require(try JSONSerialization.jsonObject(with: Data(record.utf8)) as? [String: Any])
            let service = try #require(try served[key].flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(key) served")
            // Every field is equal but two: top content is a Space-Saving sketch whose
            // counts depend on how events were split over partitions (each within
            // page views / capacity of the truth), and invalid events carry no event time,
            // so each partition counts them in its own current window.
            var left = replayed
            var right = service
            for field in ["top_content", "quality", "final"] {  // both final (selected above); Foundation compares its booleans unreliably
                left[field] = nil
                right[field] = nil
            }
            let differing = Set(left.keys).union(right.keys).filter { field in
                !NSDictionary(dictionary: [field: left[field] ?? NSNull()]).isEqual(to: [field: right[field] ?? NSNull()])
            }.sorted()
            #expect(differing.isEmpty, "\(key): the service's final record equals replay's; differing: \(differing.map { "\($0): \(left[$0] ?? "-") vs \(right[$0] ?? "-")" })")
            let views = Double((replayed["by_type"] as? [String: Int])?["page_view"] ?? 0)
            let bound = 2 * views / 64 + 1  // capacity: max(64, 4 × metrics.top_content)
            let replayTop = Dictionary(((replayed["top_content"] as? [[String: Any]]) ?? []).map { ($0["content_id"] as? String ?? "", $0["views"] as? Double ?? 0) }) { $1 }
            for item in (service["top_content"] as? [[String: Any]]) ?? [] {
                guard let id = item["content_id"] as? String, let count = item["views"] as? Double, let other = replayTop[id] else { continue }
                #expect(abs(count - other) <= bound, "\(key) \(id): \(count) vs \(other) views, beyond the sketch's error")
            }
            let serviceQuality = service["quality"] as? [String: Int] ?? [:]
            let replayQuality = replayed["quality"] as? [String: Int] ?? [:]
            #expect(serviceQuality["duplicates"] == replayQuality["duplicates"] && serviceQuality["late"] == replayQuality["late"], "\(key) quality")
        }
    }
}

extension ServiceCrashTests {
    @Test("Graceful shutdown: SIGTERM while busy exits 0 with committed offsets equal to what was processed; a restart emits no final record twice")
    func gracefulShutdown() async throws {
        let scenario = try await ServiceScenario(prefix: "drain", partitions: 4, events: 30_000, users: 400, seed: 51)
        let service = try scenario.start(instance: "d1")
        #expect(try await service.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)), "the service got ready")
        // Busy: events stream in (1,000 per 100 ms, 3 s in all) and part of them are
        // processed when SIGTERM comes; a pre-loaded backlog could be read whole between
        // two looks at the counter.
        let feeding = scenario.feed(slice: 1_000, pause: .milliseconds(100))
        let deadline = ContinuousClock.now + .seconds(90)
        var consumed = 0
        while consumed < 5_000 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            let text = await service.get("/metrics")?.body ?? ""
            consumed = text.split(separator: "\n").first { $0.hasPrefix("pulse_events_consumed_total ") }
                .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        #expect(consumed >= 5_000 && consumed < scenario.audience.messages.count, "stopped while busy (\(consumed) consumed)")
        let status = try await service.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM while busy exits 0")

        // The drained process logged what it processed; the group's committed offsets say the same.
        let log = try String(contentsOf: scenario.log(of: "d1"), encoding: .utf8)
        let line = try #require(log.split(separator: "\n").first { $0.contains("stage 1 stopped") })
        let logged = try #require(line.split(separator: " ").first { $0.hasPrefix("committed=") }).dropFirst("committed=".count)
        var processed: [Int32: Int64] = [:]
        for entry in logged.split(separator: ",") {
            let parts = entry.split(separator: ":")
            if parts.count == 2, let partition = Int32(parts[0]), let offset = Int64(parts[1]) { processed[partition] = offset }
        }
        #expect(!processed.isEmpty, "the drained process reports what it processed: \(line)")
        let reader = try TestBroker.consumer(group: scenario.app)
        let committed = try await reader.committed((0..<4).map { KafkaTopicPartition(topic: scenario.input, partition: $0) })
        for partition in committed {
            if let offset = processed[partition.partition] {
                #expect(partition.offset == offset, "partition \(partition.partition): committed \(partition.offset), processed up to \(offset)")
            } else {
                #expect(partition.offset < 0, "partition \(partition.partition): nothing processed, nothing committed (\(partition.offset))")
            }
        }
        try? await reader.close()

        try await feeding.value
        let restarted = try scenario.start(instance: "d1")
        let messages = try await scenario.awaitFinals()
        #expect(try await restarted.terminate(timeout: .seconds(30)) == 0)
        try scenario.verifyFinals(messages, "drain")
        var finals: [String: Int] = [:]
        for message in messages where message.valueString.contains("\"final\":true") { finals[message.keyString ?? "", default: 0] += 1 }
        #expect(finals.values.allSatisfy { $0 == 1 }, "no final record emitted twice: \(finals.filter { $0.value > 1 }.keys.sorted().prefix(5))")
    }
}
