import AudienceMetrics
import Foundation
import Kafka
import Logging

// The suite's state step: a large state processed in a child process, then restored by
// another, as after a real restart.

extension SuiteBenchmark {
    /// `stateUsers` distinct users in 1,000 segments (10 countries × 4 devices × 25
    /// sources), every one of them tracked (each user once in every `stateUsers` events):
    /// peak RSS while processing, checkpoint size, and the restart's restore.
    func state() throws -> StateResult {
        let app = "\(run)-state"
        let input = "\(app).events"
        try createTopic(input)
        var spec = SyntheticAudience.Spec()
        spec.users = stateUsers
        spec.userOrder = .everyUserInTurn
        spec.duplicateShare = 0
        spec.malformedShare = 0
        spec.jitterMilliseconds = 0
        spec.attributes = [
            ("country", (0..<10).map { ("c\($0)", 1.0) }),
            ("device", (0..<4).map { ("d\($0)", 1.0) }),
            ("source", (0..<25).map { ("s\($0)", 1.0) }),
        ]
        var audience = SyntheticAudience(spec: spec)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: kafka), logger: logger)
        let handle = try producer.topic(input)
        // Event time: the last hour, so windows close and every user stays tracked.
        let start = Int64(Date().timeIntervalSince1970 * 1000) - 3_600_000
        for index in 0..<stateEvents {
            let message = audience.next(at: start + Int64(index) * 3_000_000 / Int64(stateEvents))
            try Array(message.key.utf8).withUnsafeBytes { key in
                try Array(message.value.utf8).withUnsafeBytes { value in try producer.produce(to: handle, key: key, value: value, blockIfQueueFull: true) }
            }
        }
        try producer.flush(timeout: .seconds(300))
        producer.close(timeout: .seconds(10))

        // The service runs in a process of its own, so its RSS is the service's alone (not
        // this process's heap after the jobs before); the restart is a new process, as a
        // real restart would be.
        let arguments = ["bench", "state-run", "--brokers", kafka.bootstrapServers, "--app", app, "--input", input, "--events", String(stateEvents),
                         "--log-level", logLevel.rawValue]
            + kafka.properties.sorted { $0.key < $1.key }.flatMap { ["-X", "\($0.key)=\($0.value)"] }
        let processed = try runInChildProcess(arguments)
        let restarted = try runInChildProcess(arguments + ["--restart"])
        let configuration = try PulseConfiguration.load(yaml: stateYAML(app: app, input: input))
        let bytes = try payloadBytes(topic: configuration.stageOneChangelog)
        return StateResult(users: stateUsers, segments: 1_000, events: stateEvents, peakRSSMegabytes: processed.peakRSSMegabytes,
                           baselineRSSMegabytes: processed.baselineRSSMegabytes, checkpointMegabytes: Double(bytes) / 1_048_576,
                           restoreSeconds: restarted.restoreSeconds, restorePeakRSSMegabytes: restarted.peakRSSMegabytes,
                           restoredRSSMegabytes: restarted.restoredRSSMegabytes, trackedUsers: restarted.trackedUsers)
    }

    func stateYAML(app: String, input: String) -> String {
        yaml(app: app, input: input, body: "segments:\n  dimensions: [[country, device, source]]\nwindows: [1m]\n")
    }

    /// What `pulse bench state-run` measures in its own process (one JSON line): the
    /// processing phase fills the peak, the restart phase (a new process, as after a
    /// real restart) the restore time and the RSS once restored.
    public struct StateRun: Sendable, Codable {
        public var peakRSSMegabytes: Double
        public var baselineRSSMegabytes: Double
        public var restoreSeconds: Double
        /// RSS once the restarted service restored the state and settled (idle).
        public var restoredRSSMegabytes: Double
        /// Users whose state the restarted service holds (0 for the processing phase).
        public var trackedUsers: Int

        enum CodingKeys: String, CodingKey {
            case peakRSSMegabytes = "peak_rss_mb", baselineRSSMegabytes = "baseline_rss_mb"
            case restoreSeconds = "restore_seconds", restoredRSSMegabytes = "restored_rss_mb", trackedUsers = "tracked_users"
        }

        public var json: String {
            (try? JSONEncoder().encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        }

        init(json: String) throws {
            do {
                self = try JSONDecoder().decode(StateRun.self, from: Data(json.utf8))
            } catch {
                throw Failure(description: "state run: unreadable result \(json) (\(error))")
            }
        }

        init(peakRSSMegabytes: Double, baselineRSSMegabytes: Double, restoreSeconds: Double = 0, restoredRSSMegabytes: Double = 0, trackedUsers: Int = 0) {
            self.peakRSSMegabytes = peakRSSMegabytes
            self.baselineRSSMegabytes = baselineRSSMegabytes
            self.restoreSeconds = restoreSeconds
            self.restoredRSSMegabytes = restoredRSSMegabytes
            self.trackedUsers = trackedUsers
        }
    }

    /// `pulse bench state-run`: the service on the pre-loaded state topic until its final
    /// records stop changing (peak RSS of this process).
    public func stateRun(app: String, input: String) throws -> StateRun {
        let baseline = RSSSampler.currentMegabytes()
        let run = try job("state", yaml: stateYAML(app: app, input: input), events: stateEvents)
        return StateRun(peakRSSMegabytes: run.peakRSSMegabytes, baselineRSSMegabytes: baseline)
    }

    /// `pulse bench state-run --restart`: the service started again on the state the
    /// processing phase left, until ready; then, after 3 s idle, what holding the
    /// restored state costs (peak RSS of this process while restoring, RSS at rest).
    public func stateRestart(app: String, input: String) throws -> StateRun {
        let baseline = RSSSampler.currentMegabytes()
        let configuration = try PulseConfiguration.load(yaml: stateYAML(app: app, input: input), environment: Self.overrides)
        let restarted = PulseService(configuration: configuration, instanceID: "bench", logger: logger)
        let sampler = RSSSampler()
        let began = ContinuousClock.now
        try restarted.start()
        defer { restarted.stop(timeout: .seconds(30)) }
        let deadline = began + .seconds(300)
        while !restarted.readiness.ready {
            guard ContinuousClock.now < deadline else { throw Failure(description: "state restart: not ready after 300 s") }
            sampler.sample()
            Thread.sleep(forTimeInterval: 0.01)
        }
        let restore = (ContinuousClock.now - began).secondsDouble
        for _ in 0..<150 {
            sampler.sample()
            Thread.sleep(forTimeInterval: 0.02)
        }
        return StateRun(peakRSSMegabytes: sampler.peakMegabytes, baselineRSSMegabytes: baseline, restoreSeconds: restore,
                        restoredRSSMegabytes: RSSSampler.currentMegabytes(), trackedUsers: restarted.metrics.trackedUsers)
    }

    /// Runs this executable with `arguments` and reads the JSON line it prints last.
    func runInChildProcess(_ arguments: [String]) throws -> StateRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { Thread.sleep(forTimeInterval: 0.05) }
        guard process.terminationStatus == 0 else { throw Failure(description: "state run exited with status \(process.terminationStatus)") }
        let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        return try StateRun(json: line)
    }

    /// Payload bytes of a topic (every record, read to the end).
    func payloadBytes(topic: String) throws -> Int {
        let partitions = try KafkaAdmin(configuration: kafka, logger: logger).partitionIDs(of: topic)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: kafka, groupID: "\(run)-size", enablePartitionEOF: true), logger: logger)
        return try KafkaThroughputBenchmark.consume(consumer: consumer, topic: topic, partitions: partitions, expected: nil).bytes
    }
}
