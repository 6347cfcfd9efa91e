import AudienceMetrics
import Benchmark

/// The reference event of the design notes, varied by user, id and time, pre-rendered.
struct EventCorpus {
    let events: [[UInt8]]

    init(count: Int) {
        let countries = ["DE", "US", "FR", "GB", "BR", "IN", "JP"]
        let devices = ["mobile", "desktop", "tablet"]
        let sources = ["newsletter", "search", "social", "direct"]
        let plans = ["free", "pro", "team"]
        let types = ["page_view", "page_view", "page_view", "click", "like", "share", "comment", "conversion"]
        let origin: Int64 = 1_795_860_000_000
        events = (0..<count).map { index in
            let text = """
                {"event_id": "e-\(index)", "type": "\(types[index % types.count])", "user_id": "u-\(index &* 7919 % 100_003)", \
                "timestamp": \(origin + Int64(index) * 2), "content_id": "article-\(index % 500)", "dwell_ms": \(index % 9000), \
                "value": 19.99, "attributes": {"country": "\(countries[index % 7])", "device": "\(devices[index % 3])", \
                "source": "\(sources[index % 4])", "plan": "\(plans[index % 3])"}}
                """
            return Array(text.utf8)
        }
    }
}

let corpus = EventCorpus(count: 200_000)
let dimensions: [[String]] = [[], ["country"], ["device"], ["country", "device"]]

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal, .instructions],
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 1_000
    )

    Benchmark("decode + validate (reference event)") { benchmark in
        let decoder = EventDecoder(attributeNames: ["country", "device"])
        var position = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let bytes = corpus.events[position]
            position = position + 1 == corpus.events.count ? 0 : position + 1
            let reason = bytes.withUnsafeBytes { decoder.decode($0) }
            blackHole(reason)
        }
    }

    Benchmark("stage 1 (decode, dedup, 4 segment combos, 1m window, all aggregates)") { benchmark in
        let spec = SegmentSpec(dimensions: dimensions)
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000)], segments: spec)
        let decoder = EventDecoder(attributeNames: spec.attributeNames)
        let assigner = SegmentAssigner(spec: spec, attributeNames: spec.attributeNames)
        let aggregator = PartitionAggregator(config: config, assigner: assigner)
        // Warm up: the corpus once, so windows, users and segments exist (steady state).
        for bytes in corpus.events { _ = bytes.withUnsafeBytes { decoder.decode($0) }; _ = aggregator.process(decoder) }
        var position = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let bytes = corpus.events[position]
            position = position + 1 == corpus.events.count ? 0 : position + 1
            if bytes.withUnsafeBytes({ decoder.decode($0) }) == nil {
                blackHole(aggregator.process(decoder))
            }
        }
    }
}
