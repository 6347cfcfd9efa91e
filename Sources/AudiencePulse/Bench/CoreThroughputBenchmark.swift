import AudienceMetrics

/// Single-thread throughput of the metrics core on the reference event (`pulse bench
/// core`); the allocation-counting variant lives in Benchmarks/ (`make bench-core`).
public enum CoreThroughputBenchmark {
    public struct Result: Sendable {
        public var name: String
        public var events: Int
        public var seconds: Double
        public var eventsPerSecond: Double { Double(events) / seconds }
    }

    /// Decodes and validates `events` messages (their digits rewritten in place each time).
    public static func decode(corpus: inout ReferenceCorpus, events: Int) -> Result {
        let decoder = EventDecoder(attributeNames: ["country", "device"])
        var rejected = 0
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in 0..<events {
            let index = corpus.prepare(sequence)
            if corpus.messages[index].withUnsafeBytes({ decoder.decode($0) }) != nil { rejected += 1 }
        }
        precondition(rejected == 0, "the corpus is valid")
        return Result(name: "decode + validate", events: events, seconds: (clock.now - start).secondsDouble)
    }

    /// A stage-1 job of ``stageOne(corpus:events:job:)``.
    public struct Job: Sendable {
        public var name: String
        public var dimensions: [[String]]
        public var windows: [WindowSpec]

        /// 4 dimension combinations, one 1-minute window.
        public static let small = Job(name: "stage 1 (4 combinations, 1m window)",
                                      dimensions: [[], ["country"], ["device"], ["country", "device"]], windows: [WindowSpec(size: 60_000)])
        /// pulse.example.yaml's combinations and windows (without its two rules): each event
        /// updates 5 segments in 11 windows.
        public static let hopping = Job(name: "stage 1 (5 combinations, 1m + 10m/1m windows)",
                                        dimensions: [[], ["country"], ["device"], ["country", "device"], ["source"]],
                                        windows: [WindowSpec(size: 60_000), WindowSpec(size: 600_000, advance: 60_000)])
    }

    /// The whole stage-1 path for `job`, after one warm-up pass (steady state: users,
    /// segments and windows exist), closing windows as the watermark passes them. Every
    /// event is new and on time.
    public static func stageOne(corpus: inout ReferenceCorpus, events: Int, job: Job = .small) -> (result: Result, windowsClosed: Int, accepted: Int64) {
        let spec = SegmentSpec(dimensions: job.dimensions)
        let config = AggregationConfig(windows: job.windows, segments: spec)
        let decoder = EventDecoder(attributeNames: spec.attributeNames)
        let assigner = SegmentAssigner(spec: spec, attributeNames: spec.attributeNames)
        let aggregator = PartitionAggregator(config: config, assigner: assigner)
        let warmUp = corpus.messages.count
        var closed = 0
        for sequence in 0..<warmUp {
            let index = corpus.prepare(sequence)
            _ = corpus.messages[index].withUnsafeBytes { decoder.decode($0) }
            _ = aggregator.process(decoder)
            if sequence % 1_000 == 0 { closed += aggregator.closeReadyWindows().count }
        }
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in warmUp..<(warmUp + events) {
            let index = corpus.prepare(sequence)
            if corpus.messages[index].withUnsafeBytes({ decoder.decode($0) }) == nil {
                _ = aggregator.process(decoder)
            }
            // Stage 1 checks for closable windows once per polled batch.
            if sequence % 1_000 == 0 { closed += aggregator.closeReadyWindows().count }
        }
        let result = Result(name: job.name, events: events, seconds: (clock.now - start).secondsDouble)
        return (result, closed, aggregator.acceptedCount)
    }
}
