import ArgumentParser
import AudienceMetrics
import AudiencePulse
import Foundation
import Kafka
import Logging

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput (results belong in docs/benchmarks.md).",
        subcommands: [Suite.self, StateRun.self, Core.self, KafkaProduce.self, KafkaConsume.self, KafkaPayloads.self, Latency.self]
    )
}

struct BrokerOptions: ParsableArguments {
    @Option(name: .long, help: "Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:19092).")
    var brokers: String = ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"] ?? "127.0.0.1:19092"

    @Option(name: .customShort("X"), parsing: .unconditionalSingleValue, help: "A librdkafka property, name=value (repeatable).")
    var properties: [String] = []

    func configuration() throws -> KafkaConfiguration {
        var result: [String: String] = [:]
        for property in properties {
            let parts = property.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("-X expects name=value, got \(property)") }
            result[String(parts[0])] = String(parts[1])
        }
        return KafkaConfiguration(bootstrapServers: brokers, properties: result)
    }
}

/// `--log-level` of the benchmarks that run the service: its log lines (and the Kafka
/// clients') as JSON on standard error from that level up.
struct BenchLogOptions: ParsableArguments {
    @Option(help: "Lowest level of the services' log lines on standard error, as JSON (trace, debug, info, notice, warning, error, critical).")
    var logLevel = "warning"

    /// Sets up the log handler once; returns the level.
    func bootstrapped() throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got \(logLevel)")
        }
        Logging.bootstrap(level: level, json: true)
        return level
    }
}

extension Bench {
    struct Core: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Single-thread throughput of the metrics core (decode; the stage-1 path; both stages of the lean, full and example jobs without Kafka; unique-counter operations; checkpoint encodings of large state).")

        @Option(help: "Events per measurement.") var events = 2_000_000
        @Option(help: "Distinct pre-rendered events cycled through.") var corpus = 200_000
        @Option(help: "Both stages: events between updates (default: about a second's worth at each job's end-to-end rate, 250,000 lean and full, 75,000 example).")
        var updateEvery: Int?

        @Option(help: "Which measurements: decode, stage1, lean, full, example, sketches, state (comma-separated).")
        var only = "decode,stage1,lean,full,example,sketches,state"

        func run() throws {
            let selected = Set(only.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            var messages = ReferenceCorpus(count: corpus)
            func report(_ result: CoreThroughputBenchmark.Result) {
                print("\(result.name): \(result.events) events in \(String(format3: result.seconds)) s = \(Int(result.eventsPerSecond.rounded())) events/s")
            }
            if selected.contains("decode") {
                report(CoreThroughputBenchmark.decode(corpus: &messages, events: events))
                report(CoreThroughputBenchmark.decode(corpus: &messages, events: events, shapes: 0))
            }
            for job in [CoreThroughputBenchmark.Job.small, .hopping] where selected.contains("stage1") {
                let stage = CoreThroughputBenchmark.stageOne(corpus: &messages, events: events, job: job)
                report(stage.result)
                print("  accepted \(stage.accepted) events (warm-up included) and closed \(stage.windowsClosed) windows")
            }
            if selected.contains("sketches") {
                for times in try CoreThroughputBenchmark.uniqueCounters() {
                    print("unique counter of \(times.distinct) values (\(times.encodedBytes) bytes encoded): count \(String(format3: times.count)) µs, "
                          + "encode \(String(format3: times.encode)) µs, decode \(String(format3: times.decode)) µs, merge \(String(format3: times.merge)) µs, "
                          + "merge into registers \(String(format3: times.mergeIntoRegisters)) µs")
                }
            }
            if selected.contains("state") {
                let times = CoreThroughputBenchmark.stateEncodings()
                print("checkpoint encoding: de-duplicator of \(times.ids) ids \(String(format3: times.deduplicator)) ms (\(times.deduplicatorBytes / 1_000_000) MB), "
                      + "user table of \(times.users) users \(String(format3: times.userStates)) ms (\(times.userStateBytes / 1_000_000) MB)")
            }
            for (job, body, interval) in [("lean", SuiteBenchmark.leanJobBody, 250_000), ("full", SuiteBenchmark.fullJobBody, 250_000),
                                           ("example", SuiteBenchmark.exampleJobBody, 75_000)]
            where selected.contains(job) {
                let pipeline = try CoreThroughputBenchmark.pipeline(corpus: &messages, events: events, updateEvery: updateEvery ?? interval, body: body)
                print("\(job) job, ", terminator: "")
                report(pipeline.result)
                print("  \(pipeline.partials) partials (\(pipeline.partialBytes / 1_000_000) MB), \(pipeline.records) records "
                      + "(\(pipeline.finalRecords) final, \(pipeline.recordBytes / 1_000_000) MB), "
                      + "\(pipeline.checkpoints) checkpoints (\(pipeline.incrementalCheckpoints) of them increments, \(pipeline.checkpointBytes / 1_000_000) MB), \(pipeline.markers) watermark markers")
                print("  seconds: events \(String(format3: pipeline.processing.secondsDouble)), closing \(String(format3: pipeline.closing.secondsDouble)), "
                      + "updates \(String(format3: pipeline.updating.secondsDouble)), checkpoints \(String(format3: pipeline.checkpointing.secondsDouble))")
            }
        }
    }

    struct KafkaProduce: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kafka-produce",
            abstract: "Produce N synthetic events with the Kafka module's producer and report events/s.")

        @OptionGroup var broker: BrokerOptions
        @Option(help: "Topic to write to.") var topic: String
        @Option(help: "Number of records.") var count = 2_000_000
        @Option(help: "Create the topic with this many partitions if it does not exist.") var partitions: Int32?
        @Flag(help: "Distinct reference events (fresh ids, advancing time) instead of a repeating cycle; for end-to-end runs of pulse serve.") var unique = false
        @Flag(help: "Print the result as one JSON line.") var json = false

        func run() throws {
            if let partitions {
                let admin = try KafkaAdmin(configuration: broker.configuration())
                try admin.createTopics([KafkaTopicSpecification(name: topic, partitions: partitions)], ifNotExists: true)
                try admin.waitForTopic(topic, partitions: partitions)
            }
            guard count > 0 else { return }
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: broker.configuration()))
            let result = unique
                ? try KafkaThroughputBenchmark.produceReferenceEvents(producer: producer, topic: topic, count: count)
                : try KafkaThroughputBenchmark.produce(producer: producer, topic: topic, count: count)
            print(json ? result.json : result.description)
        }
    }

    struct KafkaConsume: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kafka-consume",
            abstract: "Read a topic from the beginning to its end with the Kafka module's consumer, only counting.")

        @OptionGroup var broker: BrokerOptions
        @Option(help: "Topic to read.") var topic: String
        @Option(help: "Stop once this many records arrived (default: at the end of every partition).") var expect: Int?
        @Flag(help: "Print the result as one JSON line.") var json = false

        func run() throws {
            let common = try broker.configuration()
            let partitions = try KafkaAdmin(configuration: common).partitionIDs(of: topic)
            let consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    common: common, groupID: "pulse-bench", enablePartitionEOF: true))
            let result = try KafkaThroughputBenchmark.consume(consumer: consumer, topic: topic, partitions: partitions, expected: expect)
            // Nothing to commit and no group joined: no close() (it would wait for the coordinator).
            print(json ? result.json : result.description)
        }
    }

    struct KafkaPayloads: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "kafka-payloads",
            abstract: "Write the benchmark's records as key<TAB>value lines, for kcat -P -K '\\t'.")

        @Option(help: "Number of records.") var count = 2_000_000

        func run() throws {
            var buffer = ""
            buffer.reserveCapacity(1 << 20)
            for index in 0..<count {
                let (key, value) = KafkaThroughputBenchmark.record(index)
                buffer += key
                buffer += "\t"
                buffer += value
                buffer += "\n"
                if buffer.utf8.count > 1 << 20 {
                    FileHandle.standardOutput.write(Data(buffer.utf8))
                    buffer.removeAll(keepingCapacity: true)
                }
            }
            FileHandle.standardOutput.write(Data(buffer.utf8))
        }
    }

    struct StateRun: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "state-run",
            abstract: "The state step of bench suite, in a process of its own: prints peak RSS (or, with --restart, restart time and RSS once restored) as JSON.",
            discussion: "Runs the service ((country, device, source), 1m windows) on --input until its final records stop changing; with --restart, starts it again on that state until ready and idle. bench suite pre-loads the topic and runs both.")

        @OptionGroup var broker: BrokerOptions
        @OptionGroup var log: BenchLogOptions
        @Option(help: "The service's app name (its topics and groups).") var app: String
        @Option(help: "The pre-loaded input topic.") var input: String
        @Option(help: "Events on the input topic.") var events: Int
        @Flag(help: "Restart on the state a previous run left instead of processing the input.") var restart = false

        func run() throws {
            var suite = SuiteBenchmark(kafka: try broker.configuration())
            suite.logLevel = try log.bootstrapped()
            suite.stateEvents = events
            print(try (restart ? suite.stateRestart(app: app, input: input) : suite.stateRun(app: app, input: input)).json)
        }
    }

    struct Latency: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Event → metric latency against a running pulse serve (segment all, tumbling windows).",
            discussion: "Produces events stamped now at --rate to --input for --seconds and reads --metrics; scripts/bench-latency.sh starts a service and runs this.")

        @OptionGroup var broker: BrokerOptions
        @Option(help: "The service's input topic.") var input = "audience.events"
        @Option(help: "The service's metrics topic.") var metrics = "audience.metrics"
        @Option(help: "Events per second.") var rate = 10_000
        @Option(help: "Seconds of input.") var seconds = 60
        @Option(help: "The service's (tumbling) window, milliseconds.") var windowMs: Int64 = 60_000
        @Option(help: "The service's time.max_out_of_orderness, milliseconds (a window closes this long after its end).")
        var outOfOrdernessMs: Int64 = 5_000

        func run() throws {
            let result = try LatencyBenchmark.run(kafka: try broker.configuration(), input: input, metrics: metrics, rate: rate, seconds: seconds,
                                                  windowMilliseconds: windowMs, outOfOrdernessMilliseconds: outOfOrdernessMs)
            print("latency at \(rate) events/s for \(seconds) s: \(result.produced) produced, \(result.measured) measured")
            print("event → updated metric: p50 \(result.p50) ms, p99 \(result.p99) ms, max \(result.max) ms")
            print("window close → final record: p50 \(result.finalP50) ms, max \(result.finalMax) ms over \(result.finals) records in \(result.finalWindows) windows")
        }
    }

    struct Suite: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The whole benchmark: ceiling, lean, full and example jobs end to end, latency at fixed rates, state size and restore.",
            discussion: """
                Pre-loads --events synthetic events (keyed by user) into a new topic, reads them with a bare consumer \
                (the ceiling), runs the service (exactly-once) on them for a lean job ((country, device), 10 s windows), \
                the full job (the service's default configuration) and pulse.example.yaml's job (five combinations, \
                two rules, 1m and 10m/1m windows), measures latency at each --rates, then memory and restore time with \
                --state-users users in 1,000 segments. Prints a Markdown table; --json and --append write it out. \
                Use a release build (make bench does).
                """)

        @OptionGroup var broker: BrokerOptions
        @OptionGroup var log: BenchLogOptions
        @Option(help: "Events to pre-load.") var events = 2_000_000
        @Option(help: "Partitions of the pre-loaded topic.") var partitions: Int32 = 4
        @Option(help: "Live input rates for the latency runs, comma-separated (empty: skip them).") var rates = "10000,100000"
        @Option(help: "Seconds of input per latency run.") var latencySeconds = 30
        @Option(help: "Distinct users of the state run (0: skip it).") var stateUsers = 1_000_000
        @Option(help: "Events of the state run.") var stateEvents = 3_000_000
        @Option(help: "Service jobs to run, comma-separated (lean, lean-static, lean-bounded, full, full-static, full-bounded, example, example-static, example-bounded; the -static ones with processing.assignment: static, the -bounded ones also with processing.until_end).")
        var jobs = SuiteBenchmark.jobNames.joined(separator: ",")
        @Option(help: "processing.stage1_workers of the service jobs and the latency runs (default: one per core).") var workers = ProcessInfo.processInfo.activeProcessorCount
        @Option(help: "Rounds of the ceiling and the jobs, one after the other; each job is reported by its round with the median share of that round's ceiling, with the range over all.")
        var rounds = 1
        @Option(help: "Write the results as JSON here.") var json: String?
        @Option(help: "Append the Markdown table to this file (e.g. docs/benchmarks.md).") var append: String?
        @Option(help: "The broker's process id, to report its CPU time next to the service's (default: the local broker's, from .tools/broker.pid, when --brokers is its address).")
        var brokerPid: Int32?

        func run() throws {
            var suite = SuiteBenchmark(kafka: try broker.configuration())
            suite.logLevel = try log.bootstrapped()
            suite.brokerPID = brokerPid ?? Self.localBrokerPID(servers: suite.kafka.bootstrapServers)
            suite.events = events
            suite.partitions = partitions
            suite.latencyRates = rates.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            suite.latencySeconds = latencySeconds
            suite.stateUsers = stateUsers
            suite.stateEvents = stateEvents
            suite.stageOneWorkers = workers
            guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
            suite.rounds = rounds
            suite.jobs = jobs.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if let unknown = suite.jobs.first(where: { !SuiteBenchmark.jobNames.contains($0) }) {
                throw ValidationError("unknown job \"\(unknown)\" (jobs: \(SuiteBenchmark.jobNames.joined(separator: ", ")))")
            }
            suite.log = { FileHandle.standardError.write(Data("bench: \($0)\n".utf8)) }
            let command = (["pulse"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
            let report = try suite.run(command: command, includeState: stateUsers > 0)
            print(report.markdown)
            if let append {
                let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: append))
                handle.seekToEndOfFile()
                handle.write(Data(("\n" + report.markdown).utf8))
                try handle.close()
            }
            if let json {
                // A fresh clone has no .tools/bench/ yet.
                let folder = URL(fileURLWithPath: json).deletingLastPathComponent()
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try report.json.write(toFile: json, atomically: true, encoding: .utf8)
            }
        }

        /// The broker `scripts/broker.sh` started, if it is running and `servers` is its address.
        static func localBrokerPID(servers: String) -> Int32? {
            guard let pidText = try? String(contentsOfFile: ".tools/broker.pid", encoding: .utf8),
                  let portText = try? String(contentsOfFile: ".tools/broker.port", encoding: .utf8),
                  let pid = Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)),
                  servers == "127.0.0.1:\(portText.trimmingCharacters(in: .whitespacesAndNewlines))",
                  kill(pid, 0) == 0 else { return nil }
            return pid
        }
    }
}
