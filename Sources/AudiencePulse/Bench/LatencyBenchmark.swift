import Foundation
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

        var latencies: [Int64] = []
        var finals: [Int64] = []
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
                        finals.append(arrival - close)
                        finalWindows.insert(start)
                    }
                    guard let key = message.key, key.starts(with: Array("all|".utf8)) else { continue }
                    let times = sent.withLock { $0[start] ?? [] }
                    let already = counted[start] ?? 0
                    if events > already {
                        for rank in already..<max(already, min(events, times.count)) where times[rank] >= measureFrom {
                            latencies.append(arrival - times[rank])
                        }
                        counted[start] = events
                    }
                }
            }
        }
        stop.store(true, ordering: .relaxed)
        try producer.flush(timeout: .seconds(30))
        try? consumer.close()
        latencies.sort()
        finals.sort()
        func percentile(_ values: [Int64], _ p: Double) -> Int64 {
            values.isEmpty ? -1 : values[Swift.min(values.count - 1, Int(Double(values.count) * p))]
        }
        return Result(
            produced: producedCount.load(ordering: .relaxed), measured: latencies.count,
            p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), max: latencies.last ?? -1,
            finalP50: percentile(finals, 0.5), finalMax: finals.last ?? -1, finals: finals.count, finalWindows: finalWindows.count)
    }

    static func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
