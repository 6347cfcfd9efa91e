@testable import AudienceMetrics
import Foundation
import Testing

@Suite("Metric records")
struct MetricRecordTests {
    static var schemaPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/metric-record.schema.json").path
    }

    @Test("every record of a random audience validates against the JSON Schema in docs/")
    func schema() throws {
        let validator = try JSONSchemaValidator(file: Self.schemaPath)
        let audience = RandomAudience(seed: 11, count: 3_000, users: 2_000)
        let pipeline = Pipeline(MergePropertyTests.config)
        var partials: [WindowPartial] = []
        for (index, event) in audience.events.enumerated() {
            pipeline.feed(index % 97 == 0 ? "{broken" : event.json)
            if index % 250 == 0 { partials += pipeline.aggregator.takeUpdates() }
        }
        partials += pipeline.finish()
        let merger = WindowMerger(config: MergePropertyTests.config, inputPartitions: 1)
        var records: [MetricRecord] = []
        for (offset, partial) in partials.enumerated() {
            for (name, aggregate) in partial.segments {
                merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start, inputPartition: 0, offset: Int64(offset))
            }
            records += merger.takeUpdatedRecords()
        }
        records += merger.applyWatermark(.max / 2, inputPartition: 0)
        #expect(records.contains { !$0.isFinal } && records.contains { $0.isFinal })
        #expect(records.contains { $0.trend?.anomalyScore != nil })
        for record in records {
            let problems = try validator.problems(in: record.json)
            #expect(problems.isEmpty, "\(record.segment) \(record.start): \(problems)")
        }
        // The schema check itself can fail.
        #expect(try !validator.problems(in: #"{"schema":"audience-pulse.metrics/v2"}"#).isEmpty)
    }

    @Test("counts by known type: one lane per type, written as a count then each type's (the form of every version), summed by merges; another count is refused")
    func knownTypeCounts() throws {
        #expect(KnownEventType.allCases.count == SegmentAggregate.KnownTypeCounts.scalarCount)
        var aggregate = SegmentAggregate()
        aggregate.events = 36
        for type in KnownEventType.allCases { aggregate.knownTypes[type.rawValue] = Int64(type.rawValue + 1) }
        var expected = BinaryWriter()
        expected.write(UInt8(1))
        expected.writeSigned(36)
        expected.writeVarint(KnownEventType.allCases.count)
        for type in KnownEventType.allCases { expected.writeSigned(Int64(type.rawValue + 1)) }
        let bytes = aggregate.encoded
        #expect(Array(bytes.prefix(expected.bytes.count)) == expected.bytes)
        #expect(try SegmentAggregate(encoded: bytes) == aggregate)
        var merged = aggregate
        merged.merge([aggregate, aggregate])
        #expect(KnownEventType.allCases.allSatisfy { merged.count($0) == 3 * Int64($0.rawValue + 1) })
        #expect(merged.count(in: EventTypeSet([.like, .share])) == 3 * (3 + 4))
        // Seven or nine types: not this form.
        for count in [7, 9] {
            var other = bytes
            other[expected.bytes.count - KnownEventType.allCases.count - 1] = UInt8(count)
            #expect(throws: BinaryReader.Error.self) { try SegmentAggregate(encoded: other) }
        }
    }

    @Test("the encoding is deterministic and escapes strings")
    func encoding() throws {
        var aggregate = SegmentAggregate()
        aggregate.events = 3
        aggregate.knownTypes[KnownEventType.pageView.rawValue] = 2
        aggregate.knownTypes[KnownEventType.like.rawValue] = 1
        aggregate.users.insert(1)
        aggregate.revenueMicros = 1_500_000
        aggregate.topContent.add(hash: 9)
        aggregate.topContent.attachNames { _ in "a \"quoted\"\nid" }
        let record = MetricRecord(segment: "country=DE", window: WindowSpec(size: 60_000), start: 1_795_860_000_000, aggregate: aggregate,
                                  isFinal: true, previousUniqueUsers: 4, trend: nil, overflowedEvents: 0, config: AggregationConfig())
        #expect(record.json == record.json)
        #expect(record.json.hasPrefix(#"{"schema":"audience-pulse.metrics/v1","segment":"country=DE","window":{"size":"1m","start":"2026-11-28T10:00:00.000Z","end":"2026-11-28T10:01:00.000Z","start_ms":1795860000000,"end_ms":1795860060000},"final":true,"events":3,"by_type":{"like":1,"page_view":2},"users":{"unique":1,"unique_exact":true,"new":0,"returning":1,"retained":0,"retention_rate":0},"engagement":{"count":1,"rate":0.5,"per_user":1},"conversion":{"count":0,"users":0,"rate":0,"revenue":1.5}"#))
        #expect(record.json.contains(#""top_content":[{"content_id":"a \"quoted\"\nid","views":1}]"#))
        #expect(record.key(includeWindowName: false) == "country=DE|1795860000000")
        let decoded = try JSONSerialization.jsonObject(with: Data(record.json.utf8)) as? [String: Any]
        #expect(decoded?["events"] as? Int == 3)
    }

    @Test("numbers, times and strings from data are written exactly, escaped where JSON needs it")
    func numbersAndEscapes() throws {
        var aggregate = SegmentAggregate()
        aggregate.events = 4
        aggregate.otherTypes = ["say \"hi\"\\now": 3, "tab\tbell\u{7}": 1]
        aggregate.revenueMicros = -1_000_050
        let segment = "city=Zürich \"Ost\" \\ 😀\n\u{1}"
        let record = MetricRecord(segment: segment, window: WindowSpec(size: 60_000), start: 946_684_799_999, aggregate: aggregate,
                                  isFinal: false, previousUniqueUsers: nil, trend: nil, overflowedEvents: 9_223_372_036_854_775_807,
                                  config: AggregationConfig())
        let json = record.json
        #expect(json.contains(#""segment":"city=Zürich \"Ost\" \\ 😀\n\u0001""#))
        #expect(json.contains(#""start":"1999-12-31T23:59:59.999Z","end":"2000-01-01T00:00:59.999Z","start_ms":946684799999"#))
        #expect(json.contains(#""by_type":{"say \"hi\"\\now":3,"tab\tbell\u0007":1}"#))
        #expect(json.contains(#""revenue":-1.00005}"#))
        #expect(json.contains(#""overflowed_events":9223372036854775807}"#))
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(decoded["segment"] as? String == segment)
        #expect((decoded["by_type"] as? [String: Int])?["tab\tbell\u{7}"] == 1)
        #expect(JSONText.format(-1.5) == "-1.5")
        #expect(JSONText.format(0.0000004) == "0")
        #expect(JSONText.format(0.0000005) == "0.000001")
        #expect(JSONText.format(1_234_567.000_1) == "1234567.0001")
        #expect(JSONText.format(-0.25) == "-0.25")
        #expect(JSONText.format(12_345_678_901_234.4) == "12345678901234")
        #expect(JSONText.format(-1e30) == "-1e+30", "beyond 64-bit integers, exponent form rather than a trap")
        #expect(JSONText.formatMicros(-9_223_372_036_854_775_808) == "-9223372036854.775808")
        #expect(Timestamp.format(4_102_444_800_000) == "2100-01-01T00:00:00.000Z")
    }

    @Test("trends: change, level, Holt forecast and a flagged spike")
    func trend() {
        var state = TrendState()
        let spec = WindowSpec(size: 60_000)
        let config = TrendConfig()
        var values: [TrendValues] = []
        for (index, x) in [100.0, 102, 98, 101, 99, 100, 400].enumerated() {
            values.append(state.advance(start: Int64(index) * 60_000, spec: spec, value: x, unique: Int(x), config: config))
        }
        #expect(values[0].previous == nil && values[0].anomalyScore == nil)
        #expect(values[1].change == 2 && values[1].changeRate == 0.02)
        #expect(abs(values[1].level - (0.3 * 102 + 0.7 * 100)) < 1e-9)
        #expect(values[5].anomaly == false)
        #expect(values[6].anomaly == true)
        #expect((values[6].anomalyScore ?? 0) > 100)
        #expect(values[5].forecast > 95 && values[5].forecast < 105)
        // A gap of two empty windows counts as zeros.
        let afterGap = state.advance(start: 9 * 60_000, spec: spec, value: 100, unique: 100, config: config)
        #expect(afterGap.previous == 0)
        #expect(state.uniqueUsers(ofWindowStarting: 9 * 60_000) == 100)
    }
}
