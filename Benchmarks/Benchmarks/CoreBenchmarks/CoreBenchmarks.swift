import AudienceMetrics
import Benchmark

/// Fresh reference events (new ids, advancing time) rendered in place.
nonisolated(unsafe) var corpus = ReferenceCorpus(count: 200_000)
let dimensions: [[String]] = [[], ["country"], ["device"], ["country", "device"]]

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(5),
        maxIterations: 1_000
    )

    Benchmark("decode + validate (reference event)") { benchmark in
        let decoder = EventDecoder(attributeNames: ["country", "device"])
        var sequence = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let index = corpus.prepare(sequence)
            sequence += 1
            blackHole(corpus.messages[index].withUnsafeBytes { decoder.decode($0) })
        }
    }

    Benchmark("stage 1 (decode, dedup, 4 segment combos, 1m window, all aggregates)") { benchmark in
        let spec = SegmentSpec(dimensions: dimensions)
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000)], segments: spec)
        let decoder = EventDecoder(attributeNames: spec.attributeNames)
        let assigner = SegmentAssigner(spec: spec, attributeNames: spec.attributeNames)
        let aggregator = PartitionAggregator(config: config, assigner: assigner)
        var sequence = 0
        // Warm-up: users, segments and windows exist (steady state).
        for _ in 0..<200_000 {
            let index = corpus.prepare(sequence)
            sequence += 1
            _ = corpus.messages[index].withUnsafeBytes { decoder.decode($0) }
            _ = aggregator.process(decoder)
            if sequence % 1_000 == 0 { blackHole(aggregator.closeReadyWindows()) }
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let index = corpus.prepare(sequence)
            sequence += 1
            if corpus.messages[index].withUnsafeBytes({ decoder.decode($0) }) == nil {
                blackHole(aggregator.process(decoder))
            }
            // As stage 1 does once per polled batch.
            if sequence % 1_000 == 0 { blackHole(aggregator.closeReadyWindows()) }
        }
        benchmark.stopMeasurement()
        blackHole(aggregator.closeReadyWindows())
    }
}
