import AudienceMetrics
import Kafka

/// Raw throughput of the `Kafka` module: a producer that only sends and a consumer that
/// only counts, for comparison with `kcat` on the same broker and topic
/// (`make bench-kafka`, results in docs/benchmarks.md).
///
/// Both loops are synchronous and meant for the process's main thread, never the
/// cooperative pool.
public enum KafkaThroughputBenchmark {
    /// One measured run.
    public struct Result: Sendable, CustomStringConvertible {
        public var role: String
        public var messages: Int
        public var bytes: Int
        public var seconds: Double
        public var messagesPerSecond: Double { Double(messages) / seconds }

        public var description: String {
            "\(role): \(messages) messages, \(bytes) payload bytes in \(String(format3: seconds)) s = "
                + "\(Int(messagesPerSecond.rounded())) msg/s"
        }

        /// One JSON object per line, for scripts.
        public var json: String {
            "{\"role\":\"\(role)\",\"messages\":\(messages),\"bytes\":\(bytes),\"seconds\":\(String(format3: seconds)),\"messages_per_second\":\(Int(messagesPerSecond.rounded()))}"
        }
    }

    /// The deterministic record number `index`: a user key and a small JSON audience event
    /// (about 200 bytes), the same bytes that `payloadLines` writes for kcat.
    public static func record(_ index: Int) -> (key: String, value: String) {
        let user = "u-\(index % 100_003)"
        let types = ["page_view", "page_view", "page_view", "click", "like", "share", "comment", "conversion"]
        let countries = ["DE", "US", "FR", "GB", "BR", "IN", "JP"]
        let devices = ["mobile", "desktop", "tablet"]
        let millis = 1_795_000_000_000 + Int64(index) * 3
        let value = "{\"event_id\":\"e-\(index)\",\"type\":\"\(types[index % types.count])\",\"user_id\":\"\(user)\","
            + "\"timestamp\":\(millis),\"content_id\":\"article-\(index % 500)\",\"dwell_ms\":\(index % 9000),"
            + "\"attributes\":{\"country\":\"\(countries[index % countries.count])\",\"device\":\"\(devices[index % devices.count])\"}}"
        return (user, value)
    }

    /// Produces `count` records to `topic` as fast as the producer accepts them, then
    /// flushes; the clock covers both.
    public static func produce(producer: KafkaProducer, topic: String, count: Int) throws -> Result {
        // Pre-render a cycle of records so the loop measures the client, not formatting.
        let cycle = (0..<min(count, 10_000)).map { index in
            let (key, value) = record(index)
            return (Array(key.utf8), Array(value.utf8))
        }
        var bytes = 0
        let handle = try producer.topic(topic)
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<count {
            let (key, value) = cycle[index % cycle.count]
            bytes += value.count
            try key.withUnsafeBytes { keyBytes in
                try value.withUnsafeBytes { valueBytes in
                    try producer.produce(to: handle, key: keyBytes, value: valueBytes, blockIfQueueFull: true)
                }
            }
        }
        try producer.flush(timeout: .seconds(300))
        let seconds = (clock.now - start).secondsDouble
        if producer.unhandledDeliveryFailures > 0 {
            throw producer.lastUnhandledDeliveryError ?? KafkaError(code: .fatal, message: "deliveries failed")
        }
        return Result(role: "producer", messages: count, bytes: bytes, seconds: seconds)
    }

    /// Produces `count` distinct reference events (fresh ids, event time advancing 2 ms
    /// per event, keyed by user), for end-to-end runs of the service.
    public static func produceReferenceEvents(producer: KafkaProducer, topic: String, count: Int) throws -> Result {
        var corpus = ReferenceCorpus(count: min(count, 200_000))
        let handle = try producer.topic(topic)
        var bytes = 0
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in 0..<count {
            let index = corpus.prepare(sequence)
            let key = Array("u-\(index &* 7919 % 100_003)".utf8)
            try corpus.messages[index].withUnsafeBytes { value in
                bytes += value.count
                try key.withUnsafeBytes { key in try producer.produce(to: handle, key: key, value: value, blockIfQueueFull: true) }
            }
        }
        try producer.flush(timeout: .seconds(300))
        return Result(role: "producer", messages: count, bytes: bytes, seconds: (clock.now - start).secondsDouble)
    }

    /// Reads every partition of `topic` from the beginning to its end (partition EOF),
    /// counting records and payload bytes. The clock starts at the first record.
    public static func consume(consumer: KafkaConsumer, topic: String, partitions: [Int32], expected: Int?) throws -> Result {
        try consumer.assign(partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.beginning) })
        var finished = Set<Int32>()
        var messages = 0
        var bytes = 0
        let clock = ContinuousClock()
        var start: ContinuousClock.Instant?
        var idlePolls = 0
        while finished.count < partitions.count || (expected.map { messages < $0 } ?? false) {
            // Full batches: the ceiling is this module's highest read rate, whatever a record waits.
            let received = try consumer.poll(maxMessages: 10_000, timeout: .milliseconds(100), fillingBatch: true) { batch in
                for message in batch { bytes &+= message.value.count }
                for eof in batch.partitionEOFs { finished.insert(eof.partition) }
                if let error = batch.errors.first { throw error }
            }
            if received > 0, start == nil { start = clock.now }
            messages += received
            idlePolls = received == 0 ? idlePolls + 1 : 0
            if idlePolls > 100 { break }  // 10 s without a record: report what arrived
        }
        let seconds = start.map { (clock.now - $0).secondsDouble } ?? 0
        return Result(role: "consumer", messages: messages, bytes: bytes, seconds: seconds)
    }
}

extension Duration {
    /// The duration in seconds.
    public var secondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension String {
    /// `value` with three decimals.
    public init(format3 value: Double) {
        let scaled = (value * 1000).rounded()
        self = String(Int(scaled) / 1000) + "." + String(String(Int(abs(scaled)) % 1000 + 1000).dropFirst())
    }
}
