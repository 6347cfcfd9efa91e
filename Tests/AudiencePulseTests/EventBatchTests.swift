import AudienceMetrics
@testable import AudiencePulse
import Testing

@Suite("Collector request bodies")
struct EventBatchTests {
    static func configuration(generateIDs: Bool = false, defaultTimestamp: Bool = false, maxEvents: Int = 100) -> CollectorConfiguration {
        CollectorConfiguration(
            enabled: true, topic: "t", apiKeys: [:], allowAnonymous: true, maxBodyBytes: 1 << 20, maxEventsPerRequest: maxEvents,
            deliveryTimeout: 1_000, generateEventIDs: generateIDs, defaultTimestamp: defaultTimestamp, allowedOrigins: [], webhooks: [:])
    }

    static func batch(_ body: String, ndjson: Bool = false, _ configuration: CollectorConfiguration = configuration()) throws(EventBatch.BodyError) -> EventBatch {
        try EventBatch(body: Array(body.utf8), ndjson: ndjson, decoder: EventDecoder(), configuration: configuration, now: 1_795_860_000_000)
    }

    static let valid = #"{"event_id":"e1","type":"click","user_id":"u1","timestamp":1795860000000}"#

    @Test("a single object, an array with nested brackets and strings, and NDJSON with blank lines")
    func shapes() throws {
        #expect(try Self.batch(Self.valid).accepted.map(\.key) == ["u1"])
        let tricky = #"{"event_id":"e2","type":"click","user_id":"u2","timestamp":1795860000000,"attributes":{"note":"a ] } , [ \" quote"}}"#
        let array = try Self.batch(" [ \(Self.valid) , \(tricky) ] ")
        #expect(array.accepted.map(\.eventID) == ["e1", "e2"])
        let lines = try Self.batch("\(Self.valid)\n\n  \n\(tricky)\n", ndjson: true)
        #expect(lines.accepted.count == 2 && lines.rejected.isEmpty)
    }

    @Test("malformed bodies are refused as a whole", arguments: ["", "  ", "[1,,2]", "[", "[{\"a\":1}", "[1] x", "hello", "[,1]"])
    func malformed(body: String) {
        #expect(throws: EventBatch.BodyError.self) { try Self.batch(body) }
    }

    @Test("each invalid event is rejected with its index and reason; more events than allowed is refused")
    func perEvent() throws {
        let batch = try Self.batch("[\(Self.valid), 7, {\"type\":\"click\"}]")
        #expect(batch.accepted.map(\.index) == [0])
        #expect(batch.rejected == [.init(index: 1, reason: "not_an_object"), .init(index: 2, reason: "missing_field:event_id")])
        #expect(throws: EventBatch.BodyError.tooManyEvents(3, limit: 2)) { try Self.batch("[\(Self.valid),\(Self.valid),\(Self.valid)]", Self.configuration(maxEvents: 2)) }
    }

    @Test("a missing event_id or timestamp is filled in only when configured")
    func fillIns() throws {
        let bare = #"{"type":"click","user_id":"u9"}"#
        #expect(try Self.batch(bare).rejected.map(\.reason) == ["missing_field:event_id"])
        #expect(try Self.batch(bare, Self.configuration(generateIDs: true)).rejected.map(\.reason) == ["missing_field:timestamp"])
        let filled = try Self.batch(bare, Self.configuration(generateIDs: true, defaultTimestamp: true))
        let event = try #require(filled.accepted.first)
        #expect(event.eventID.count == 36, "a generated UUID")
        let text = String(decoding: event.value, as: UTF8.self)
        #expect(text.contains(#""timestamp":1795860000000"#) && text.contains(#""user_id":"u9""#))
        #expect(EventBatch.inserting(#""a":1"#, into: Array("{ }".utf8)) == Array(#"{"a":1 }"#.utf8), "no comma into an empty object")
    }
}
