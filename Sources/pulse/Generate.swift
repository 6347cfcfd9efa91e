import ArgumentParser
import AudienceMetrics
import AudiencePulse
import Foundation
import Kafka
import Synchronization

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Produce a synthetic audience: events to Kafka (keyed by user) or NDJSON to a file.",
        discussion: """
            Users keep stable attributes drawn from weighted values; types follow a funnel (page views … conversions); \
            content popularity follows a Zipf law; timestamps are the current time minus up to --jitter, so events \
            arrive out of order; --duplicates and --malformed mix in producer retries and invalid messages. \
            Runs until --count events or --duration, or until Ctrl-C; prints what it produced.
            Example: pulse generate --rate 5000 --users 50000 --attribute country=DE:3,US:5,FR:2
            """)

    @OptionGroup var broker: BrokerOptions
    @Option(help: "Topic to produce to.") var topic = "audience.events"
    @Option(name: .shortAndLong, help: "Write NDJSON here instead of producing ('-' for standard output).") var output: String?
    @Option(help: "Events per second (0: as fast as possible).") var rate = 1_000
    @Option(help: "Stop after this many messages (0: no limit).") var count = 0
    @Option(help: "Stop after this long, e.g. 30s, 10m (default: no limit).") var duration: String?
    @Option(help: "Distinct users.") var users = 10_000
    @Option(help: "Distinct content items.") var content = 1_000
    @Option(help: "Zipf exponent of content popularity (0: uniform).") var zipf = 1.1
    @Option(parsing: .unconditionalSingleValue, help: "An attribute's weighted values, name=value:weight,… (repeatable; replaces the defaults country, device, source, plan).")
    var attribute: [String] = []
    @Option(help: "Event types' weights, type:weight,… (default: a page-view-to-conversion funnel).") var types: String?
    @Option(help: "Out-of-order jitter: events are stamped up to this much before now.") var jitter = "2s"
    @Option(help: "Share of messages that repeat the previous event (0–1).") var duplicates = 0.01
    @Option(help: "Share of malformed messages (0–1).") var malformed = 0.005
    @Option(help: "Event time of the first event, epoch milliseconds (default: now). With it, event time advances at --rate per second of event time and messages go out as fast as possible: for files and backfills.")
    var start: Int64?
    @Option(help: "Random seed (same seed, same audience).") var seed: UInt64 = 1
    @Option(help: "A content id that trends: its share of content events rises from 0 to 40 % over each 5 minutes of event time.") var trending: String?
    @Option(help: "Every this long, a spike: --spike-factor times the rate for --spike-length (e.g. 90s; default: none).") var spikeEvery: String?
    @Option(help: "Rate multiplier during a spike.") var spikeFactor = 4.0
    @Option(help: "How long a spike lasts.") var spikeLength = "10s"

    static let interrupted = Atomic<Bool>(false)

    func validate() throws {
        guard rate >= 0, count >= 0, users > 0, content > 0, zipf >= 0 else { throw ValidationError("rate, count, users, content and zipf must not be negative (users, content > 0)") }
        guard (0...1).contains(duplicates), (0...1).contains(malformed), duplicates + malformed <= 1 else {
            throw ValidationError("--duplicates and --malformed are shares between 0 and 1")
        }
        guard DurationText.parse(jitter) != nil else { throw ValidationError("--jitter '\(jitter)' is not a duration (e.g. 2s, 500ms)") }
        if let duration, DurationText.parse(duration) == nil { throw ValidationError("--duration '\(duration)' is not a duration (e.g. 30s, 10m)") }
        if start != nil && rate == 0 { throw ValidationError("--start needs a --rate (event time advances at that rate)") }
        if let spikeEvery {
            guard let every = DurationText.parse(spikeEvery), let length = DurationText.parse(spikeLength), every > 0, length > 0, length < every else {
                throw ValidationError("--spike-every and --spike-length must be durations (e.g. 90s and 10s), the length shorter than the period")
            }
            guard spikeFactor >= 1, rate > 0, start == nil else { throw ValidationError("spikes need a live --rate (no --start) and --spike-factor >= 1") }
        }
        _ = try spec()
    }

    func spec() throws -> SyntheticAudience.Spec {
        var spec = SyntheticAudience.Spec()
        spec.users = users
        spec.contentItems = content
        spec.trending = trending
        spec.zipfExponent = zipf
        spec.jitterMilliseconds = DurationText.parse(jitter) ?? 0
        spec.duplicateShare = duplicates
        spec.malformedShare = malformed
        spec.seed = seed
        if !attribute.isEmpty {
            spec.attributes = try attribute.map { text in
                let parts = text.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--attribute expects name=value:weight,…, got '\(text)'") }
                return (String(parts[0]), try Self.weights(String(parts[1]), option: "--attribute"))
            }
        }
        if let types { spec.types = try Self.weights(types, option: "--types") }
        return spec
    }

    static func weights(_ text: String, option: String) throws -> [(String, Double)] {
        try text.split(separator: ",").map { entry in
            let parts = entry.split(separator: ":")
            let weight = parts.count == 2 ? Double(parts[1]) : (parts.count == 1 ? 1 : nil)
            guard let weight, weight >= 0, !parts[0].isEmpty else { throw ValidationError("\(option): '\(entry)' is not value:weight") }
            return (String(parts[0]), weight)
        }
    }

    func run() throws {
        var audience = SyntheticAudience(spec: try spec())
        signal(SIGINT) { _ in Generate.interrupted.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in Generate.interrupted.store(true, ordering: .relaxed) }
        let sink = try Sink(output: output, topic: topic, broker: broker)
        let clock = ContinuousClock()
        let began = clock.now
        let limit = duration.flatMap(DurationText.parse).map { Duration.milliseconds($0) }
        var produced: [SyntheticAudience.Kind: Int] = [:]
        var total = 0
        var lastReport = began
        let spike = spikeEvery.flatMap(DurationText.parse).map { (every: $0, length: DurationText.parse(spikeLength) ?? 10_000) }
        var allowance = 1.0
        var lastTick = began
        // Paced in ticks of 10 ms: each tick sends what the rate allows by then.
        while !Generate.interrupted.load(ordering: .relaxed) {
            let now = clock.now
            let elapsed = now - began
            if let limit, elapsed >= limit { break }
            if count > 0 && total >= count { break }
            // The rate, times the spike factor during a spike (after the first full period).
            let milliseconds = Int64(elapsed.secondsDouble * 1000)
            let spiking = spike.map { milliseconds >= $0.every && milliseconds % $0.every < $0.length } ?? false
            allowance += (now - lastTick).secondsDouble * Double(rate) * (spiking ? spikeFactor : 1)
            lastTick = now
            // With --start, event time is simulated: no pacing, as fast as the sink takes it.
            let paced = rate > 0 && start == nil
            var batch = min(paced ? Int(allowance) : 10_000, 10_000)
            if count > 0 { batch = min(batch, count - total) }
            if paced { allowance -= Double(max(batch, 0)) }
            if batch <= 0 {
                Thread.sleep(forTimeInterval: 0.005)
                continue
            }
            for _ in 0..<batch {
                let time = start.map { $0 + Int64(total) * 1000 / Int64(max(rate, 1)) } ?? Int64(Date().timeIntervalSince1970 * 1000)
                let message = audience.next(at: time)
                try sink.write(message)
                produced[message.kind, default: 0] += 1
                total += 1
            }
            if clock.now - lastReport >= .seconds(5) {
                lastReport = clock.now
                FileHandle.standardError.write(Data("generate: \(total) messages, \(Int(Double(total) / max((clock.now - began).secondsDouble, 0.001))) per second\n".utf8))
            }
        }
        try sink.close()
        let seconds = (clock.now - began).secondsDouble
        FileHandle.standardError.write(Data((
            "generate: \(total) messages in \(String(format3: seconds)) s (valid \(produced[.valid] ?? 0), duplicates \(produced[.duplicate] ?? 0), "
            + "malformed \(produced[.malformed] ?? 0)) to \(output ?? topic)\n").utf8))
    }

    /// Where generated messages go: a Kafka topic or an NDJSON file.
    final class Sink {
        private let producer: KafkaProducer?
        private let topicHandle: KafkaProducerTopic?
        private let file: FileHandle?
        private var buffer: [UInt8] = []

        init(output: String?, topic: String, broker: BrokerOptions) throws {
            if let output {
                producer = nil
                topicHandle = nil
                if output == "-" {
                    file = FileHandle.standardOutput
                } else {
                    guard FileManager.default.createFile(atPath: output, contents: nil) else { throw ValidationError("cannot create \(output)") }
                    file = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
                }
            } else {
                // Batches of up to 50 ms (-X linger.ms overrides): with the client library's
                // default 5 ms, its sending thread spun through polls once the broker was
                // slow to acknowledge, taking up to half a core of the machine under test.
                let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: try broker.configuration(), linger: .milliseconds(50)))
                self.producer = producer
                topicHandle = try producer.topic(topic)
                file = nil
            }
        }

        func write(_ message: SyntheticAudience.Message) throws {
            if let producer, let topicHandle {
                try Array(message.key.utf8).withUnsafeBytes { key in
                    try Array(message.value.utf8).withUnsafeBytes { value in
                        try producer.produce(to: topicHandle, key: key, value: value, blockIfQueueFull: true)
                    }
                }
            } else {
                buffer.append(contentsOf: message.value.utf8)
                buffer.append(0x0A)
                if buffer.count >= 1 << 20 { flushFile() }
            }
        }

        private func flushFile() {
            file?.write(Data(buffer))
            buffer.removeAll(keepingCapacity: true)
        }

        func close() throws {
            flushFile()
            if let producer {
                try producer.flush(timeout: .seconds(60))
                if producer.unhandledDeliveryFailures > 0, let error = producer.lastUnhandledDeliveryError {
                    throw ValidationError("\(producer.unhandledDeliveryFailures) messages were not delivered: \(error)")
                }
                producer.close(timeout: .seconds(5))
            }
            if let file, file !== FileHandle.standardOutput { try file.close() }
        }
    }
}
