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

    /// Decodes and validates `events` messages (their digits rewritten in place each time),
    /// along learned shapes, or with `shapes` 0 every message parsed in full.
    public static func decode(corpus: inout ReferenceCorpus, events: Int, shapes: Int = 4) -> Result {
        let decoder = EventDecoder(attributeNames: ["country", "device"], shapes: shapes)
        var rejected = 0
        let clock = ContinuousClock()
        let start = clock.now
        for sequence in 0..<events {
            let index = corpus.prepare(sequence)
            if corpus.messages[index].withUnsafeBytes({ decoder.decode($0) }) != nil { rejected += 1 }
        }
        precondition(rejected == 0, "the corpus is valid")
        return Result(name: shapes > 0 ? "decode + validate" : "decode + validate, every message parsed in full", events: events, seconds: (clock.now - start).secondsDouble)
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

    /// Writes sequence number `sequence` into its message and decodes that with `decoder`.
    @inline(__always)
    private static func decode(_ sequence: Int, _ decoder: EventDecoder, corpus: inout ReferenceCorpus) -> RejectReason? {
        let index = corpus.prepare(sequence)
        return corpus.messages[index].withUnsafeBytes { decoder.decode($0) }
    }

    /// The whole stage-1 path for `job`, after one warm-up pass (steady state: users,
    /// segments and windows exist), closing windows as the watermark passes them. Every
    /// event is new and on time.
    public static func stageOne(corpus: inout ReferenceCorpus, events: Int, job: Job = .small) -> (result: Result, windowsClosed: Int, accepted: Int64) {
        let spec = SegmentSpec(dimensions: job.dimensions)
        let config = AggregationConfig(windows: job.windows, segments: spec, sendsSlices: true)
        let assigner = SegmentAssigner(spec: spec, attributeNames: spec.attributeNames)
        let aggregator = PartitionAggregator(config: config, assigner: assigner)
        let decoders = DecodeAhead(attributeNames: spec.attributeNames)
        var closed = 0
        func run(_ sequences: Range<Int>) {
            // Stage 1 checks for closable windows once per polled batch.
            for batch in stride(from: sequences.lowerBound, to: sequences.upperBound, by: 1_000) {
                decoders.forEach(batch..<min(batch + 1_000, sequences.upperBound),
                                 decode: { sequence, decoder in decode(sequence, decoder, corpus: &corpus) },
                                 prefetch: { _, event in aggregator.prefetch(event) }) { _, decoder, rejected in
                    if rejected == nil { _ = aggregator.process(decoder) }
                }
                closed += aggregator.closeReadyWindows().count
            }
        }
        let warmUp = corpus.messages.count
        run(0..<warmUp)
        let clock = ContinuousClock()
        let start = clock.now
        run(warmUp..<(warmUp + events))
        let result = Result(name: job.name, events: events, seconds: (clock.now - start).secondsDouble)
        return (result, closed, aggregator.acceptedCount)
    }

    /// Time per operation of a unique-user counter holding `distinct` values (µs):
    /// reading its count, encoding it, decoding it, merging it into a copy of itself, and
    /// merging one of its size into a copy of a counter in registers (as stage 2 adds a
    /// small segment's part to a window's sum; the copy included).
    public struct UniqueCounterTimes: Sendable {
        public var distinct: Int
        public var encodedBytes: Int
        public var count: Double
        public var encode: Double
        public var decode: Double
        public var merge: Double
        public var mergeIntoRegisters: Double
    }

    /// Operations on unique-user counters of several sizes (exact, registers set sparsely,
    /// to half, and mostly), each repeated `rounds` times.
    public static func uniqueCounters(sizes: [Int] = [800, 1_500, 5_000, 30_000], rounds: Int = 2_000) throws -> [UniqueCounterTimes] {
        let clock = ContinuousClock()
        func microseconds(_ body: () throws -> Void) rethrows -> Double {
            let start = clock.now
            for _ in 0..<rounds { try body() }
            return (clock.now - start).secondsDouble * 1e6 / Double(rounds)
        }
        return try sizes.map { distinct in
            var counter = UniqueCounter()
            var generator = SplitMix64(seed: UInt64(distinct))
            for _ in 0..<distinct { counter.insert(generator.next()) }
            var writer = BinaryWriter()
            counter.encode(into: &writer)
            let bytes = writer.bytes
            var sink = 0
            let count = microseconds { sink &+= counter.count }
            let encode = microseconds {
                var writer = BinaryWriter(capacity: bytes.count)
                counter.encode(into: &writer)
                sink &+= writer.bytes.count
            }
            let decode = try microseconds {
                var reader = BinaryReader(bytes)
                sink &+= try UniqueCounter.decode(from: &reader).isExact ? 1 : 0
            }
            let other = counter
            let merge = microseconds {
                var copy = counter
                copy.merge(other)
                sink &+= copy.isExact ? 1 : 0
            }
            var dense = UniqueCounter()
            for _ in 0..<30_000 { dense.insert(generator.next()) }
            // 16 different counters of this size in turn: the same one over and over would
            // let the branch predictor learn its table.
            let parts = (0..<16).map { _ in
                var part = UniqueCounter()
                for _ in 0..<distinct { part.insert(generator.next()) }
                return part
            }
            var turn = 0
            let mergeIntoRegisters = microseconds {
                var copy = dense
                copy.merge(parts[turn & 15])
                turn &+= 1
                sink &+= copy.isExact ? 1 : 0
            }
            precondition(sink != 42, "keeps the measured work")
            return UniqueCounterTimes(distinct: distinct, encodedBytes: bytes.count, count: count, encode: encode, decode: decode, merge: merge,
                                      mergeIntoRegisters: mergeIntoRegisters)
        }
    }

    /// Checkpoint encodings of stage 1's per-partition state: a de-duplicator holding
    /// `ids` event ids and a user table holding `users` users (random keys, as hashes
    /// are), each encoded `rounds` times.
    public struct StateEncodingTimes: Sendable {
        public var ids: Int
        public var users: Int
        /// Milliseconds per encoding, and the bytes each writes.
        public var deduplicator: Double
        public var deduplicatorBytes: Int
        public var userStates: Double
        public var userStateBytes: Int
    }

    public static func stateEncodings(ids: Int = 2_000_000, users: Int = 1_000_000, rounds: Int = 5) -> StateEncodingTimes {
        var generator = SplitMix64(seed: 7)
        var dedup = Deduplicator(horizon: .max / 4, maxEntries: ids * 2)
        for index in 0..<ids { _ = dedup.isDuplicate(generator.next(), at: 1_800_000_000_000 + Int64(index / 1_000)) }
        var states = UserStates()
        for index in 0..<users { _ = states.update(user: generator.next(), time: 1_800_000_000_000 + Int64(index / 100), typeCode: 0) }
        let clock = ContinuousClock()
        func milliseconds(_ encode: (inout BinaryWriter) -> Void) -> (Double, Int) {
            var bytes = 0
            let start = clock.now
            for _ in 0..<rounds {
                var writer = BinaryWriter()
                encode(&writer)
                bytes = writer.bytes.count
            }
            return ((clock.now - start).secondsDouble * 1e3 / Double(rounds), bytes)
        }
        let (dedupTime, dedupBytes) = milliseconds { dedup.encode(into: &$0) }
        let (usersTime, usersBytes) = milliseconds { states.encode(into: &$0) }
        return StateEncodingTimes(ids: ids, users: users, deduplicator: dedupTime, deduplicatorBytes: dedupBytes, userStates: usersTime, userStateBytes: usersBytes)
    }

    /// What ``pipeline(corpus:events:updateEvery:body:)`` did.
    public struct PipelineResult: Sendable {
        public var result: Result
        /// Partials stage 1 sent (updates and finals) and their encoded bytes.
        public var partials = 0
        public var partialBytes = 0
        /// Metric records stage 2 produced (updates and finals) and their JSON bytes.
        public var records = 0
        public var recordBytes = 0
        /// The final records, in the order stage 2 produced them.
        public var finals: [MetricRecord] = []
        public var finalRecords: Int { finals.count }
        /// Checkpoints written by both stages (whole states and increments on them, as
        /// the service chooses), those written as increments, and their bytes.
        public var checkpoints = 0
        public var incrementalCheckpoints = 0
        public var checkpointBytes = 0
        /// Watermark markers stage 1 sent (each to every stage-2 merger).
        public var markers = 0
        /// Where the time went: decoding and aggregating events; closing windows (final
        /// partials, their merge and the final records); updates (partials and records);
        /// checkpoints.
        public var processing = Duration.zero
        public var closing = Duration.zero
        public var updating = Duration.zero
        public var checkpointing = Duration.zero
    }

    /// Both stages of a job on one thread, without Kafka: what the service computes per
    /// event, apart from the client library's work. The events go to 4 input partitions
    /// by user (as keyed records do), each with its own stage-1 aggregator; every
    /// partial is encoded as the partials topic carries it, decoded, and merged by one of
    /// 8 stage-2 mergers (by segment, as the service routes them), whose records are
    /// rendered as JSON. As the service does, per 5,000 events (a polled batch) ready
    /// windows close and each input partition's watermark marker follows its finals
    /// (when stage 1 would send one: windows closed, or the watermark moved by the
    /// smallest window advance);
    /// every `updateEvery` events (the update interval's worth at the service's rate)
    /// stage 1 sends its updates and stage 2 renders the updated records; every fifth
    /// time both stages write checkpoints (`processing.checkpoint_interval` is 5 s),
    /// increments on a whole state where the service's rule (``CheckpointChain``) allows.
    /// `body` holds the job's `segments`, `windows` and `metrics` (default: the full job
    /// of `pulse bench suite`, the service's defaults).
    public static func pipeline(corpus: inout ReferenceCorpus, events: Int, updateEvery: Int = 75_000,
                                body: String = SuiteBenchmark.fullJobBody) throws -> PipelineResult {
        let configuration = try PulseConfiguration.load(yaml: "kafka:\n  bootstrap.servers: 127.0.0.1:9092\ntopics:\n  input: events\n" + body)
        let config = configuration.aggregation
        let names = config.segments.attributeNames
        let inputPartitions = 4
        let partialsPartitions = 8
        let decoders = DecodeAhead(mapping: configuration.mapping, limits: configuration.limits, attributeNames: names)
        let aggregators = (0..<inputPartitions).map { _ in
            PartitionAggregator(config: config, assigner: SegmentAssigner(spec: config.segments, attributeNames: names))
        }
        let mergers = (0..<partialsPartitions).map { _ in
            WindowMerger(config: config, inputPartitions: inputPartitions, trendConfig: configuration.trend)
        }
        var offsets = Array(repeating: Int64(-1), count: inputPartitions)
        var out = PipelineResult(result: Result(name: "both stages (\(config.windows.map(\.name).joined(separator: ", ")), "
                                                + "\(config.segments.dimensions.count) combinations, \(config.segments.rules.count) rules)",
                                                events: events, seconds: 0))
        func render(_ records: [MetricRecord]) {
            for record in records {
                out.records += 1
                if record.isFinal { out.finals.append(record) }
                out.recordBytes += record.jsonBytes.count
            }
        }
        func send(_ partials: [WindowPartial], from partition: Int) throws {
            for window in partials {
                for (segment, aggregate) in window.segments {
                    let bytes = StageMessage.partial(of: window, segment: segment, aggregate: aggregate, inputPartition: Int32(partition),
                                                     inputPartitions: Int32(inputPartitions), inputOffset: offsets[partition]).encoded
                    out.partials += 1
                    out.partialBytes += bytes.count
                    guard case .partial(let partial) = try StageMessage(decoding: bytes) else { continue }
                    let merger = mergers[Int(StageMessage.partition(ofSegment: partial.segment, partitions: partialsPartitions))]
                    merger.apply(partial: partial.aggregate, segment: partial.segment, windowIndex: partial.windowIndex, start: partial.start,
                                 inputPartition: partial.inputPartition, offset: partial.inputOffset,
                                 overflowedEvents: partial.overflowedEvents, isFinal: partial.isFinal, part: partial.part)
                    if partial.isFinal && merger.isHoldingMarkers { render(merger.releaseHeldMarker(of: partial.inputPartition)) }
                }
            }
        }
        let clock = ContinuousClock()
        let smallestAdvance = config.smallestAdvance
        var lastMarkers = Array(repeating: Int64.min, count: inputPartitions)
        func close() throws {
            let started = clock.now
            defer { out.closing += clock.now - started }
            for (partition, aggregator) in aggregators.enumerated() {
                let closed = aggregator.closeReadyWindows()
                try send(closed, from: partition)
                guard StageOne.isMarkerDue(watermark: aggregator.watermark, lastMarker: lastMarkers[partition], closedAny: !closed.isEmpty,
                                           smallestAdvance: smallestAdvance)
                else { continue }
                lastMarkers[partition] = aggregator.watermark
                out.markers += 1
                let closing = StageMessage.closing(closed, partitions: partialsPartitions)
                for (target, merger) in mergers.enumerated() {
                    render(merger.applyWatermark(aggregator.watermark, inputPartition: Int32(partition), closing: closing[target]))
                }
            }
        }
        var aggregatorChains = Array(repeating: CheckpointChain(), count: inputPartitions)
        var mergerChains = Array(repeating: CheckpointChain(), count: partialsPartitions)
        func update(checkpoint: Bool) throws {
            let started = clock.now
            for (partition, aggregator) in aggregators.enumerated() { try send(aggregator.takeUpdates(), from: partition) }
            for merger in mergers { render(merger.takeUpdatedRecords()) }
            let updated = clock.now
            out.updating += updated - started
            guard checkpoint else { return }
            defer { out.checkpointing += clock.now - updated }
            // As the service writes them: increments on a whole state while the chain's
            // rule allows.
            func count(_ piece: (bytes: [UInt8], incremental: Bool)) {
                out.checkpoints += 1
                out.checkpointBytes += piece.bytes.count
                if piece.incremental { out.incrementalCheckpoints += 1 }
            }
            for (partition, aggregator) in aggregators.enumerated() {
                count(aggregatorChains[partition].next(increment: { _ in aggregator.checkpointIncrement() }, whole: aggregator.checkpoint))
            }
            for (partition, merger) in mergers.enumerated() {
                count(mergerChains[partition].next(increment: merger.checkpointIncrement(limit:), whole: merger.checkpoint))
            }
        }
        let corpusSize = corpus.messages.count
        func partition(of sequence: Int) -> Int { ReferenceCorpus.user(ofMessage: sequence % corpusSize) % inputPartitions }
        let start = clock.now
        var batchStart = start
        var sequence = 0
        while sequence < events {
            // Up to the next close (every 5,000 events) or update, whichever comes first.
            let end = min(events, (sequence / 5_000 + 1) * 5_000, (sequence / updateEvery + 1) * updateEvery)
            decoders.forEach(sequence..<end,
                             decode: { sequence, decoder in decode(sequence, decoder, corpus: &corpus) },
                             prefetch: { sequence, event in aggregators[partition(of: sequence)].prefetch(event) }) { sequence, decoder, rejected in
                let partition = partition(of: sequence)
                offsets[partition] += 1
                if rejected == nil { _ = aggregators[partition].process(decoder) }
            }
            sequence = end
            if sequence % 5_000 == 0 {
                out.processing += clock.now - batchStart
                try close()
                batchStart = clock.now
            }
            if sequence % updateEvery == 0 {
                try update(checkpoint: sequence % (updateEvery * 5) == 0)
                batchStart = clock.now
            }
        }
        out.processing += clock.now - batchStart
        // The end of the input: every window closes, as the idle timeout closes them.
        for aggregator in aggregators { aggregator.advanceWatermark(to: .max / 2) }
        try close()
        out.result.seconds = (clock.now - start).secondsDouble
        return out
    }
}
