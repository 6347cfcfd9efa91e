@testable import AudienceMetrics
import Foundation
import Testing

@Suite("Optional metric families")
struct MetricFamiliesTests {
    /// Every record of `config`'s deployment over one random audience, by key.
    static func records(_ config: AggregationConfig) -> (records: [String: MetricRecord], trackedUsers: Int) {
        let audience = RandomAudience(seed: 23, count: 4_000, users: 900)
        let pipeline = Pipeline(config)
        var partials: [WindowPartial] = []
        for (index, event) in audience.events.enumerated() {
            pipeline.feed(event.json)
            if index % 300 == 0 { partials += pipeline.aggregator.takeUpdates() }
        }
        let trackedUsers = pipeline.aggregator.trackedUsers
        partials += pipeline.finish()
        let merger = WindowMerger(config: config, inputPartitions: 1)
        var records: [String: MetricRecord] = [:]
        func keep(_ batch: [MetricRecord]) {
            for record in batch { records["\(record.isFinal)|\(record.key(includeWindowName: true))"] = record }
        }
        for (offset, partial) in partials.enumerated() {
            for (name, aggregate) in partial.segments {
                merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start, inputPartition: 0,
                             offset: Int64(offset), isFinal: partial.isFinal, part: partial.part)
            }
            keep(merger.takeUpdatedRecords())
        }
        keep(merger.applyWatermark(.max / 2, inputPartition: 0))
        return (records, trackedUsers)
    }

    /// The record's JSON with the members of `left` removed.
    static func object(_ record: MetricRecord, without left: MetricFamilies) throws -> NSDictionary {
        var object = try #require(JSONSerialization.jsonObject(with: Data(record.json.utf8)) as? [String: Any])
        func remove(_ family: MetricFamilies, _ path: String) {
            guard left.contains(family) else { return }
            let parts = path.split(separator: ".").map(String.init)
            if parts.count == 1 {
                object[parts[0]] = nil
            } else if var inner = object[parts[0]] as? [String: Any] {
                inner[parts[1]] = nil
                object[parts[0]] = inner
            }
        }
        for field in ["users.new", "users.returning", "users.retained", "users.retention_rate"] { remove(.retention, field) }
        remove(.conversion, "conversion")
        for field in ["dwell_ms.p50", "dwell_ms.p90", "dwell_ms.p99"] { remove(.dwellQuantiles, field) }
        remove(.sessions, "sessions")
        remove(.topContent, "top_content")
        remove(.trend, "trend")
        return object as NSDictionary
    }

    @Test("a deployment computing fewer families writes the same values for the fields it keeps, and no others",
          arguments: [MetricFamilies(), [.retention], [.sessions], [.conversion, .dwellQuantiles], [.topContent, .trend], .all])
    func sameValues(included: MetricFamilies) throws {
        var narrowed = MergePropertyTests.config
        narrowed.metrics = included
        let full = Self.records(MergePropertyTests.config)
        let subset = Self.records(narrowed)
        #expect(subset.records.count == full.records.count)
        #expect(subset.records.values.contains { $0.isFinal } && subset.records.values.contains { !$0.isFinal })
        // Per-user state only where a family needs it.
        #expect((subset.trackedUsers > 0) == included.needsUserState)
        let validator = try JSONSchemaValidator(file: MetricRecordTests.schemaPath)
        let left = MetricFamilies.all.subtracting(included)
        var compared = 0
        for (key, record) in subset.records {
            let reference = try #require(full.records[key], "\(key)")
            let kept = try Self.object(record, without: [])
            #expect(kept == (try Self.object(reference, without: left)), "\(key)")
            #expect(try validator.problems(in: record.json).isEmpty, "\(key)")
            compared += 1
        }
        #expect(compared > 100)
    }

    @Test("a deployment restored from a checkpoint holding per-user state keeps it only if a family needs it",
          arguments: [MetricFamilies(), [.sessions], [.retention], [.topContent, .conversion]])
    func restoredUsers(included: MetricFamilies) throws {
        let before = Pipeline(MergePropertyTests.config)
        for event in RandomAudience(seed: 5, count: 1_000, users: 300).events { before.feed(event.json) }
        #expect(before.aggregator.trackedUsers > 0)
        var narrowed = MergePropertyTests.config
        narrowed.metrics = included
        let after = Pipeline(narrowed)
        try after.aggregator.restore(before.aggregator.checkpoint())
        #expect(after.aggregator.trackedUsers == (included.needsUserState ? before.aggregator.trackedUsers : 0))
    }

    @Test("the schema requires a family's fields together")
    func schemaGroups() throws {
        let validator = try JSONSchemaValidator(file: MetricRecordTests.schemaPath)
        let record = try #require(Self.records(MergePropertyTests.config).records.values.first { $0.isFinal })
        var object = try #require(JSONSerialization.jsonObject(with: Data(record.json.utf8)) as? [String: Any])
        #expect(try validator.problems(in: record.json).isEmpty)
        var users = try #require(object["users"] as? [String: Any])
        users["retained"] = nil
        object["users"] = users
        let broken = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        #expect(try validator.problems(in: broken).contains("$.users: new without retained"))
    }
}
