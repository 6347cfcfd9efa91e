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
        // Members and elements are separated by commas, also inside values nobody reads.
        (#"{"event_id":"a" "type":"click","user_id":"u","timestamp":1795860930250}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250;"x":1}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":{"a":1 "b":2}}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":[1 2]}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":[1;2]}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":[1,]}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":{"a":1,}}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":{"a"}}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":[}}"#, "malformed_json"),
        (#"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"x":[1"#, "malformed_json"),
    ])
    func rejections(input: String, reason: String) {
        let decoder = EventDecoder()
        #expect(decoder.decode(input)?.code == reason)
    }

    @Test("values nobody reads are skipped whole: empty and nested objects and arrays, with or without spaces", arguments: [
        #""x":{}"#, #""x":[]"#, #""x":[ ]"#, #""x":{ }"#, #""x" : { "a" : [1, {"b":null}, [], "c"] , "d":{"e":{}} }"#, #""x":[[[true,false]],{}]"#,
    ])
    func skipped(member: String) throws {
        let decoder = EventDecoder()
        #expect(decoder.decode(#"{"event_id":"a",\#(member),"type":"click","user_id":"u","timestamp":1795860930250}"#) == nil)
        #expect(decoder.string(decoder.event.type) == "click")
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

    @Test("the string scanner finds the end, escapes, control bytes and non-ASCII bytes at every position of a word; hashes match")
    func stringScanAtEveryPosition() throws {
        let decoder = EventDecoder(attributeNames: ["k"])
        let base = #"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250,"attributes":{"k":""#
        func decode(_ value: [UInt8]) -> (reason: String?, value: [UInt8]) {
            let message = Array(base.utf8) + value + Array("\"}}".utf8)
            let reason = message.withUnsafeBytes { decoder.decode($0) }?.code
            guard reason == nil else { return (reason, []) }
            let value = Array(decoder.bytes(decoder.attributeValue(0)))
            // Hashed in place (a tail read at once) as hashing the bytes alone would.
            #expect(decoder.attributeHash(0) == value.withUnsafeBytes { Hash64.hash($0) }, "hash of \(value)")
            return (reason, value)
        }
        // Lengths around one and two 8-byte words, with the odd byte at each position.
        for length in 1...26 {
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

    @Test("numbers read eight digits at a time give the value read one digit at a time")
    func numbersOfEveryLength() {
        let decoder = EventDecoder()
        let head = #"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250"#
        func decoded(_ field: String, _ number: String) -> DecodedEvent? {
            decoder.decode(head + ",\"\(field)\":\(number)}") == nil ? decoder.event : nil
        }
        for length in 1...26 {
            // Digits 1…9 repeating: no zero, so every length is a valid integer.
            let digits = String((0..<length).map { Character(String($0 % 9 + 1)) })
            let exact = Int64(digits)
            #expect(decoded("dwell_ms", digits)?.dwellMs == exact.flatMap { $0 <= 86_400_000 ? $0 : nil }, "\(digits)")
            #expect(decoded("dwell_ms", "-" + digits) == nil, "-\(digits)")
            // Values are kept within ±10⁹ (10¹⁵ millionths).
            let micros = exact.flatMap { $0 <= 1_000_000_000 ? $0 * 1_000_000 : nil }
            #expect(decoded("value", digits)?.valueMicros == micros, "\(digits)")
            #expect(decoded("value", "-" + digits)?.valueMicros == micros.map { -$0 }, "-\(digits)")
            // A fraction or an exponent after the fast digits.
            #expect(decoded("value", digits + ".5")?.valueMicros == micros.map { $0 + 500_000 }, "\(digits).5")
            #expect(decoded("value", digits + "e-3")?.valueMicros == exact.flatMap { $0 <= 1_000_000_000_000 ? $0 * 1_000 : nil },
                    "\(digits)e-3")
            // Scaled below 1, whatever its length (past 18 digits, the rest only scale it).
            let fraction = length >= 6 ? Int64(digits.prefix(6)) : exact.map { $0 * [1, 100_000, 10_000, 1_000, 100, 10][length] }
            #expect(decoded("value", digits + "e-\(length)")?.valueMicros == fraction, "\(digits)e-\(length)")
            #expect(decoded("dwell_ms", digits + ".0") == nil, "\(digits).0 is not an integer")
            // A leading zero before more digits is malformed, however many follow.
            #expect(decoder.decode(head + ",\"dwell_ms\":0\(digits)}")?.code == "malformed_json", "0\(digits)")
            // A non-digit among the digits ends the number there: what follows is malformed.
            if length > 1 && length <= 16 {
                let broken = String(digits.prefix(length / 2)) + "x" + String(digits.dropFirst(length / 2))
                #expect(decoder.decode(head + ",\"dwell_ms\":\(broken)}")?.code == "malformed_json", "\(broken)")
            }
        }
        for stamp in ["1795860930250", "1000000000000", "4102444800000", "1712345678901"] {
            #expect(decoder.decode(#"{"event_id":"a","type":"click","user_id":"u","timestamp":\#(stamp)}"#) == nil, "\(stamp)")
            #expect(decoder.event.timestamp == Int64(stamp), "\(stamp)")
        }
    }

    @Test("the key order a decoder learned never changes what it decodes")
    func learnedKeyOrder() {
        // One decoder decodes every message in turn, learning key orders; each message is
        // also decoded by a new decoder, which has none. Both must agree on everything.
        var generator = SplitMix64(seed: 7)
        func random(_ bound: Int) -> Int { Int(generator.next() % UInt64(bound)) }
        /// Mostly `members` as they are (as a producer writes them), sometimes with a
        /// look-alike added, a member dropped or one repeated.
        func perturbed(_ members: [String], _ lookalikes: [String]) -> [String] {
            var result = members
            if random(4) == 0 { result.insert(lookalikes[random(lookalikes.count)], at: random(result.count + 1)) }
            if random(8) == 0, !result.isEmpty { result.remove(at: random(result.count)) }
            if random(8) == 0, !result.isEmpty { result.insert(result[random(result.count)], at: random(result.count + 1)) }
            return result
        }
        for (mapping, names) in [(InputMapping.contract, ["country", "device", "plan", "a.b"]), (.segment, ["plan", "device.type", "locale"])] {
            let learning = EventDecoder(mapping: mapping, attributeNames: names)
            var members = mapping == .contract
                ? [#""event_id":"e-1""#, #""type":"like""#, #""user_id":"u-9""#, #""timestamp":1795860930250"#, #""content_id":"a-1""#,
                   #""dwell_ms":12345678"#, #""value":19.99"#, #""session_id":"s""#, "ATTRIBUTES"]
                : [#""messageId":"m-1""#, #""event":"Order Completed""#, #""type":"track""#, #""userId":"u-1""#, #""anonymousId":"an""#,
                   #""timestamp":"2026-11-28T10:15:30Z""#, #""properties":{"revenue":4.5,"plan":"pro","path":"/p"}"#,
                   #""context":{"locale":"de","device":{"type":"ios"},"session_id":"s"}"#]
            // Keys that differ from mapped ones only in length, last byte or escaping.
            let lookalikes = [#""typ":1"#, #""types":"x""#, #""event_idx":"y""#, #""t\u0079pe":"click""#, #""attributes2":{}"#,
                              #""timestampZ":5"#, #""user_i":"v""#, #""messageIdentifier":"z""#, #""propertie":{}"#, #""":0"#]
            // Attributes (names matched where they are, or built for nested ones), their
            // look-alikes and other values for the same names: a number, null, an object.
            var attributes = [#""country":"DE""#, #""device":"mobile""#, #""plan":"pro""#, #""a":{"b":"x"}"#, #""browser":"firefox""#]
            // What each member sets (name, value), in the attributes' own terms: an escaped
            // name is its unescaped text, a nested one is dotted, null sets nothing, numbers
            // and booleans are their literal text.
            let sets: [String: (String, String)] = [
                #""country":"DE""#: ("country", "DE"), #""device":"mobile""#: ("device", "mobile"), #""plan":"pro""#: ("plan", "pro"),
                #""a":{"b":"x"}"#: ("a.b", "x"), #""c\u006funtry":"CH""#: ("country", "CH"), #""device":7"#: ("device", "7"),
                #""a.b":"dotted""#: ("a.b", "dotted"), #""plan":true"#: ("plan", "true"),
            ]
            let attributeLookalikes = [#""countr":"AT""#, #""countryX":"FR""#, #""c\u006funtry":"CH""#, #""device":7"#, #""plan":null"#,
                                       #""country":{"x":"y"}"#, #""a":"flat""#, #""a.b":"dotted""#, #""an_attribute_name_past_16":"v""#,
                                       #""devic\"e":"q""#, #""":"empty""#, #""plan":true"#]
            for round in 0..<6_000 {
                // Mostly one fixed order, now and then changed.
                if round % 50 == 49 { members.swapAt(random(members.count), random(members.count)) }
                if round % 40 == 39 { attributes.swapAt(random(attributes.count), random(attributes.count)) }
                let attributeMembers = perturbed(attributes, attributeLookalikes)
                let attributesMember = #""attributes":{"# + attributeMembers.joined(separator: ",") + "}"
                let message = perturbed(members, lookalikes).map { $0 == "ATTRIBUTES" ? attributesMember : $0 }
                let text = "{" + message.joined(separator: random(2) == 0 ? "," : " ,\n ") + "}"
                let fresh = EventDecoder(mapping: mapping, attributeNames: names)
                let expected = fresh.decode(text)
                #expect(learning.decode(text)?.code == expected?.code, "\(text)")
                guard expected == nil else { continue }
                let (a, b) = (learning.event, fresh.event)
                #expect([a.eventIDHash, a.typeHash, a.userIDHash, a.contentIDHash, a.sessionIDHash] == [b.eventIDHash, b.typeHash, b.userIDHash, b.contentIDHash, b.sessionIDHash],
                        "\(text)")
                #expect(a.timestamp == b.timestamp && a.dwellMs == b.dwellMs && a.valueMicros == b.valueMicros && a.typeCode == b.typeCode, "\(text)")
                #expect(learning.attributeHashes == fresh.attributeHashes, "\(text)")
                #expect(learning.attributeValues.map(\.isPresent) == fresh.attributeValues.map(\.isPresent), "\(text)")
                if mapping == .contract {
                    // The last member that sets a referenced name wins.
                    var expectedValues: [String: String] = [:]
                    if message.contains(attributesMember) {
                        for member in attributeMembers { if let (name, value) = sets[member] { expectedValues[name] = value } }
                    }
                    let decoded = learning.attributeValues.map { $0.isPresent ? learning.string($0) : nil }
                    #expect(decoded == names.map { expectedValues[$0] }, "\(text)")
                }
            }
        }
    }

    @Test("a message that ends at or inside a predicted key is malformed, as without a prediction")
    func keyAtTheEnd() {
        let decoder = EventDecoder(attributeNames: ["k"])
        let base = #"{"event_id":"a","type":"click","user_id":"u","timestamp":1795860930250"#
        // Learn the order, then end messages right after a short predicted key.
        #expect(decoder.decode(base + #","attributes":{"k":"v"}}"#) == nil)
        #expect(decoder.decode(base + #","attributes":{"k":1}}"#) == nil)
        #expect(decoder.attributeValues.map { decoder.string($0) } == ["1"])
        #expect(decoder.decode(base + #","type""#)?.code == "malformed_json")
        #expect(decoder.decode(base + #","attributes""#)?.code == "malformed_json")
        #expect(decoder.decode(#"{"event_id""#)?.code == "malformed_json")
        #expect(decoder.decode(#"{"e""#)?.code == "malformed_json")
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
