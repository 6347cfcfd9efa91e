import Foundation
import Histogram
import Kafka
import Synchronization

/// Event → metric latency against a running `pulse serve`: produces events stamped with
/// the current time at a fixed rate and reads the metrics topic (`read_committed`).
///
/// For each update of the segment `all` in a window, the events it newly counts are
/// matched, oldest first, to the events produced into that window: each one's latency is
/// the record's arrival minus the event's produce time. Matching oldest first charges
/// any reordering between partitions to the latency, so the figures are upper bounds.
/// Window close → final: a final record's arrival minus the moment its window closed, the
/// window's end plus the out-of-orderness bound (the watermark, newest event time minus
/// that bound, passes the end once an event stamped that late arrives; the events here are
/// stamped with their produce time). Only windows that close while events still flow
/// count: the last ones close through the idle timeout instead.
///
/// Both are recorded in HdrHistograms (``LatencyPercentiles``): a percentile is within 0.1 %
/// of the value recorded, the maximum is exact, and the memory is fixed however many
/// events a run measures.
public enum LatencyBenchmark {
    public struct Result: Sendable {
        public var produced: Int
        public var measured: Int
        /// Event → first updated record including it, milliseconds.
        public var p50: Int64
        public var p99: Int64
        public var max: Int64
        /// Window close → final record, milliseconds, over every segment's final record.
        public var finalP50: Int64
        public var finalMax: Int64
        /// Final records measured, and the windows they belong to.
        public var finals: Int
        public var finalWindows: Int
    }

    public static func run(
        kafka: KafkaConfiguration, input: String, metrics: String, rate: Int, seconds: Int, windowMilliseconds: Int64,
        outOfOrdernessMilliseconds: Int64 = 5_000, warmupSeconds: Int = 5, settleSeconds: Int = 15
    ) throws -> Result {
        let sent = Mutex<[Int64: [Int64]]>([:])  // window start → produce times (ms), in order
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: kafka))
        let topic = try producer.topic(input)
        // The reader fetches with a short wait: the figures say when records become
        // readable, not how long the reader's own fetches wait on the broker (on the local
        // one, librdkafka's 500 ms default added 100–300 ms to each figure; Apache Kafka
        // answers a fetch as soon as data arrives). -X fetch.wait.max.ms overrides it.
        var readerKafka = kafka
        if readerKafka.properties["fetch.wait.max.ms"] == nil { readerKafka.properties["fetch.wait.max.ms"] = "10" }
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: readerKafka, groupID: "pulse-bench-latency"))
        let partitions = try KafkaAdmin(configuration: kafka).partitionIDs(of: metrics)
        try consumer.assign(partitions.map { KafkaTopicPartition(topic: metrics, partition: $0, offset: KafkaTopicPartition.end) })

        let stop = Atomic<Bool>(false)
        let producedCount = Atomic<Int>(0)
        let feeder = Thread {
            let began = ContinuousClock.now
            var sequence = 0
            while !stop.load(ordering: .relaxed) {
                let due = Int((ContinuousClock.now - began).secondsDouble * Double(rate))
                if sequence >= due {
                    Thread.sleep(forTimeInterval: 0.001)
                    continue
                }
                while sequence < due {
                    let now = wallMilliseconds()
                    let user = "u\(sequence % 50_000)"
                    let value = #"{"event_id":"lat-\#(now)-\#(sequence)","type":"page_view","user_id":"\#(user)","timestamp":\#(now),"attributes":{"country":"DE"}}"#
                    try? Array(user.utf8).withUnsafeBytes { key in
                        try Array(value.utf8).withUnsafeBytes { bytes in
                            try producer.produce(to: topic, key: key, value: bytes, blockIfQueueFull: true)
                        }
                    }
                    let start = now - now % windowMilliseconds
                    sent.withLock { $0[start, default: []].append(now) }
                    sequence += 1
                }
                producedCount.store(sequence, ordering: .relaxed)
            }
        }
        feeder.start()

        var latencies = LatencyPercentiles()
        var finals = LatencyPercentiles()
        var finalWindows = Set<Int64>()
        var counted: [Int64: Int] = [:]
        let began = wallMilliseconds()
        let stopFeedingAt = began + Int64(seconds) * 1000
        let measureFrom = began + Int64(warmupSeconds) * 1000
        let endAt = stopFeedingAt + Int64(settleSeconds) * 1000
        while wallMilliseconds() < endAt {
            if wallMilliseconds() >= stopFeedingAt { stop.store(true, ordering: .relaxed) }
            try consumer.poll(maxMessages: 1_000, timeout: .milliseconds(50)) { batch in
                let arrival = wallMilliseconds()
                for message in batch {
                    guard let record = try? JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any],
                          let events = record["events"] as? Int,
                          let window = record["window"] as? [String: Any], let start = (window["start_ms"] as? NSNumber)?.int64Value,
                          // Only the measured (tumbling) windows; other window sizes share starts with them.
                          (window["end_ms"] as? NSNumber)?.int64Value == start + windowMilliseconds
                    else { continue }
                    let close = start + windowMilliseconds + outOfOrdernessMilliseconds
                    if record["final"] as? Bool == true, start + windowMilliseconds >= measureFrom, close + 1_000 <= stopFeedingAt {
                        finals.record(arrival - close)
                        finalWindows.insert(start)
                    }
                    guard let key = message.key, key.starts(with: Array("all|".utf8)) else { continue }
                    let times = sent.withLock { $0[start] ?? [] }
                    let already = counted[start] ?? 0
                    if events > already {
                        for rank in already..<max(already, min(events, times.count)) where times[rank] >= measureFrom {
                            latencies.record(arrival - times[rank])
                        }
                        counted[start] = events
                    }
                }
            }
        }
        stop.store(true, ordering: .relaxed)
        try producer.flush(timeout: .seconds(30))
        try? consumer.close()
        return Result(
            produced: producedCount.load(ordering: .relaxed), measured: latencies.count,
            p50: latencies.percentile(50), p99: latencies.percentile(99), max: latencies.max,
            finalP50: finals.percentile(50), finalMax: finals.max, finals: finals.count, finalWindows: finalWindows.count)
    }

    static func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

/// Latencies in milliseconds, in an HdrHistogram of three significant digits: a
/// percentile is reported within 0.1 % of the value recorded, the maximum exactly, and a
/// run of millions of events takes a few kilobytes. A negative value (clocks a
/// millisecond apart) counts as 0.
public struct LatencyPercentiles: Sendable {
    private var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)

    public init() {}

    public mutating func record(_ milliseconds: Int64) {
        histogram.record(UInt64(Swift.max(0, milliseconds)))
    }

    /// Values recorded.
    public var count: Int { Int(histogram.totalCount) }

    /// The value at `percentile` (0–100), or -1 when nothing was recorded.
    public func percentile(_ percentile: Double) -> Int64 {
        count == 0 ? -1 : Int64(histogram.valueAtPercentile(percentile))
    }

    /// The largest value recorded, or -1 when nothing was.
    public var max: Int64 { count == 0 ? -1 : Int64(histogram.maxRecorded) }
}
