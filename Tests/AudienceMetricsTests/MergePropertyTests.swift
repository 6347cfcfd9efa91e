import AudienceMetrics
import Testing

/// A random but reproducible audience: users with countries and devices, sessions with
/// gaps, duplicates, dwell times, conversions and Zipf-ish content.
struct RandomAudience {
    var events: [(user: String, json: String)] = []

    /// With `lateEvery`, about one event in that many is stamped up to 150 s before the
    /// stream's time: late for some windows containing it, not for later ones.
    init(seed: UInt64, count: Int, users: Int, lateEvery: UInt64? = nil) {
        var random = SplitMix64(seed: seed)
        let countries = ["DE", "US", "FR", "BR"]
        let devices = ["mobile", "desktop"]
        let types = ["page_view", "page_view", "page_view", "click", "like", "share", "comment", "conversion", "signup"]
        var time: Int64 = 0
        for index in 0..<count {
            time += Int64(random.next() % 400)
            if random.next() % 500 == 0 { time += 31 * 60_000 }  // a pause long enough to end sessions
            let user = Int(random.next() % UInt64(users))
            let type = types[Int(random.next() % UInt64(types.count))]
            // A producer retry: the same message again (same key, so the same partition).
            if random.next() % 50 == 0, let previous = events.last {
                events.append(previous)
                continue
            }
            var stamp = time
            if let lateEvery, random.next() % lateEvery == 0 { stamp -= Int64(random.next() % 150_000) }
            let json = Events.json(
                "e\(index)", type, user: "u\(user)", at: stamp, country: countries[user % countries.count], device: devices[user % 2],
                content: type == "page_view" ? "article-\(Int(random.next() % 20))" : nil,
                dwell: type == "page_view" ? Int64(random.next() % 120_000) : nil,
                value: type == "conversion" ? "\(random.next() % 100).\(random.next() % 100)" : nil)
            events.append(("u\(user)", json))
        }
    }
}

@Suite("Partitioned aggregation equals aggregation of everything at once")
struct MergePropertyTests {
    static let config = AggregationConfig(
        windows: [WindowSpec(size: 60_000), WindowSpec(size: 120_000, advance: 60_000)],
        maxOutOfOrderness: 1_000,
        segments: SegmentSpec(dimensions: [[], ["country"], ["country", "device"]],
                              rules: [("engaged_mobile", try! SegmentRule.compile(#"device == "mobile" and type in ["like", "share", "comment"]"#))]))

    enum Output {
        case partial(WindowPartial)
        case watermark(Int64, closing: [WindowMerger.ClosedWindow])
    }

    static func closing(_ closed: [WindowPartial]) -> [WindowMerger.ClosedWindow] {
        closed.filter(\.isFinal).map { WindowMerger.ClosedWindow(windowIndex: $0.windowIndex, start: $0.start, finals: $0.segments.count, isSlice: $0.part == .slice) }
    }

    /// Final records of one pipeline per partition (users split by hash), merged by stage 2
    /// with partials and watermark markers in a shuffled interleaving. With `withholding`,
    /// one segment's final partial of partition 0's `withholding`-th closed window is
    /// delivered only at the very end, after every marker (a record the broker delayed);
    /// `beforeRelease` sees the records produced until then.
    static func partitionedRecords(_ audience: RandomAudience, partitions: Int, seed: UInt64, withholding: Int? = nil, config: AggregationConfig = config,
                                   updates: Bool = false, restartMergerEvery: Int? = nil, upgradeAt: Int? = nil, upgradeTo: AggregationConfig? = nil,
                                   beforeRelease: ([MetricRecord], WindowMerger) -> Void = { _, _ in }) -> [String] {
        var pipelines = (0..<partitions).map { _ in Pipeline(config) }
        var updateRandom = SplitMix64(seed: seed ^ 0x5555)
        var outputs: [[Output]] = Array(repeating: [], count: partitions)
        for (index, event) in audience.events.enumerated() {
            if index == upgradeAt, let upgradeTo {
                // Every partition's stage 1 restarts from its checkpoint with `upgradeTo`.
                pipelines = pipelines.map { pipeline in
                    let restarted = Pipeline(upgradeTo)
                    #expect(throws: Never.self) { try restarted.aggregator.restore(pipeline.aggregator.checkpoint()) }
                    return restarted
                }
            }
            let partition = Int(Hash64.hash(event.user) % UInt64(partitions))
            pipelines[partition].feed(event.json)
            if updates && updateRandom.next() % 7 == 0 { outputs[partition] += pipelines[partition].aggregator.takeUpdates().map { .partial($0) } }
            let closed = pipelines[partition].aggregator.closeReadyWindows()
            outputs[partition] += closed.map { .partial($0) }
            if !closed.isEmpty { outputs[partition].append(.watermark(pipelines[partition].aggregator.watermark, closing: closing(closed))) }
        }
        for (partition, pipeline) in pipelines.enumerated() {
            let closed = pipeline.finish()
            outputs[partition] += closed.map { .partial($0) }
            outputs[partition].append(.watermark(pipeline.aggregator.watermark, closing: closing(closed)))
        }
        var withheld: (partial: WindowPartial, segment: Int)?
        if let withholding {
            let finals = outputs[0].indices.filter { if case .partial(let p) = outputs[0][$0] { p.isFinal && p.segments.count > 1 } else { false } }
            let index = finals[withholding % finals.count]
            guard case .partial(var partial) = outputs[0][index] else { return [] }
            let kept = partial.segments.removeLast()
            outputs[0][index] = .partial(partial)
            partial.segments = [kept]
            withheld = (partial, 0)
        }
        // Interleave the partitions' outputs randomly, keeping each partition's order.
        var merger = WindowMerger(config: config, inputPartitions: partitions)
        var random = SplitMix64(seed: seed)
        var updated: [MetricRecord] = []
        var applied = 0
        var positions = Array(repeating: 0, count: partitions)
        var records: [MetricRecord] = []
        var offset: Int64 = 0
        // Stage 2's checkpoints with restartMergerEvery: the current chain, how many were
        // taken, the longest chain's increments, and contributions increments left out.
        var chain: [[UInt8]] = []
        var mergerCheckpoints = 0
        var increments = 0
        var unchangedContributions = 0
        var changedContributions = 0
        defer {
            if restartMergerEvery != nil {
                #expect(increments == 3, "chains of a whole checkpoint and three increments")
                #expect(unchangedContributions > 0, "contributions unchanged since the checkpoint before are not written again")
                #expect(changedContributions > 0, "contributions replaced since the checkpoint before are written as their counters' changes")
            }
        }
        while positions.indices.contains(where: { positions[$0] < outputs[$0].count }) {
            let candidates = positions.indices.filter { positions[$0] < outputs[$0].count }
            let partition = candidates[Int(random.next() % UInt64(candidates.count))]
            let output = outputs[partition][positions[partition]]
            positions[partition] += 1
            offset += 1
            applied += 1
            if let every = restartMergerEvery, applied % every == 0 {
                // A checkpoint: an increment on the chain so far (a whole one every fourth),
                // whose chain restores to the bytes of the whole state; every fourth, stage 2
                // restarts from it and, as after a real restart, begins a new chain.
                mergerCheckpoints += 1
                // An increment past its byte limit is abandoned and changes nothing: the
                // next one still refers to what the chain holds.
                if !chain.isEmpty { #expect(merger.checkpointIncrement(limit: 8) == nil) }
                if chain.count % 4 != 0, let increment = merger.checkpointIncrement() {
                    chain.append(increment)
                    unchangedContributions += merger.unchangedInLastIncrement
                    changedContributions += merger.changedInLastIncrement
                } else {
                    chain = [merger.checkpoint()]
                }
                let whole = merger.checkpoint()
                let restored = WindowMerger(config: config, inputPartitions: partitions)
                #expect(throws: Never.self) {
                    try restored.restore(chain[0])
                    for increment in chain.dropFirst() { try restored.applyIncrement(increment) }
                }
                let same = restored.checkpoint() == whole
                #expect(same, "restored from a whole checkpoint and \(chain.count - 1) increments")
                increments = max(increments, chain.count - 1)
                if mergerCheckpoints % 4 == 0 {
                    merger = restored
                    chain = []
                }
            }
            guard case .partial(let partial) = output else {
                if case .watermark(let time, let closing) = output {
                    records += merger.applyWatermark(time, inputPartition: Int32(partition), closing: closing)
                }
                continue
            }
            for (name, aggregate) in partial.segments {
                merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start,
                             inputPartition: Int32(partition), offset: offset, isFinal: partial.isFinal, part: partial.part)
                // A replayed (older) partial changes nothing.
                #expect(!merger.apply(partial: SegmentAggregate(), segment: name, windowIndex: partial.windowIndex, start: partial.start,
                                      inputPartition: Int32(partition), offset: offset - 1, part: partial.part))
            }
            if updates && random.next() % 4 == 0 { updated += merger.takeUpdatedRecords() }
        }
        // Non-final records hold no more than the final ones.
        if updates {
            let finals = Dictionary(records.map { ("\($0.segment)|\($0.window.name)|\($0.start)", $0) }, uniquingKeysWith: { first, _ in first })
            #expect(!updated.isEmpty)
            for record in updated {
                guard let final = finals["\(record.segment)|\(record.window.name)|\(record.start)"] else { continue }
                #expect(record.events <= final.events, "\(record.segment) \(record.window.name) \(record.start)")
            }
        }
        if let withheld {
            beforeRelease(records, merger)
            let (name, aggregate) = withheld.partial.segments[withheld.segment]
            merger.apply(partial: aggregate, segment: name, windowIndex: withheld.partial.windowIndex, start: withheld.partial.start,
                         inputPartition: 0, offset: .max / 2, isFinal: true)
            records += merger.releaseHeldMarker(of: 0)
            #expect(!merger.isHoldingMarkers)
        }
        return records.map(\.json).sorted()
    }

    /// Expects `got` to equal `expected` (sorted record lines); on a mismatch, prints a
    /// few lines found in only one of them.
    static func expectSameRecords(_ got: [String], _ expected: [String], _ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got == expected, comment, sourceLocation: sourceLocation)
        guard got != expected else { return }
        for line in Set(got).subtracting(expected).sorted().prefix(3) { print("DIFF got:      \(line.prefix(300))") }
        for line in Set(expected).subtracting(got).sorted().prefix(3) { print("DIFF expected: \(line.prefix(300))") }
    }

    @Test("a final partial that arrives after its close marker holds the window (and every later one) instead of finalizing without it", arguments: [0, 3, 7])
    func missingFinalPartialHoldsTheWindow(withholding: Int) throws {
        let audience = RandomAudience(seed: 11, count: 3_000, users: 150)
        let complete = Self.partitionedRecords(audience, partitions: 3, seed: 5)
        var checkpoint: [UInt8] = []
        let delayed = Self.partitionedRecords(audience, partitions: 3, seed: 5, withholding: withholding) { before, merger in
            // Nothing final is wrong while the partial is missing: every record produced
            // so far is one of the complete run's, and some are still to come.
            #expect(Set(before.map(\.json)).isSubset(of: Set(complete)))
            #expect(before.count < complete.count)
            #expect(merger.missingFinals[0]?.map(\.missing) == [1])
            checkpoint = merger.checkpoint()
        }
        #expect(delayed == complete)
        // The held marker survives a checkpoint.
        let restored = WindowMerger(config: Self.config, inputPartitions: 3)
        try restored.restore(checkpoint)
        #expect(restored.checkpoint() == checkpoint)
        #expect(restored.missingFinals[0]?.map(\.missing) == [1])
    }

    @Test("random streams split over 1–5 partitions give byte-identical final records", arguments: [1, 2, 3, 5])
    func splitAndMerge(partitions: Int) {
        for seed in UInt64(1)...3 {
            let audience = RandomAudience(seed: seed, count: 3_000, users: 150)
            let single = Self.partitionedRecords(audience, partitions: 1, seed: seed)
            let split = Self.partitionedRecords(audience, partitions: partitions, seed: seed &* 31)
            #expect(single.count > 20)
            Self.expectSameRecords(split, single, "seed \(seed), \(partitions) partitions")
        }
    }

    @Test("stage 1 sending slices and windows' own parts, stage 2 assembling the windows: the same final records as whole windows",
          arguments: [1, 2, 3, 5])
    func slicesAssembledInStageTwo(partitions: Int) {
        var slicing = Self.config
        slicing.sendsSlices = true
        for seed in UInt64(1)...3 {
            let audience = RandomAudience(seed: seed, count: 3_000, users: 150)
            let whole = Self.partitionedRecords(audience, partitions: 1, seed: seed)
            let assembled = Self.partitionedRecords(audience, partitions: partitions, seed: seed &* 31, config: slicing, updates: true,
                                                    restartMergerEvery: 31)
            Self.expectSameRecords(assembled, whole, "seed \(seed), \(partitions) partitions")
        }
    }

    @Test("with late events (late for a window's first slices, not for later windows): slices assembled in stage 2 give the records of whole windows",
          arguments: [1, 3])
    func lateEventsAssembledInStageTwo(partitions: Int) {
        var whole = Self.config
        whole.windows = [WindowSpec(size: 60_000), WindowSpec(size: 180_000, advance: 60_000)]
        whole.slicesHoppingWindows = false
        var slicing = whole
        slicing.slicesHoppingWindows = true
        slicing.sendsSlices = true
        for seed in UInt64(1)...3 {
            let audience = RandomAudience(seed: seed, count: 3_000, users: 150, lateEvery: 15)
            let expected = Self.partitionedRecords(audience, partitions: partitions, seed: seed, config: whole)
            let assembled = Self.partitionedRecords(audience, partitions: partitions, seed: seed &* 31, config: slicing, updates: true)
            #expect(expected.count > 20)
            Self.expectSameRecords(assembled, expected, "seed \(seed), \(partitions) partitions")
        }
    }

    @Test("stage 1 restored from a checkpoint of a stage that sent whole windows, now sending slices: it sends them and the pending windows' own parts in full first, and the final records stay those of whole windows",
          arguments: [1, 3])
    func upgradeToSlices(partitions: Int) {
        var slicing = Self.config
        slicing.sendsSlices = true
        for seed in UInt64(1)...3 {
            let audience = RandomAudience(seed: seed, count: 3_000, users: 150, lateEvery: 25)
            let whole = Self.partitionedRecords(audience, partitions: partitions, seed: seed)
            for upgradeAt in [700, 1_500] {
                let upgraded = Self.partitionedRecords(audience, partitions: partitions, seed: seed, updates: true, upgradeAt: upgradeAt, upgradeTo: slicing)
                Self.expectSameRecords(upgraded, whole, "seed \(seed), \(partitions) partitions, upgraded at event \(upgradeAt)")
            }
        }
    }

    /// Each slice comes merged over the input partitions (once for all windows containing
    /// it); cutting its top content there would lose counts the window's single cut keeps.
    @Test("a window assembled from slices cuts top content once, over its own parts and every slice from every input partition")
    func topContentCutOnce() throws {
        var config = AggregationConfig(windows: [WindowSpec(size: 180_000, advance: 60_000)], maxOutOfOrderness: 0, topContentCapacity: 3, topContentSize: 3)
        config.sendsSlices = true
        for seed in UInt64(1)...20 {
            var random = SplitMix64(seed: seed)
            let merger = WindowMerger(config: config, inputPartitions: 2)
            var parts: [SegmentAggregate] = []
            for partition in Int32(0)..<2 {
                for (start, part) in [(0, WindowPartial.Part.own), (0, .slice), (60_000, .slice), (120_000, .slice)] {
                    var aggregate = SegmentAggregate(topContentCapacity: 3)
                    for _ in 0..<4 { aggregate.topContent.add(hash: 1 + random.next() % 7) }
                    parts.append(aggregate)
                    merger.apply(partial: aggregate, segment: "all", windowIndex: 0, start: Int64(start), inputPartition: partition,
                                 offset: 1, isFinal: true, part: part)
                }
                // Updates in between: the merged slices are made, then must follow new parts.
                _ = merger.takeUpdatedRecords()
            }
            var reference = SegmentAggregate(topContentCapacity: 3)
            reference.merge(parts)
            let records = merger.applyWatermark(300_000, inputPartition: 0) + merger.applyWatermark(300_000, inputPartition: 1)
            let record = try #require(records.first { $0.start == 0 })
            let expected = reference.topContent.top(3).map { "\($0.name)=\($0.count)" }
            #expect(record.topContent.map { "\($0.0)=\($0.1)" } == expected, "seed \(seed)")
        }
    }

    @Test("final records agree with an exact computation over the same events")
    func exactReference() throws {
        let audience = RandomAudience(seed: 9, count: 2_000, users: 80)
        let pipeline = Pipeline(Self.config)
        for event in audience.events { pipeline.feed(event.json) }
        let records = Pipeline.records(pipeline.finish(), config: Self.config).filter { $0.window.isTumbling }
        // Exact reference: decode every event once, de-duplicate by id, count per minute.
        let decoder = EventDecoder(attributeNames: ["country"])
        var seen = Set<String>()
        var events: [Int64: (count: Int64, users: Set<String>, pageViews: Int64, engagement: Int64, revenue: Int64, dwell: [Int64])] = [:]
        for event in audience.events {
            #expect(decoder.decode(event.json) == nil)
            guard seen.insert(decoder.string(decoder.event.eventID)).inserted else { continue }
            let start = decoder.event.timestamp - decoder.event.timestamp % 60_000
            var entry = events[start] ?? (0, [], 0, 0, 0, [])
            entry.count += 1
            entry.users.insert(decoder.string(decoder.event.userID))
            let type = decoder.event.knownType
            if type == .pageView { entry.pageViews += 1 }
            if type == .like || type == .share || type == .comment { entry.engagement += 1 }
            if type == .conversion { entry.revenue += decoder.event.valueMicros ?? 0 }
            if decoder.event.dwellMs >= 0 { entry.dwell.append(decoder.event.dwellMs) }
            events[start] = entry
        }
        let all = records.filter { $0.segment == "all" }
        #expect(all.count == events.count)
        for record in all {
            let exact = try #require(events[record.start])
            #expect(record.events == exact.count)
            #expect(record.uniqueUsers == exact.users.count)
            #expect(record.uniqueIsExact)
            #expect(record.engagementCount == exact.engagement)
            #expect(record.revenueMicros == exact.revenue)
            #expect(record.dwellCount == UInt64(exact.dwell.count))
            if let p50 = record.dwellP50, !exact.dwell.isEmpty {
                let sorted = exact.dwell.sorted()
                let truth = Double(sorted[(sorted.count - 1) / 2])
                #expect(truth == 0 ? p50 == 0 : abs(p50 - truth) / truth <= 0.01)
            }
            let pageViews = exact.pageViews
            #expect(record.engagementRate == (pageViews > 0 ? Double(exact.engagement) / Double(pageViews) : nil))
        }
    }

    @Test("whole checkpoints with increments between them (of the windows' aggregates only the changed ones, their unique counters as what changed: added hashes; with hour windows of thousands of users, registers) restore, in order, the state byte for byte, which continues to the same results",
          arguments: [false, true])
    func incrementalCheckpoints(hourWindows: Bool) throws {
        let audience = hourWindows
            ? RandomAudience(seed: 9, count: 6_000, users: 5_000, lateEvery: 40)
            : RandomAudience(seed: 9, count: 3_000, users: 150, lateEvery: 40)
        var config = Self.config
        if hourWindows { config.windows = [WindowSpec(size: 3_600_000), WindowSpec(size: 60_000)] }
        // Small enough that the de-duplicator forgets ids early (its journal holds 100).
        config.deduplicationMaxEntries = 400
        let live = Pipeline(config)
        // Fed the same events, checkpointed only to compare (a checkpoint restarts the
        // journal an increment is written from).
        let twin = Pipeline(config)
        var expected: [WindowPartial] = []
        var chain: [[UInt8]] = []
        var increments = 0
        // Aggregates an increment left out because the checkpoint before wrote the same,
        // and those it wrote as their counters' changes.
        var unchanged = 0
        var changed = 0
        var resumed: (pipeline: Pipeline, from: Int, got: [WindowPartial])?
        for (index, event) in audience.events.enumerated() {
            live.feed(event.json)
            expected += live.aggregator.closeReadyWindows()
            twin.feed(event.json)
            _ = twin.aggregator.closeReadyWindows()
            if var current = resumed {
                current.pipeline.feed(event.json)
                current.got += current.pipeline.aggregator.closeReadyWindows()
                resumed = current
            }
            guard index % 60 == 59 else { continue }
            if chain.count % 6 != 0, let increment = live.aggregator.checkpointIncrement() {
                chain.append(increment)
                increments += 1
                unchanged += live.aggregator.unchangedInLastIncrement
                changed += live.aggregator.changedInLastIncrement
            } else {
                chain = [live.aggregator.checkpoint()]
            }
            let restored = Pipeline(config)
            try restored.aggregator.restore(chain[0])
            for increment in chain.dropFirst() { try restored.aggregator.applyIncrement(increment) }
            let same = restored.aggregator.checkpoint() == twin.aggregator.checkpoint()
            #expect(same, "after event \(index), restored from a whole checkpoint and \(chain.count - 1) increments")
            if index == 1_799 { resumed = (restored, expected.count, []) }
        }
        #expect(increments == (hourWindows ? 83 : 41))
        // (Every 60 events touch every segment of an hour window.)
        #expect(unchanged > 0 || hourWindows, "windows no event touched since the checkpoint before are not written again")
        #expect(changed > 0, "windows changed since the checkpoint before are written as their counters' changes")
        // The hour windows' users are counted in registers.
        #expect(expected.contains { $0.segments.contains { !$0.aggregate.users.isExact } } == hourWindows)
        let resumedRun = try #require(resumed)
        #expect(resumedRun.got + resumedRun.pipeline.finish() == Array(expected[resumedRun.from...]) + live.finish())
        #expect(throws: BinaryReader.Error.self) { try Pipeline(config).aggregator.restore(chain[chain.count - 1]) }
    }

    /// With 4 top-content counters for 20 articles, nearly every page view replaces a
    /// counter, most often one of several tied at the smallest count: the restored
    /// summaries must pick the same one.
    @Test("a checkpoint restored mid-stream continues to the same results, and checkpoints are deterministic",
          arguments: [64, 4])
    func checkpointRestore(topContentCapacity: Int) throws {
        let audience = RandomAudience(seed: 4, count: 2_000, users: 100)
        let half = audience.events.count / 2
        var config = Self.config
        config.topContentCapacity = topContentCapacity

        let uninterrupted = Pipeline(config)
        var expected: [WindowPartial] = []
        for event in audience.events {
            uninterrupted.feed(event.json)
            expected += uninterrupted.aggregator.closeReadyWindows()
        }
        expected += uninterrupted.finish()

        let first = Pipeline(config)
        var got: [WindowPartial] = []
        for event in audience.events[..<half] {
            first.feed(event.json)
            got += first.aggregator.closeReadyWindows()
        }
        let bytes = first.aggregator.checkpoint()
        let twin = Pipeline(config)
        for event in audience.events[..<half] {
            twin.feed(event.json)
            _ = twin.aggregator.closeReadyWindows()
        }
        #expect(twin.aggregator.checkpoint() == bytes, "same input, same checkpoint bytes")

        let restored = Pipeline(config)
        try restored.aggregator.restore(bytes)
        #expect(restored.aggregator.checkpoint() == bytes)
        // The restored state stays byte for byte the state of the twin that never stopped
        // (compared every fourth event).
        var diverged: Int?
        for (index, event) in audience.events[half...].enumerated() {
            restored.feed(event.json)
            got += restored.aggregator.closeReadyWindows()
            twin.feed(event.json)
            _ = twin.aggregator.closeReadyWindows()
            if diverged == nil, index % 4 == 0, restored.aggregator.checkpoint() != twin.aggregator.checkpoint() { diverged = index }
        }
        #expect(diverged == nil, "the restored state differs from the uninterrupted one after event \(diverged ?? -1) of the second half")
        got += restored.finish()
        #expect(got == expected)

        let merger = WindowMerger(config: config, inputPartitions: 2)
        for partial in expected.prefix(3) {
            for (name, aggregate) in partial.segments {
                merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start, inputPartition: 0, offset: 5)
            }
        }
        _ = merger.applyWatermark(expected[2].end, inputPartition: 0)
        let mergerBytes = merger.checkpoint()
        let copy = WindowMerger(config: config, inputPartitions: 2)
        try copy.restore(mergerBytes)
        #expect(copy.checkpoint() == mergerBytes)
        #expect(throws: BinaryReader.Error.self) { try copy.restore(Array(mergerBytes.dropLast())) }
    }

    @Test("stage 2's increments write a replaced contribution as its counters' changes (added hashes, changed registers, over several replacements); each chain restores the whole state's bytes")
    func incrementsWriteCounterChanges() throws {
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000)], maxOutOfOrderness: 1_000, segments: SegmentSpec(dimensions: [[]]))
        /// Partition 0's partial of `all` after `users` users, partition 1's after half as many.
        func aggregate(users: Int, from partition: Int) -> SegmentAggregate {
            var aggregate = SegmentAggregate()
            for user in 0..<users {
                aggregate.events += 2
                aggregate.users.insert(Hash64.hash("p\(partition)-u\(user)"))
                if user % 3 == 0 { aggregate.newUsers.insert(Hash64.hash("p\(partition)-u\(user)")) }
            }
            return aggregate
        }
        let merger = WindowMerger(config: config, inputPartitions: 2)
        var offset: Int64 = 0
        func apply(users: Int, partition: Int32 = 0, isFinal: Bool = false, repeating: Bool = false) {
            if !repeating { offset += 1 }
            merger.apply(partial: aggregate(users: users, from: Int(partition)), segment: "all", windowIndex: 0, start: 0,
                         inputPartition: partition, offset: offset, isFinal: isFinal)
        }
        apply(users: 100)
        apply(users: 2_000, partition: 1)
        var chain = [merger.checkpoint()]
        var sizes: [Int] = []
        // Steps between increments: exact → exact, twice (hashes added over two
        // replacements); exact → registers (that counter whole); registers → registers, three times;
        // the final flag alone (the same offset); nothing.
        let steps: [[(users: Int, partition: Int32)]] = [[(300, 0), (700, 0)], [(1_500, 0)], [(1_600, 0), (1_700, 0), (2_500, 1)], [], []]
        for (number, step) in steps.enumerated() {
            for (users, partition) in step { apply(users: users, partition: partition) }
            if number == 3 { apply(users: 1_700, isFinal: true, repeating: true) }
            let increment = try #require(merger.checkpointIncrement())
            chain.append(increment)
            sizes.append(increment.count)
            let changed = merger.changedInLastIncrement
            #expect(changed == [1, 1, 2, 1, 0][number], "increment \(number + 1): \(changed) contributions written as changes")
            let restored = WindowMerger(config: config, inputPartitions: 2)
            try restored.restore(chain[0])
            for piece in chain.dropFirst() { try restored.applyIncrement(piece) }
            #expect(restored.checkpoint() == merger.checkpoint(), "restored from a whole checkpoint and \(chain.count - 1) increments")
        }
        // The registers' changes are a fraction of the counters: the increment with two
        // dense counters changed is smaller than the one that rewrote one whole.
        #expect(sizes[2] < sizes[1], "increment sizes \(sizes)")
        // An increment whose base is not the state restored before it is refused.
        let elsewhere = WindowMerger(config: config, inputPartitions: 2)
        try elsewhere.restore(chain[0])
        #expect(throws: BinaryReader.Error.self) { try elsewhere.applyIncrement(chain[3]) }
    }
}
