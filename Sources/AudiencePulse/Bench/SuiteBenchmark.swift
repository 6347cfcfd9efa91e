import AudienceMetrics
import Foundation
import Kafka
import Logging

/// `pulse bench suite`: the service's throughput next to the Kafka module's ceiling on the
/// same topic, start-up, CPU, latency at fixed rates, and memory and restore time with a
/// large state — in one run against one broker. The service runs in this process (the
/// same `PulseService` `pulse serve` runs), one job after the other.
public struct SuiteBenchmark {
    public struct JobResult: Sendable {
        public var name: String
        public var events: Int
        public var seconds: Double
        public var startupSeconds: Double
        /// Start → both stages joined their groups and restored their partitions.
        public var readySeconds: Double
        /// Start → every event consumed by stage 1.
        public var consumedSeconds: Double
        public var cpuSeconds: Double
        /// CPU time of the broker process over the same span (nil: not measured).
        public var brokerCPUSeconds: Double?
        /// The service's CPU time by thread group (``ThreadCPU``), adding up to `cpuSeconds`.
        public var cpuByThread: [(group: String, seconds: Double)] = []
        public var finalRecords: Int
        public var peakRSSMegabytes: Double
        /// Input partitions paused for watermark alignment during the run.
        public var alignmentPauses: Int
        /// A bounded run's last steps, seconds from start: the last input partition read
        /// to its end, every stage-1 worker's commit of what that closed, stage 2 holding
        /// every end watermark (nil: not a bounded run).
        public var bounded: (inputEnded: Double, stageOneDone: Double, stageTwoHeld: Double)?
        /// Partials stage 1 produced and metric records (updated and final) stage 2 produced.
        public var partials = 0
        public var records = 0
        public var eventsPerSecond: Double { Double(events) / seconds }
        /// Events/s from the first to the last event consumed.
        public var processingRate: Double { Double(events) / max(consumedSeconds - startupSeconds, 0.001) }
        public var cpuSecondsPerMillion: Double { cpuSeconds / Double(events) * 1_000_000 }
        public var brokerCPUSecondsPerMillion: Double? { brokerCPUSeconds.map { $0 / Double(events) * 1_000_000 } }
    }

    /// CPU time spent by this process and by the broker over one step.
    public struct CPUTime: Sendable {
        public var client: Double
        public var broker: Double?
    }

    public struct StateResult: Sendable {
        public var users: Int
        public var segments: Int
        public var events: Int
        public var peakRSSMegabytes: Double
        public var baselineRSSMegabytes: Double
        public var checkpointMegabytes: Double
        /// Restart (a new process) → ready.
        public var restoreSeconds: Double
        /// Peak RSS of the restarted process while it restored.
        public var restorePeakRSSMegabytes: Double
        /// RSS of the restarted process once restored and idle.
        public var restoredRSSMegabytes: Double
        /// Users whose state the restarted process restored (`pulse_tracked_users`).
        public var trackedUsers: Int
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public var kafka: KafkaConfiguration
    public var events = 2_000_000
    public var partitions: Int32 = 4
    public var latencyRates = [10_000, 100_000]
    public var latencySeconds = 30
    public var stateUsers = 1_000_000
    public var stateEvents = 3_000_000
    /// Which service jobs to run: "lean", "full" and "example" in consumer groups, each
    /// with `processing.assignment: static` ("lean-static", "full-static",
    /// "example-static": no group to join), and each as a bounded run with static
    /// assignment ("lean-bounded", …: `processing.until_end`, so the last windows close at
    /// the input's end instead of after the idle timeout).
    public var jobs = jobNames
    public static let jobNames = jobBodies.flatMap { [$0.name, "\($0.name)-static", "\($0.name)-bounded"] }
    /// Rounds of the ceiling and the jobs, one after the other (the ceiling, then each
    /// job, then the next round): this machine's speed drifts from minute to minute, and
    /// each job is compared with the ceiling of its own round. The report gives each job's
    /// median round and the range over all of them.
    public var rounds = 1
    /// The broker's process on this machine, to report its CPU time next to the service's
    /// (the two share the cores); nil: not reported.
    public var brokerPID: Int32?
    /// `processing.stage1_workers` of the service jobs and the latency runs (the
    /// state step runs the default, one, since it measures what the state costs).
    public var stageOneWorkers = 1
    public var log: (String) -> Void = { print($0) }
    /// Names this run's topics and groups: the time and the process, so that suites
    /// started in the same second against one broker (tests run side by side) never
    /// share a topic.
    let run = "bench-\(Int(Date().timeIntervalSince1970))-\(ProcessInfo.processInfo.processIdentifier)"
    /// The lowest level of the log lines of the services and clients the benchmark runs
    /// (`pulse bench --log-level`; `make bench` keeps them at info in
    /// `.tools/bench/suite.log`).
    public var logLevel: Logger.Level = .warning
    var logger: Logger {
        var logger = Logger(label: "pulse-bench")
        logger.logLevel = logLevel
        return logger
    }

    public init(kafka: KafkaConfiguration) {
        self.kafka = kafka
    }

    // MARK: Jobs

    /// The segments, windows and metrics of the lean job: one dimension combination
    /// (country, device), 10 s tumbling windows, counts by type, unique users and dwell
    /// time's count and sum (no optional families).
    public static let leanJobBody = "segments:\n  dimensions: [[country, device]]\nwindows: [10s]\nmetrics:\n  include: []\n"

    /// The service's default configuration: no `segments`, `windows` or `metrics` keys, so
    /// four combinations (`all`, country, device, country × device), 1m tumbling windows
    /// and every metric family.
    public static let fullJobBody = ""

    /// pulse.example.yaml's segments and windows: five combinations, two rules, tumbling
    /// 1m and hopping 10m/1m windows, every metric family (the suite's full job until
    /// 2026-12-01).
    public static let exampleJobBody = """
        segments:
          dimensions: [[], [country], [device], [country, device], [source]]
          rules:
            pro_mobile: plan == "pro" and device != "desktop"
            engaged_dach: country in ["DE", "AT", "CH"] and type in ["like", "share", "comment"]
        windows: [1m, 10m/1m]

        """

    /// Each job's segments, windows and metrics, by name.
    static let jobBodies: [(name: String, body: String)] = [("lean", leanJobBody), ("full", fullJobBody), ("example", exampleJobBody)]

    /// Each job by name with its configuration (the `-static` ones without a group).
    func definitions(prefix: String, input: String) -> [(name: String, yaml: String)] {
        Self.jobBodies.flatMap { name, body in
            [(name, yaml(app: "\(prefix)-\(name)", input: input, body: body)),
             ("\(name)-static", yaml(app: "\(prefix)-\(name)-static", input: input, assignment: "static", body: body)),
             ("\(name)-bounded", yaml(app: "\(prefix)-\(name)-bounded", input: input, assignment: "static", untilEnd: true, body: body))]
        }
    }

    func yaml(app: String, input: String, assignment: String = "group", untilEnd: Bool = false, body: String) -> String {
        var kafkaLines = "  bootstrap.servers: \(kafka.bootstrapServers)\n"
        for (key, value) in kafka.properties.sorted(by: { $0.key < $1.key }) { kafkaLines += "  \(key): \"\(value)\"\n" }
        if kafka.properties["session.timeout.ms"] == nil {
            kafkaLines += "  session.timeout.ms: \"6000\"\n  heartbeat.interval.ms: \"1000\"\n  max.poll.interval.ms: \"60000\"\n"
        }
        return """
            app: \(app)
            kafka:
            \(kafkaLines)topics:
              input: \(input)
              metrics: \(app).metrics
              dead_letter: \(app).dlq
            time:
              idle_timeout: 1s
            processing:
              guarantee: exactly_once
              update_interval: 1s
              stage1_workers: \(stageOneWorkers)
              assignment: \(assignment)
              until_end: \(untilEnd)
            http:
              listen: 127.0.0.1:0
            log:
              level: warning
            \(body)
            """
    }

    /// `PULSE_…` variables of this process: they override the jobs' settings as they would
    /// `pulse serve`'s (e.g. `PULSE_TIME__MAX_WATERMARK_DRIFT=0s`).
    static var overrides: [String: String] { ProcessInfo.processInfo.environment.filter { $0.key.hasPrefix("PULSE_") } }

    // MARK: Steps

    /// Creates `topic` with the benchmark's partition count; returns the admin client.
    @discardableResult
    func createTopic(_ topic: String) throws -> KafkaAdmin {
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        try admin.createTopics([KafkaTopicSpecification(name: topic, partitions: partitions)], ifNotExists: true)
        try admin.waitForTopic(topic, partitions: partitions)
        return admin
    }

    /// Produces `events` reference events keyed by user into a new topic.
    func preload(topic: String) throws -> KafkaThroughputBenchmark.Result {
        try createTopic(topic)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: kafka), logger: logger)
        defer { producer.close(timeout: .seconds(10)) }
        let result = try KafkaThroughputBenchmark.produceReferenceEvents(producer: producer, topic: topic, count: events)
        guard producer.unhandledDeliveryFailures == 0 else {
            throw Failure(description: "preload: \(producer.unhandledDeliveryFailures) of \(events) events were not delivered to \(topic)")
        }
        return result
    }

    /// A bare consumer on the Kafka module that only counts, reading the whole topic.
    func ceiling(topic: String, group: String) throws -> KafkaThroughputBenchmark.Result {
        let partitions = try KafkaAdmin(configuration: kafka, logger: logger).partitionIDs(of: topic)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: kafka, groupID: group, enablePartitionEOF: true), logger: logger)
        return try KafkaThroughputBenchmark.consume(consumer: consumer, topic: topic, partitions: partitions, expected: events)
    }

    /// Runs the service on `yaml` from start until every input event was consumed and the
    /// final records stopped changing (their last change is the end), or, for a bounded
    /// run, until it has ended (every final record committed; that moment is the end).
    func job(_ name: String, yaml: String, events expected: Int) throws -> JobResult {
        let configuration = try PulseConfiguration.load(yaml: yaml, file: "\(name).yaml", environment: Self.overrides)
        let service = PulseService(configuration: configuration, instanceID: "bench", logger: logger)
        let cpuBefore = cpuTime()
        let threadsBefore = ThreadCPU.now()
        let sampler = RSSSampler()
        let began = ContinuousClock.now
        try service.start()
        var firstConsumed: ContinuousClock.Instant?
        var allConsumed: ContinuousClock.Instant?
        var ready: ContinuousClock.Instant?
        var stageTwoCaughtUp: ContinuousClock.Instant?
        var lastFinals = -1
        var lastChange = began
        // Read every 100 ms: a bounded run's stage threads end as it ends, before the
        // last reading.
        var threads = threadsBefore
        var polls = 0
        while true {
            Thread.sleep(forTimeInterval: 0.02)
            sampler.sample()
            polls += 1
            if polls % 5 == 0 { threads = ThreadCPU.now(keeping: threads) }
            let counters = service.counters
            let now = ContinuousClock.now
            if firstConsumed == nil, counters["consumed", default: 0] > 0 { firstConsumed = now }
            if allConsumed == nil, counters["consumed", default: 0] >= expected { allConsumed = now }
            if ready == nil, service.readiness.ready { ready = now }
            let finals = counters["final_records", default: 0]
            if finals != lastFinals {
                lastFinals = finals
                lastChange = now
            }
            if !service.failureMessages.isEmpty { throw Failure(description: "\(name): " + service.failureMessages.joined(separator: "; ")) }
            // A bounded run is done once it has ended: every final record committed.
            if configuration.untilEnd && service.boundedRunEnded {
                guard counters["consumed", default: 0] >= expected else {
                    throw Failure(description: "\(name): the bounded run ended after \(counters["consumed", default: 0]) of \(expected) events")
                }
                lastChange = now
                break
            }
            // Otherwise done once every event was consumed, stage 2 read every partial
            // stage 1 produced (unless a transaction was aborted: read_committed consumers
            // of a broker that hides aborted records never read its partials), and the
            // final records then stopped changing for 3 s (a pause in finals while events
            // still arrive — one partition behind the others holds windows back — or while
            // stage 2 catches up is not the end).
            let caughtUp = counters["partials_read", default: 0] >= counters["partials_produced", default: 0]
                || counters["transaction_aborts", default: 0] > 0
            stageTwoCaughtUp = caughtUp ? stageTwoCaughtUp ?? now : nil
            if !configuration.untilEnd, let allConsumed, let stageTwoCaughtUp, finals > 0, now - max(lastChange, allConsumed, stageTwoCaughtUp) > .seconds(3) { break }
            if now - began > .seconds(900) { throw Failure(description: "\(name): not done after 15 minutes (consumed \(counters["consumed", default: 0]) of \(expected))") }
        }
        // Read before stopping: the stages' threads end with the service.
        let cpu = cpuTime(since: cpuBefore)
        let byThread = ThreadCPU.now(keeping: threads).seconds(since: threadsBefore, processSeconds: cpu.client)
        let outputs = service.counters
        let timeline = service.boundedRunTimeline
        service.stop(timeout: .seconds(30))
        // A bounded run's end is the moment its last final records were committed, not
        // the reading of it up to 20 ms later.
        if let ended = timeline?.ended { lastChange = ended }
        let bounded = timeline.flatMap { timeline -> (Double, Double, Double)? in
            guard let ended = timeline.inputEnded, let done = timeline.stageOneDone, let held = timeline.stageTwoHeld else { return nil }
            return ((ended - began).secondsDouble, (done - began).secondsDouble, (held - began).secondsDouble)
        }
        return JobResult(name: name, events: expected, seconds: (lastChange - began).secondsDouble,
                         startupSeconds: ((firstConsumed ?? lastChange) - began).secondsDouble,
                         readySeconds: ((ready ?? lastChange) - began).secondsDouble,
                         consumedSeconds: ((allConsumed ?? lastChange) - began).secondsDouble, cpuSeconds: cpu.client, brokerCPUSeconds: cpu.broker,
                         cpuByThread: byThread, finalRecords: lastFinals, peakRSSMegabytes: sampler.peakMegabytes,
                         alignmentPauses: outputs["alignment_pauses", default: 0], bounded: bounded,
                         partials: outputs["partials_produced", default: 0], records: outputs["records_produced", default: 0])
    }

    /// Latency at a fixed live rate against a running service (lean job, 10 s windows).
    func latency(rate: Int) throws -> LatencyBenchmark.Result {
        let app = "\(run)-latency-\(rate)"
        let input = "\(app).events"
        let admin = try createTopic(input)
        let configuration = try PulseConfiguration.load(yaml: yaml(app: app, input: input, body: "segments:\n  dimensions: [[], [country]]\nwindows: [10s]\n"),
                                                           environment: Self.overrides)
        let service = PulseService(configuration: configuration, instanceID: "bench", logger: logger)
        try service.start()
        defer { service.stop(timeout: .seconds(30)) }
        let deadline = ContinuousClock.now + .seconds(60)
        while !service.readiness.ready && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        try admin.waitForTopic(configuration.metricsTopic, partitions: 1)
        return try LatencyBenchmark.run(kafka: kafka, input: input, metrics: configuration.metricsTopic, rate: rate, seconds: latencySeconds,
                                        windowMilliseconds: 10_000, warmupSeconds: 5, settleSeconds: 8)
    }

    // MARK: Process figures

    /// User + system CPU time of this process, seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1_000_000
    }

    /// User + system CPU time of process `pid` (from /proc), seconds; nil if it cannot be read.
    static func cpuSeconds(pid: Int32) -> Double? {
        cpuSeconds(statFile: "/proc/\(pid)/stat")
    }

    /// User + system CPU time from a `/proc` `stat` file (a process's or a thread's), seconds.
    static func cpuSeconds(statFile path: String) -> Double? {
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
              let afterName = stat.lastIndex(of: ")") else { return nil }
        // Fields after the name: state (3rd field of the line) first, utime is the 14th, stime the 15th.
        let fields = stat[stat.index(after: afterName)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU time so far (`since` nil) or since an earlier reading.
    func cpuTime(since earlier: CPUTime? = nil) -> CPUTime {
        let broker = brokerPID.flatMap(Self.cpuSeconds(pid:))
        guard let earlier else { return CPUTime(client: Self.cpuSeconds(), broker: broker) }
        return CPUTime(client: Self.cpuSeconds() - earlier.client, broker: broker.flatMap { now in earlier.broker.map { now - $0 } })
    }
}

/// Samples this process's resident set size (VmRSS) and keeps the largest.
final class RSSSampler {
    private(set) var peakMegabytes = 0.0

    func sample() { peakMegabytes = max(peakMegabytes, Self.currentMegabytes()) }

    static func currentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kilobytes / 1024
    }
}

extension SuiteBenchmark {
    /// Runs every step in order; `log` reports progress.
    public func run(command: String, includeState: Bool = true) throws -> Report {
        let topic = "\(run).events"
        log("preloading \(events) events into \(topic) (\(partitions) partitions)")
        let preload = try preload(topic: topic)
        let rounds = try (1...max(1, self.rounds)).map { try round($0, topic: topic) }
        var latency: [(rate: Int, result: LatencyBenchmark.Result)] = []
        for rate in latencyRates {
            log("latency at \(rate) events/s for \(latencySeconds) s")
            let result = try self.latency(rate: rate)
            log("latency at \(rate)/s: p50 \(result.p50) ms, p99 \(result.p99) ms, max \(result.max) ms; window close → final p50 \(result.finalP50) ms, max \(result.finalMax) ms")
            latency.append((rate, result))
        }
        var state: StateResult?
        if includeState {
            log("state: \(stateUsers) users, 1,000 segments")
            state = try self.state()
        }
        return Report(machine: Self.machine(), command: command, date: Timestamp.format(Int64(Date().timeIntervalSince1970 * 1000)),
                      preload: preload, rounds: rounds, stageOneWorkers: stageOneWorkers, latency: latency, state: state)
    }

    /// Round `number` (from 1): the ceiling, then each job asked for, with names of its own
    /// (consumer groups, internal topics) so that nothing carries over from an earlier round.
    func round(_ number: Int, topic: String) throws -> Round {
        let prefix = number == 1 ? run : "\(run)-\(number)"
        let label = rounds > 1 ? "round \(number): " : ""
        log("\(label)ceiling: a bare consumer counting")
        let ceilingStart = cpuTime()
        let ceiling = try ceiling(topic: topic, group: "\(prefix)-ceiling")
        let ceilingCPU = cpuTime(since: ceilingStart)
        // The jobs wait for every event: a topic holding fewer would leave them waiting.
        guard ceiling.messages == events else {
            throw Failure(description: "\(topic): a bare consumer read \(ceiling.messages) of the \(events) events the broker acknowledged (lost or unreadable records); the jobs would wait for the rest")
        }
        log("\(label)ceiling: \(Int(ceiling.messagesPerSecond)) events/s")
        var jobs: [JobResult] = []
        for (name, yaml) in definitions(prefix: prefix, input: topic) where self.jobs.contains(name) {
            log("\(label)\(name) job")
            let result = try job(name, yaml: yaml, events: events)
            log("\(label)\(name): \(Int(result.eventsPerSecond)) events/s in \(result.seconds) s, start-up \(result.startupSeconds) s, all consumed at \(result.consumedSeconds) s, \(result.bounded.map { "input ended at \($0.inputEnded) s, stage 1 committed at \($0.stageOneDone) s, stage 2 held the ends at \($0.stageTwoHeld) s, " } ?? "")\(result.partials) partials, \(result.records) records, \(Int(result.cpuSecondsPerMillion)) CPU s per million, peak RSS \(Int(result.peakRSSMegabytes)) MB")
            jobs.append(result)
        }
        return Round(ceiling: ceiling, ceilingCPU: ceilingCPU, jobs: jobs)
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), \(Int(ProcessInfo.processInfo.physicalMemory / 1_073_741_824)) GB RAM, "
            + "librdkafka \(KafkaLibrary.version), broker on the same machine"
    }
}
