import AudienceMetrics
import Foundation
import Testing

/// Hopping windows built from slices give the partials of keeping every window whole.
@Suite("Sliced hopping windows")
struct SlicedWindowTests {
    /// Sliced: 5m/1m, 3m/1m, 90s/30s; the tumbling 1m shares the 5m/1m slices. Kept whole
    /// either way: 100s/40s.
    static func config(slicing: Bool) -> AggregationConfig {
        AggregationConfig(
            windows: [WindowSpec(size: 60_000), WindowSpec(size: 300_000, advance: 60_000), WindowSpec(size: 180_000, advance: 60_000),
                      WindowSpec(size: 90_000, advance: 30_000), WindowSpec(size: 100_000, advance: 40_000)],
            maxOutOfOrderness: 5_000, allowedLateness: 10_000,
            segments: SegmentSpec(dimensions: [[], ["country"], ["country", "device"]],
                                  rules: [("engaged_mobile", try! SegmentRule.compile(#"device == "mobile" and type in ["like", "share", "comment"]"#))]),
            topContentCapacity: 64, slicesHoppingWindows: slicing)
    }

    /// What a partial says, with sketches as their counts and top content as a sorted list
    /// (a merged exact set and one filled in another order hold the same values).
    static func summary(_ partials: [WindowPartial]) -> [String] {
        partials.flatMap { partial in
            partial.segments.map { name, a in
                let top = a.topContent.top(64).map { "\($0.name)=\($0.count)" }.sorted().joined(separator: ",")
                return "\(partial.windowIndex)@\(partial.start)-\(partial.end) final=\(partial.isFinal) overflow=\(partial.overflowedEvents) \(name): "
                    + "events=\(a.events) types=\(a.knownTypes) other=\(a.otherTypes.sorted { $0.key < $1.key }) users=\(a.users.count) "
                    + "new=\(a.newUsers.count) retained=\(a.retainedUsers.count) converting=\(a.convertingUsers.count) dwell=\(a.dwell.count)/\(a.dwell.quantile(0.5) ?? -1) "
                    + "revenue=\(a.revenueMicros) sessions=\(a.sessionsStarted)/\(a.sessionsEngaged)/\(a.sessionDurationMs) "
                    + "late=\(a.late) duplicates=\(a.duplicates) invalid=\(a.invalid) top=[\(top)]"
            }
        }
    }

    /// Expects the same summaries; on a difference, shows the first one.
    static func expectSame(_ sliced: [WindowPartial], _ whole: [WindowPartial], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let a = summary(sliced)
        let b = summary(whole)
        guard a != b else { return }
        let index = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
        Issue.record("\(what): \(a.count) vs \(b.count) segments; first difference at \(index):\n sliced \(index < a.count ? a[index] : "-")\n whole  \(index < b.count ? b[index] : "-")",
                     sourceLocation: sourceLocation)
    }

    /// Out-of-order, late, repeated and malformed events; idle watermark advances; updates
    /// and closings after every few events; a restore from each kind of checkpoint.
    @Test("sliced and whole windows give the same partials", arguments: [1, 2, 3] as [UInt64])
    func sameAsWhole(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var sliced = Pipeline(Self.config(slicing: true))
        let whole = Pipeline(Self.config(slicing: false))
        let countries = ["DE", "US", "FR"]
        let types = ["page_view", "page_view", "click", "like", "share", "conversion", "signup"]
        var time: Int64 = 0
        var previous: String?
        var compared = 0
        var finals = 0
        for index in 0..<6_000 {
            time += Int64(random.next() % 300)
            // Up to 150 s behind: some events miss closed windows, some only part of them.
            let jitter = random.next() % 10 == 0 ? Int64(random.next() % 150_000) : 0
            let user = Int(random.next() % 200)
            let type = types[Int(random.next() % UInt64(types.count))]
            var event = Events.json(
                "e\(index)", type, user: "u\(user)", at: time - jitter, country: countries[user % countries.count],
                device: user % 2 == 0 ? "mobile" : "desktop",
                content: type == "page_view" ? "article-\(random.next() % 30)" : nil,
                dwell: type == "page_view" ? Int64(random.next() % 90_000) : nil,
                value: type == "conversion" ? "\(random.next() % 50).5" : nil)
            if random.next() % 40 == 0, let previous { event = previous }
            if random.next() % 200 == 0 { event = "{\"type\":" }
            previous = event
            #expect(sliced.feed(event) == whole.feed(event))
            if random.next() % 500 == 0 {
                let idle = whole.aggregator.watermark + Int64(random.next() % 40_000)
                sliced.aggregator.advanceWatermark(to: idle)
                whole.aggregator.advanceWatermark(to: idle)
            }
            if index % 37 == 0 {
                let closed = whole.aggregator.closeReadyWindows()
                Self.expectSame(sliced.aggregator.closeReadyWindows(), closed, "finals after event \(index)")
                Self.expectSame(sliced.aggregator.takeUpdates(), whole.aggregator.takeUpdates(), "updates after event \(index)")
                finals += closed.count
                compared += 1
            }
            if index == 2_000 || index == 4_000 {
                // A restart: from the sliced checkpoint, then from one of whole windows.
                let bytes = index == 2_000 ? sliced.aggregator.checkpoint() : whole.aggregator.checkpoint()
                let restored = Pipeline(Self.config(slicing: true))
                try restored.aggregator.restore(bytes)
                _ = restored.aggregator.takeUpdates()
                _ = sliced.aggregator.takeUpdates()
                _ = whole.aggregator.takeUpdates()
                sliced = restored
            }
        }
        Self.expectSame(sliced.finish(), whole.finish(), "the last finals")
        #expect(compared > 100)
        #expect(finals > 50)
    }

    @Test("a checkpoint restores to the same bytes and partials; one with slices needs a sliced configuration")
    func checkpointRoundTrip() throws {
        let pipeline = Pipeline(Self.config(slicing: true))
        let whole = Pipeline(Self.config(slicing: false))
        for index in 0..<500 {
            let event = Events.json("e\(index)", index % 3 == 0 ? "page_view" : "like", user: "u\(index % 17)", at: Int64(index) * 700,
                                    content: index % 3 == 0 ? "article-\(index % 5)" : nil)
            pipeline.feed(event)
            whole.feed(event)
            if index % 50 == 0 {
                _ = pipeline.aggregator.closeReadyWindows()
                _ = whole.aggregator.closeReadyWindows()
            }
        }
        let bytes = pipeline.aggregator.checkpoint()
        let restored = Pipeline(Self.config(slicing: true))
        try restored.aggregator.restore(bytes)
        #expect(restored.aggregator.checkpoint() == bytes)
        #expect(restored.aggregator.openWindowCount == whole.aggregator.openWindowCount)
        let finals = restored.finish()
        #expect(finals.count > 5)
        Self.expectSame(finals, whole.finish(), "finals after a restore")
        // Whole windows cannot take a checkpoint that holds slices (so there are some); the
        // other way round works (the restarts in `sameAsWhole`).
        #expect(throws: BinaryReader.Error.self) { try Pipeline(Self.config(slicing: false)).aggregator.restore(bytes) }
    }

    /// The events of the stored checkpoint's run.
    static func fixtureEvent(_ index: Int) -> String {
        Events.json("e\(index)", index % 3 == 0 ? "page_view" : "like", user: "u\(index % 17)", at: Int64(index) * 700,
                    country: index % 4 == 0 ? "US" : "DE", device: index % 5 == 0 ? "desktop" : "mobile",
                    content: index % 3 == 0 ? "article-\(index % 5)" : nil)
    }

    /// `Fixtures/stage1-checkpoint-format2.bin` was written by the aggregator of 5ec0f2b
    /// (format 2: before a tumbling window could share slices), with this suite's sliced
    /// configuration, after `fixtureEvent(0..<250)` and closings at every 50th event.
    @Test("a stored checkpoint of format 2 restores, and its windows end as whole windows would")
    func formatTwoCheckpoint() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/stage1-checkpoint-format2.bin")
        let bytes = try [UInt8](Data(contentsOf: url))
        #expect(bytes.first == 2)
        let restored = Pipeline(Self.config(slicing: true))
        try restored.aggregator.restore(bytes)
        let whole = Pipeline(Self.config(slicing: false))
        var fromRestored: [WindowPartial] = []
        var fromWhole: [WindowPartial] = []
        for index in 0..<500 {
            let event = Self.fixtureEvent(index)
            whole.feed(event)
            if index >= 250 { restored.feed(event) }
            guard index % 50 == 0 else { continue }
            let closed = whole.aggregator.closeReadyWindows()
            if index >= 250 {
                fromWhole += closed
                fromRestored += restored.aggregator.closeReadyWindows()
            }
        }
        fromWhole += whole.finish()
        fromRestored += restored.finish()
        #expect(fromWhole.count > 20)
        Self.expectSame(fromRestored, fromWhole, "finals after restoring format 2")
        #expect(restored.aggregator.checkpoint().first == 6, "written again in the current format")
    }

    /// `Fixtures/stage1-chain-format4/` was written by the aggregator of 62b034b (format 4:
    /// an increment wrote every window's aggregates), with this suite's sliced
    /// configuration, over `fixtureEvent(0..<250)` with closings at every 50th event: `0.bin`
    /// the whole checkpoint after event 149, `1.bin` and `2.bin` the increments after events
    /// 199 and 249, `whole.bin` the whole checkpoint after event 249.
    @Test("a stored chain of format 4 (a whole checkpoint, two increments) restores the state its whole checkpoint holds, and continues to the same finals")
    func formatFourChain() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/stage1-chain-format4")
        func piece(_ name: String) throws -> [UInt8] { try [UInt8](Data(contentsOf: directory.appendingPathComponent(name))) }
        let chain = try ["0.bin", "1.bin", "2.bin"].map(piece)
        #expect(chain.allSatisfy { $0.first == 4 })
        let fromChain = Pipeline(Self.config(slicing: true))
        try fromChain.aggregator.restore(chain[0])
        for increment in chain.dropFirst() { try fromChain.aggregator.applyIncrement(increment) }
        let fromWhole = Pipeline(Self.config(slicing: true))
        try fromWhole.aggregator.restore(try piece("whole.bin"))
        #expect(fromChain.aggregator.checkpoint() == fromWhole.aggregator.checkpoint())
        var finals: [[WindowPartial]] = [[], []]
        for index in 250..<500 {
            for (number, pipeline) in [fromChain, fromWhole].enumerated() {
                pipeline.feed(Self.fixtureEvent(index))
                if index % 50 == 0 { finals[number] += pipeline.aggregator.closeReadyWindows() }
            }
        }
        finals[0] += fromChain.finish()
        finals[1] += fromWhole.finish()
        #expect(finals[0].count > 10)
        Self.expectSame(finals[0], finals[1], "finals after restoring a format 4 chain")
    }
}
