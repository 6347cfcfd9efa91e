@testable import AudienceMetrics
import Testing

@Suite("Stage-1 aggregation: sessions, users, windows, watermarks")
struct AggregatorTests {
    static let minute: Int64 = 60_000

    @Test("sessions, engagement and bounce follow the GA4 definitions")
    func sessions() throws {
        let config = AggregationConfig()
        let pipeline = Pipeline(config)
        pipeline.feed(Events.json("a1", "page_view", user: "A", at: 0))
        pipeline.feed(Events.json("a2", "page_view", user: "A", at: 5_000))  // 2 page views: engaged
        pipeline.feed(Events.json("b1", "page_view", user: "B", at: 1_000))  // bounce
        pipeline.feed(Events.json("c1", "page_view", user: "C", at: 2_000))
        pipeline.feed(Events.json("c2", "click", user: "C", at: 17_000))  // 15 s long: engaged
        pipeline.feed(Events.json("d1", "conversion", user: "D", at: 3_000, value: "19.99"))  // converted: engaged
        let partials = pipeline.finish()
        let all = try #require(partials.aggregate("all", windowAt: 0))
        #expect(all.sessionsStarted == 4)
        #expect(all.sessionsEngaged == 3)
        #expect(all.sessionDurationMs == 5_000 + 15_000)
        #expect(all.revenueMicros == 19_990_000)
        let record = try #require(Pipeline.records(partials, config: config).first)
        #expect(record.bounceRate == 0.25)
        #expect(record.meanSessionDurationMs == 5_000)
        #expect(record.conversionRate == 0.25)
        #expect(record.engagementRate == 0)
    }

    @Test("a 30-minute gap starts a new session in the later window")
    func inactivityGap() throws {
        let pipeline = Pipeline(AggregationConfig())
        pipeline.feed(Events.json("e1", "page_view", user: "E", at: 0))
        pipeline.feed(Events.json("e2", "page_view", user: "E", at: 31 * Self.minute))
        pipeline.feed(Events.json("e3", "page_view", user: "E", at: 31 * Self.minute + 1_000))
        let partials = pipeline.finish()
        #expect(partials.aggregate("all", windowAt: 0)?.sessionsStarted == 1)
        #expect(partials.aggregate("all", windowAt: 0)?.sessionsEngaged == 0)
        #expect(partials.aggregate("all", windowAt: 31 * Self.minute)?.sessionsStarted == 1)
        #expect(partials.aggregate("all", windowAt: 31 * Self.minute)?.sessionsEngaged == 1)
    }

    @Test("new, returning and retained users, and the retention rate of the next window")
    func usersAcrossWindows() throws {
        let config = AggregationConfig()
        let pipeline = Pipeline(config)
        pipeline.feed(Events.json("1", "page_view", user: "U", at: 1_000))
        pipeline.feed(Events.json("2", "page_view", user: "W", at: 2_000))
        pipeline.feed(Events.json("3", "page_view", user: "U", at: Self.minute + 1_000))
        pipeline.feed(Events.json("4", "page_view", user: "V", at: Self.minute + 2_000))
        pipeline.feed(Events.json("5", "page_view", user: "V", at: Self.minute + 3_000))
        let partials = pipeline.finish()
        let second = try #require(partials.aggregate("all", windowAt: Self.minute))
        #expect(second.users.count == 2)
        #expect(second.newUsers.count == 1)
        #expect(second.retainedUsers.count == 1)
        let records = Pipeline.records(partials, config: config).filter { $0.segment == "all" }
        #expect(records.count == 2)
        #expect(records[1].newUsers == 1)
        #expect(records[1].returningUsers == 1)
        #expect(records[1].retainedUsers == 1)
        #expect(records[1].retentionRate == 0.5)
        #expect(records[0].retentionRate == nil)
    }

    @Test("out-of-order events within the bound count; events behind the watermark are late")
    func lateness() throws {
        let pipeline = Pipeline(AggregationConfig(maxOutOfOrderness: 5_000))
        #expect(pipeline.feed(Events.json("1", "click", user: "A", at: 10_000)) == .accepted)
        #expect(pipeline.feed(Events.json("2", "click", user: "B", at: 7_000)) == .accepted)  // out of order, window open
        #expect(pipeline.feed(Events.json("3", "click", user: "A", at: 70_000)) == .accepted)  // watermark 65 s
        #expect(pipeline.aggregator.closeReadyWindows().map(\.start) == [Events.origin])
        #expect(pipeline.feed(Events.json("4", "click", user: "C", at: 50_000)) == .late)
        #expect(pipeline.feed(Events.json("5", "click", user: "C", at: 62_000)) == .accepted)
        let partials = pipeline.finish()
        let current = try #require(partials.aggregate("all", windowAt: Self.minute))
        #expect(current.events == 2)
        #expect(current.late == 1)
        #expect(pipeline.aggregator.lateCount == 1)
    }

    @Test("allowed lateness keeps a window open past its end")
    func allowedLateness() {
        let pipeline = Pipeline(AggregationConfig(maxOutOfOrderness: 0, allowedLateness: 30_000))
        pipeline.feed(Events.json("1", "click", user: "A", at: 10_000))
        pipeline.feed(Events.json("2", "click", user: "A", at: 80_000))
        #expect(pipeline.aggregator.closeReadyWindows().isEmpty)
        #expect(pipeline.feed(Events.json("3", "click", user: "B", at: 20_000)) == .accepted)
        pipeline.feed(Events.json("4", "click", user: "A", at: 95_000))
        let closed = pipeline.aggregator.closeReadyWindows()
        #expect(closed.map(\.start) == [Events.origin])
        #expect(closed.first?.segments.first?.aggregate.events == 2)
    }

    @Test("an idle partition's windows close when the watermark is advanced")
    func idleAdvance() {
        let pipeline = Pipeline(AggregationConfig())
        pipeline.feed(Events.json("1", "click", user: "A", at: 10_000))
        #expect(pipeline.aggregator.closeReadyWindows().isEmpty)
        pipeline.aggregator.advanceWatermark(to: Events.origin + Self.minute)
        #expect(pipeline.aggregator.closeReadyWindows().count == 1)
        #expect(pipeline.aggregator.openWindowCount == 0)
    }

    @Test("hopping windows count an event in every window that contains it")
    func hopping() throws {
        let config = AggregationConfig(windows: [WindowSpec(size: 120_000, advance: 60_000), WindowSpec(size: 60_000)])
        let pipeline = Pipeline(config)
        pipeline.feed(Events.json("1", "click", user: "A", at: 90_000))
        let partials = pipeline.finish()
        #expect(partials.filter { $0.windowIndex == 0 }.map { $0.start - Events.origin } == [0, 60_000])
        #expect(partials.filter { $0.windowIndex == 1 }.map { $0.start - Events.origin } == [60_000])
        #expect(partials.allSatisfy { $0.segments.first?.aggregate.events == 1 })
        #expect(WindowSpec(parsing: "2m/1m") == config.windows[0])
    }

    @Test("a repeated event id is counted once and reported as a duplicate")
    func duplicates() throws {
        let pipeline = Pipeline(AggregationConfig())
        #expect(pipeline.feed(Events.json("same", "like", user: "A", at: 1_000)) == .accepted)
        #expect(pipeline.feed(Events.json("same", "like", user: "A", at: 1_000)) == .duplicate)
        let all = try #require(pipeline.finish().aggregate("all", windowAt: 0))
        #expect(all.events == 1)
        #expect(all.duplicates == 1)
    }

    @Test("dimension combinations, rules and the segment cap")
    func segments() throws {
        let rule = try SegmentRule.compile(#"plan == "pro" and device != "desktop""#)
        let spec = SegmentSpec(dimensions: [[], ["country"], ["country", "device"]], rules: [("pro_mobile", rule)], maxSegmentsPerWindow: 5)
        let pipeline = Pipeline(AggregationConfig(segments: spec))
        pipeline.feed(Events.json("1", "page_view", user: "A", at: 1_000, country: "DE", device: "mobile", plan: "pro"))
        pipeline.feed(Events.json("2", "page_view", user: "B", at: 2_000, country: "FR", device: "desktop", plan: "pro"))
        pipeline.feed(Events.json("3", "page_view", user: "C", at: 3_000, country: "US", device: "tablet", plan: "free"))
        let window = try #require(pipeline.finish().first)
        #expect(window.segments.map(\.name) == ["all", "country=DE", "country=DE,device=mobile", "country=FR", "other", "pro_mobile"])
        #expect(window.segments.first { $0.name == "other" }?.aggregate.events == 3)
        #expect(window.segments.first { $0.name == "pro_mobile" }?.aggregate.events == 1)
        #expect(window.overflowedEvents == 3)
    }

    @Test("invalid messages are counted in the current window of segment all")
    func invalid() throws {
        let pipeline = Pipeline(AggregationConfig())
        pipeline.feed(Events.json("1", "click", user: "A", at: 1_000))
        pipeline.feed("not json")
        #expect(pipeline.invalid == ["malformed_json"])
        #expect(pipeline.finish().aggregate("all", windowAt: 0)?.invalid == 1)
    }
}

@Suite("Segment rules")
struct SegmentRuleTests {
    @Test("rules parse with precedence and report errors with a position")
    func parsing() throws {
        let rule = try SegmentRule.compile(#"not country in ["DE", 'AT'] or (type == "conversion" and plan != "free")"#)
        #expect(rule.attributeNames == ["country", "plan"])
        let error = #expect(throws: SegmentRule.ParseError.self) { try SegmentRule.compile(#"plan == "pro" and"#) }
        #expect(error?.message == "expected an attribute name or type")
        #expect(throws: SegmentRule.ParseError.self) { try SegmentRule.compile(#"plan = "pro""#) }
        #expect(throws: SegmentRule.ParseError.self) { try SegmentRule.compile(#"plan in ["pro""#) }
        #expect(throws: SegmentRule.ParseError.self) { try SegmentRule.compile(#"(plan == "pro""#) }
    }

    @Test("rules evaluate over attributes and type, missing attributes match nothing")
    func evaluation() throws {
        let spec = SegmentSpec(dimensions: [], rules: [
            ("outside_dach", try SegmentRule.compile(#"country not in ["DE", "AT", "CH"]"#)),
            ("paying_converters", try SegmentRule.compile(#"type == "conversion" and (plan == "pro" or plan == "team")"#)),
            ("no_plan", try SegmentRule.compile(#"not plan in ["pro", "free", "team"]"#)),
        ])
        let pipeline = Pipeline(AggregationConfig(segments: spec))
        func segments(_ event: String) -> [String] {
            #expect(pipeline.decoder.decode(event) == nil)
            pipeline.assigner.assign(pipeline.decoder)
            return pipeline.assigner.keys.map { pipeline.assigner.name(of: $0) }
        }
        #expect(segments(Events.json("1", "conversion", user: "A", at: 0, country: "FR", plan: "team")) == ["outside_dach", "paying_converters"])
        #expect(segments(Events.json("2", "conversion", user: "A", at: 0, country: "DE", plan: "free")) == [])
        #expect(segments(Events.json("3", "click", user: "A", at: 0, country: "AT")) == ["no_plan"])
    }
}

@Suite("Windows and durations")
struct WindowTests {
    @Test("durations parse and format")
    func durations() {
        #expect(DurationText.parse("250ms") == 250)
        #expect(DurationText.parse("1h30m") == 5_400_000)
        #expect(DurationText.parse("10") == nil)
        #expect(DurationText.parse("5x") == nil)
        #expect(DurationText.format(60_000) == "1m")
        #expect(DurationText.format(90_000) == "90s")
        #expect(WindowSpec(parsing: "1m")?.size == 60_000)
        #expect(WindowSpec(parsing: "1m/2m") == nil)
    }

    @Test("window starts are epoch-aligned, including before 1970")
    func alignment() {
        let spec = WindowSpec(size: 60_000, advance: 20_000)
        var starts: [Int64] = []
        spec.forEachStart(containing: 125_000) { starts.append($0) }
        #expect(starts == [120_000, 100_000, 80_000])
        var negative: [Int64] = []
        WindowSpec(size: 60_000).forEachStart(containing: -1) { negative.append($0) }
        #expect(negative == [-60_000])
    }

    @Test("a new window's segments get user tables sized from the last closed window; the counts stay exact")
    func userTablesSizedFromTheLastWindow() throws {
        let config = AggregationConfig()
        let pipeline = Pipeline(config)
        for user in 0..<300 { pipeline.feed(Events.json("w0-\(user)", "page_view", user: "u\(user)", at: Int64(user) * 100)) }
        pipeline.aggregator.advanceWatermark(to: Events.origin + AggregatorTests.minute)
        let first = pipeline.aggregator.closeReadyWindows()
        #expect(first.aggregate("all", windowAt: 0)?.users.count == 300)

        for user in 0..<5 { pipeline.feed(Events.json("w1-\(user)", "page_view", user: "v\(user)", at: AggregatorTests.minute + Int64(user))) }
        let window = try #require(pipeline.aggregator.open[0].first)
        let all = try #require(window.slots[Hash64.hash("all")])
        // 300 users: 1,024 slots at once (a table at most half full), where 5 need 16.
        #expect(window.aggregates[all].users.table.count == 1_024)
        let partials = pipeline.finish()
        #expect(partials.aggregate("all", windowAt: AggregatorTests.minute)?.users.count == 5)
        #expect(partials.aggregate("all", windowAt: AggregatorTests.minute)?.users.sortedHashes == (0..<5).map { Hash64.hash("v\($0)") }.sorted())
    }
}
