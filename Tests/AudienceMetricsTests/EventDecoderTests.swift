import AudienceMetrics
import Testing

@Suite("Event decoding and validation")
struct EventDecoderTests {
    static let reference = """
        {"event_id": "e-7f3c", "type": "page_view", "user_id": "u-123",
         "timestamp": "2026-11-28T10:15:30.250Z",
         "content_id": "article-42", "dwell_ms": 5300, "value": 19.99,
         "attributes": {"country": "DE", "device": "mobile", "source": "newsletter", "plan": "free"}}
        """

    @Test("the reference event decodes with every field")
    func referenceEvent() throws {
        let decoder = EventDecoder(attributeNames: ["country", "device", "plan", "missing"])
        #expect(decoder.decode(Self.reference) == nil)
        let event = decoder.event
        #expect(decoder.string(event.eventID) == "e-7f3c")
        #expect(event.knownType == .pageView)
        #expect(decoder.string(event.userID) == "u-123")
        #expect(event.userIDHash == Hash64.hash("u-123"))
        #expect(event.timestamp == 1_795_860_930_250)
        #expect(decoder.string(event.contentID) == "article-42")
        #expect(event.dwellMs == 5300)
        #expect(event.valueMicros == 19_990_000)
        #expect(decoder.attributeValues.map { $0.isPresent ? decoder.string($0) : nil } == ["DE", "mobile", "free", nil])
        #expect(decoder.attributeHashes[0] == Hash64.hash("DE"))
    }

    @Test("epoch milliseconds, offsets and fractions are all the same instant")
    func timestamps() {
        let decoder = EventDecoder()
        for stamp in ["1795860930250", "\"2026-11-28T10:15:30.250Z\"", "\"2026-11-28T11:15:30.250+01:00\"",
                      "\"2026-11-28t10:15:30.2501234z\"", "\"2026-11-28T05:45:30.25-04:30\""] {
            #expect(decoder.decode(#"{"event_id":"a","type":"click","user_id":"u","timestamp":\#(stamp)}"#) == nil, "\(stamp)")
            #expect(decoder.event.timestamp == 1_795_860_930_250, "\(stamp)")
        }
        #expect(Timestamp.format(1_795_860_930_250) == "2026-11-28T10:15:30.250Z")
        #expect(Timestamp.format(0) == "1970-01-01T00:00:00.000Z")
    }

    @Test("escapes are decoded and multi-byte UTF-8 is kept")
    func escapes() {
        let decoder = EventDecoder(attributeNames: ["city"])
        let event = #"{"event_id":"a\"b\\c\u00e9\ud83d\ude00","type":"click","user_id":"Zoë","timestamp":1795860930250,"attributes":{"city":"Köln"}}"#
        #expect(decoder.decode(event) == nil)
        #expect(decoder.string(decoder.event.eventID) == "a\"b\\cé😀")
        #expect(decoder.string(decoder.event.userID) == "Zoë")
        #expect(decoder.string(decoder.attributeValues[0]) == "Köln")
    }

    @Test("hostile and wrong input is rejected with the right reason", arguments: [
        ("", "malformed_json"),
        ("   ", "malformed_json"),
        ("[1,2]", "not_an_object"),
        ("\"text\"", "not_an_object"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250}x"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,}"#, "malformed_json"),
        (#"{"type":"click","user_id":"u","timestamp":1795860930250}"#, "missing_field:event_id"),
        (#"{"event_id":"a","type":"click","timestamp":1795860930250}"#, "missing_field:user_id"),
        (#"{"event_id":"a","type":"click","user_id":"","timestamp":1795860930250}"#, "missing_field:user_id"),
        (#"{"event_id":"a","type":"click","user_id":null,"timestamp":1795860930250}"#, "missing_field:user_id"),
        (#"{"event_id":"a","type":"click","user_id":"u"}"#, "missing_field:timestamp"),
        (#"{"event_id":"a","event_id":"b","type":"click","user_id":"u","timestamp":1795860930250}"#, "duplicate_field:event_id"),
        (#"{"event_id":"a","type":7,"user_id":"u","timestamp":1795860930250}"#, "bad_field:type"),
        (#"{"event_id":"a","type":{"x":1},"user_id":"u","timestamp":1795860930250}"#, "bad_field:type"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":"yesterday"}"#, "bad_timestamp"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795774530}"#, "bad_timestamp"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1.5e12}"#, "bad_timestamp"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":"2026-02-30T00:00:00Z"}"#, "bad_timestamp"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":99999999999999999999999999}"#, "bad_timestamp"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"dwell_ms":-5}"#, "bad_field:dwell_ms"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"dwell_ms":2.5}"#, "bad_field:dwell_ms"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"dwell_ms":"5"}"#, "bad_field:dwell_ms"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"value":1e400}"#, "bad_field:value"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"attributes":["x"]}"#, "bad_field:attributes"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"attributes":{"k":["x"]}}"#, "bad_field:attributes"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":01}"#, "malformed_json"),
        (#"{"event_id":"a","type":"cl\u0001ick","user_id":"u","timestamp":1795860930250,"x":"\q"}"#, "malformed_json"),
        (#"{"event_id":"\ud800","type":"click","user_id":"u","timestamp":1795860930250}"#, "invalid_utf8"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":tru}"#, "malformed_json"),
    ])
    func rejections(input: String, reason: String) {
        let decoder = EventDecoder()
        #expect(decoder.decode(input)?.code == reason)
    }

    @Test("invalid UTF-8 bytes, nesting, size and attribute limits are enforced")
    func limits() {
        let decoder = EventDecoder(limits: EventLimits(maxMessageBytes: 4096, maxAttributes: 3, maxStringBytes: 16, maxDepth: 8))
        let base = #"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250"#
        var invalid = Array((base + #","attributes":{"k":""#).utf8)
        invalid += [0xC3, 0x28] + Array("\"}}".utf8)
        #expect(invalid.withUnsafeBytes { decoder.decode($0) }?.code == "invalid_utf8")
        let overlong: [UInt8] = Array((base + #","attributes":{"k":""#).utf8) + [0xC0, 0xAF] + Array("\"}}".utf8)
        #expect(overlong.withUnsafeBytes { decoder.decode($0) }?.code == "invalid_utf8")
        let deep = base + #","x":"# + String(repeating: "[", count: 50) + String(repeating: "]", count: 50) + "}"
        #expect(decoder.decode(deep)?.code == "too_deep")
        #expect(decoder.decode(base + #","pad":""# + String(repeating: "x", count: 5000) + "\"}")?.code == "too_large")
        #expect(decoder.decode(base + #","attributes":{"a":"1","b":"2","c":"3","d":"4"}}"#)?.code == "too_many_attributes")
        #expect(decoder.decode(#"{"event_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa","type":"click","user_id":"u","timestamp":1795860930250}"#)?.code == "too_long:event_id")
        #expect(decoder.decode(base + #","unknown":{"nested":[1,2,{"a":null}]},"n":-0.5e-3,"b":true}"#) == nil)
    }

    @Test("the string scanner finds the end, escapes, control bytes and non-ASCII bytes at every position of a word")
    func stringScanAtEveryPosition() throws {
        let decoder = EventDecoder(attributeNames: ["k"])
        let base = #"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"attributes":{"k":""#
        func decode(_ value: [UInt8]) -> (reason: String?, value: [UInt8]) {
            let message = Array(base.utf8) + value + Array("\"}}".utf8)
            let reason = message.withUnsafeBytes { decoder.decode($0) }?.code
            return (reason, reason == nil ? Array(decoder.bytes(decoder.attributeValue(0))) : [])
        }
        // Lengths around one and two 8-byte words, with the odd byte at each position.
        for length in 1...19 {
            for position in 0..<length {
                var plain = Array(repeating: UInt8(ascii: "x"), count: length)
                #expect(decode(plain).value == plain)
                plain[position] = 0xFF  // never valid in UTF-8
                #expect(decode(plain).reason == "invalid_utf8", "0xFF at \(position) of \(length)")
                var accented = Array(repeating: UInt8(ascii: "x"), count: length)
                accented.replaceSubrange(position..<position + 1, with: [0xC3, 0xA9])  // é
                #expect(decode(accented).value == accented, "é at \(position) of \(length)")
                var escaped = Array(repeating: UInt8(ascii: "x"), count: length)
                escaped.replaceSubrange(position..<position + 1, with: Array(#"\""#.utf8))
                var unescaped = Array(repeating: UInt8(ascii: "x"), count: length)
                unescaped[position] = UInt8(ascii: "\"")
                #expect(decode(escaped).value == unescaped, "escaped quote at \(position) of \(length)")
                var control = Array(repeating: UInt8(ascii: "x"), count: length)
                control[position] = 0x1F
                #expect(decode(control).reason == "malformed_json", "control byte at \(position) of \(length)")
            }
        }
    }

    @Test("Segment-spec events map through the preset")
    func segmentPreset() {
        let decoder = EventDecoder(mapping: .segment, attributeNames: ["plan", "device.type", "locale"])
        let track = """
            {"type":"track","event":"Order Completed","messageId":"m-1","anonymousId":"anon-9","userId":null,
             "timestamp":"2026-11-28T10:15:30.250Z","properties":{"revenue":42.5,"plan":"pro"},
             "context":{"locale":"de-DE","device":{"type":"ios"}}}
            """
        #expect(decoder.decode(track) == nil)
        #expect(decoder.string(decoder.event.eventID) == "m-1")
        #expect(decoder.event.knownType == .conversion)
        #expect(decoder.string(decoder.event.userID) == "anon-9")
        #expect(decoder.event.valueMicros == 42_500_000)
        #expect(decoder.attributeValues.map { decoder.string($0) } == ["pro", "ios", "de-DE"])

        let page = #"{"type":"page","messageId":"m-2","userId":"u-1","anonymousId":"anon-1","timestamp":"2026-11-28T10:15:30Z","properties":{"path":"/pricing"}}"#
        #expect(decoder.decode(page) == nil)
        #expect(decoder.event.knownType == .pageView)
        #expect(decoder.string(decoder.event.userID) == "u-1")
        #expect(decoder.string(decoder.event.contentID) == "/pricing")
    }

    @Test("thousands of mutated events never crash and are each classified")
    func fuzz() {
        var generator = SplitMix64(seed: 42)
        let decoder = EventDecoder(attributeNames: ["country", "device"])
        let seeds = [Array(Self.reference.utf8), Array(#"{"event_id":"x","type":"like","user_id":42,"timestamp":1795860930250,"attributes":{"country":"\u00c9"}}"#.utf8)]
        var accepted = 0
        var reasons: [String: Int] = [:]
        let known = ["malformed_json", "not_an_object", "too_large", "too_deep", "too_many_attributes", "invalid_utf8",
                     "bad_timestamp", "missing_field:", "duplicate_field:", "bad_field:", "too_long:"]
        for round in 0..<20_000 {
            var bytes = seeds[round % seeds.count]
            for _ in 0..<(1 + Int(generator.next() % 4)) {
                let position = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 5 {
                case 0: bytes[position] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes.remove(at: position)
                case 2: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: position)
                case 3: bytes = Array(bytes[..<position])
                default: bytes.insert(contentsOf: Array(bytes[position...].prefix(8)), at: position)
                }
                if bytes.isEmpty { bytes = [0x7b] }
            }
            if let reason = bytes.withUnsafeBytes({ decoder.decode($0) }) {
                #expect(known.contains { reason.code.hasPrefix($0) }, "unexpected reason \(reason.code)")
                reasons[reason.code, default: 0] += 1
            } else {
                accepted += 1
                #expect(Timestamp.validRange.contains(decoder.event.timestamp))
            }
        }
        #expect(accepted + reasons.values.reduce(0, +) == 20_000)
        #expect(accepted > 0 && reasons.count > 5)
    }
}
