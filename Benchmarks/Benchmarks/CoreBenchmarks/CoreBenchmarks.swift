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
        stageOne(benchmark, dimensions: dimensions, windows: [WindowSpec(size: 60_000)])
    }

    // pulse.example.yaml's combinations and windows (without its two rules), as
    // `pulse bench core` runs them: each event updates 5 segments in 11 windows.
    // Each sample repeats the 200,000-event warm-up (≈ 3 s at this path's speed): a longer
    // run for more than a couple of samples.
    Benchmark("stage 1 (5 segment combos, 1m + 10m/1m windows, all aggregates)",
              configuration: .init(maxDuration: .seconds(30))) { benchmark in
        stageOne(benchmark, dimensions: dimensions + [["source"]],
                 windows: [WindowSpec(size: 60_000), WindowSpec(size: 600_000, advance: 60_000)])
    }
}

/// Stage 1's whole path per event after a warm-up (users, segments and windows exist),
/// closing windows every 1,000 events as stage 1 does once per polled batch.
func stageOne(_ benchmark: Benchmark, dimensions: [[String]], windows: [WindowSpec]) {
    let spec = SegmentSpec(dimensions: dimensions)
    let config = AggregationConfig(windows: windows, segments: spec)
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
