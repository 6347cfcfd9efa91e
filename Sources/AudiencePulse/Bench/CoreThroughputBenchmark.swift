import AudienceMetrics

/// Single-thread throughput of the metrics core on the reference event (`pulse bench
/// core`); the allocation-counting variant lives in Benchmarks/ (`make bench-core`).
public enum CoreThroughputBenchmark {
    /// The reference event of the design notes, varied by id, user, type, time and
    /// attributes: `count` distinct pre-rendered messages.
    public static func corpus(count: Int) -> [[UInt8]] {
        let countries = ["DE", "US", "FR", "GB", "BR", "IN", "JP"]
        let devices = ["mobile", "desktop", "tablet"]
        let sources = ["newsletter", "search", "social", "direct"]
        let plans = ["free", "pro", "team"]
        let types = ["page_view", "page_view", "page_view", "click", "like", "share", "comment", "conversion"]
        let origin: Int64 = 1_795_860_000_000
        return (0..<count).map { index in
            let text = "{\"event_id\": \"e-\(index)\", \"type\": \"\(types[index % types.count])\", "
                + "\"user_id\": \"u-\(index &* 7919 % 100_003)\", \"timestamp\": \(origin + Int64(index) * 2), "
                + "\"content_id\": \"article-\(index % 500)\", \"dwell_ms\": \(index % 9000), \"value\": 19.99, "
                + "\"attributes\": {\"country\": \"\(countries[index % 7])\", \"device\": \"\(devices[index % 3])\", "
                + "\"source\": \"\(sources[index % 4])\", \"plan\": \"\(plans[index % 3])\"}}"
            return Array(text.utf8)
        }
    }

    public struct Result: Sendable {
        public var name: String
        public var events: Int
        public var seconds: Double
        public var eventsPerSecond: Double { Double(events) / seconds }
    }

    /// Decodes and validates `events` messages, cycling through the corpus.
    public static func decode(corpus: [[UInt8]], events: Int) -> Result {
        let decoder = EventDecoder(attributeNames: ["country", "device"])
        var rejected = 0
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<events {
            if corpus[index % corpus.count].withUnsafeBytes({ decoder.decode($0) }) != nil { rejected += 1 }
        }
        precondition(rejected == 0, "the corpus is valid")
        return Result(name: "decode + validate", events: events, seconds: (clock.now - start).secondsDouble)
    }

    /// The whole stage-1 path with 4 dimension combinations and one 1-minute window, after
    /// one warm-up pass over the corpus (steady state: users, segments, windows exist).
    public static func stageOne(corpus: [[UInt8]], events: Int) -> Result {
        let spec = SegmentSpec(dimensions: [[], ["country"], ["device"], ["country", "device"]])
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000)], segments: spec)
        let decoder = EventDecoder(attributeNames: spec.attributeNames)
        let assigner = SegmentAssigner(spec: spec, attributeNames: spec.attributeNames)
        let aggregator = PartitionAggregator(config: config, assigner: assigner)
        for bytes in corpus {
            _ = bytes.withUnsafeBytes { decoder.decode($0) }
            _ = aggregator.process(decoder)
        }
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<events {
            if corpus[index % corpus.count].withUnsafeBytes({ decoder.decode($0) }) == nil {
                _ = aggregator.process(decoder)
            }
        }
        return Result(name: "stage 1 (4 combinations, 1m window)", events: events, seconds: (clock.now - start).secondsDouble)
    }
}
