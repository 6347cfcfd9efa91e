@testable import AudienceMetrics
import Testing

@Suite("Decoding along learned message shapes")
struct ShapeDecodingTests {
    /// Everything a decoded message sets, for comparing two decoders.
    struct Decoded: Equatable, CustomStringConvertible {
        var reason: String?
        var strings: [String?] = []
        var numbers: [Int64?] = []
        var hashes: [UInt64] = []

        init(_ decoder: EventDecoder, _ message: [UInt8]) {
            reason = message.withUnsafeBytes { decoder.decode($0) }?.code
            guard reason == nil else { return }
            let event = decoder.event
            func text(_ ref: ByteRef) -> String? { ref.isPresent ? decoder.string(ref) : nil }
            strings = [text(event.eventID), text(event.type), text(event.userID), text(event.contentID)]
                + decoder.attributeValues.map(text)
            numbers = [event.timestamp, event.dwellMs, event.valueMicros, Int64(event.typeCode)]
            hashes = [event.eventIDHash, event.typeHash, event.userIDHash, event.contentIDHash, event.sessionIDHash] + decoder.attributeHashes
        }

        var description: String { "\(reason ?? "ok") \(strings) \(numbers)" }
    }

    static let attributeNames = ["country", "device", "plan"]

    /// Values for each kind of member: mostly ordinary, sometimes one the general parser
    /// treats differently (escapes, other kinds, limits, invalid bytes).
    static let strings: [[UInt8]] = [
        "\"e-1\"", "\"page_view\"", "\"u-12345678901\"", "\"x\"", "\"\"", "\"a\\\"b\"", "\"caf\\u00e9\"", "\"Zoë\"", "7", "-3.5",
        "null", "true", "{\"x\":1}", "[\"x\"]", "\"" + String(repeating: "y", count: 600) + "\"", "\"tab\\there\"",
    ].map { Array($0.utf8) } + [Array("\"bad".utf8) + [0xFF] + Array("\"".utf8), Array("\"ctl".utf8) + [0x01] + Array("\"".utf8)]
    static let timestamps = ["1795860930250", "\"2026-11-28T10:15:30.250Z\"", "1.5e12", "-5", "\"yesterday\"", "179586093025", "null", "1795860930250.0"]
        .map { Array($0.utf8) }
    static let dwells = ["5300", "0", "-1", "2.5", "86400001", "\"5\"", "null", "01"].map { Array($0.utf8) }
    static let values = ["19.99", "1e400", "-3", "\"x\"", "0.000001", "1e3"].map { Array($0.utf8) }
    static let attributeValues = ["\"DE\"", "\"mobile\"", "42", "true", "null", "{\"a\":\"b\"}", "\"\"", "\"" + String(repeating: "z", count: 520) + "\""]
        .map { Array($0.utf8) }

    @Test("a decoder following shapes decodes and rejects exactly as one parsing every message in full")
    func sameAsFullParse() {
        var generator = SplitMix64(seed: 11)
        func random(_ bound: Int) -> Int { Int(generator.next() % UInt64(bound)) }
        /// Mostly the first (ordinary) value, sometimes any.
        func pick(_ options: [[UInt8]]) -> [UInt8] { random(5) == 0 ? options[random(options.count)] : options[0] }
        let shaped = EventDecoder(attributeNames: Self.attributeNames)
        let full = EventDecoder(attributeNames: Self.attributeNames, shapes: 0)
        // Three producers' layouts: key order, spacing, members present.
        let layouts: [[String]] = [
            ["event_id", "type", "user_id", "timestamp", "content_id", "dwell_ms", "attributes"],
            ["type", "timestamp", "event_id", "user_id", "value", "session_id", "attributes", "extra"],
            ["user_id", "event_id", "timestamp", "type"],
        ]
        var accepted = 0
        for round in 0..<30_000 {
            let layout = layouts[round / 100 % layouts.count]
            let spaced = round / 300 % 2 == 1
            let separator = spaced ? ", " : ","
            let colon = spaced ? ": " : ":"
            var members: [[UInt8]] = []
            for key in layout {
                let value: [UInt8]
                switch key {
                case "timestamp": value = pick(Self.timestamps)
                case "dwell_ms": value = pick(Self.dwells)
                case "value": value = pick(Self.values)
                case "extra": value = pick(Self.attributeValues)
                case "attributes":
                    let names = random(10) == 0 ? ["device", "country", "other"] : ["country", "device", "other"]
                    value = Array("{".utf8) + names.map { Array("\"\($0)\"\(colon)".utf8) + pick(Self.attributeValues) }
                        .joined(separator: Array(separator.utf8)) + Array("}".utf8)
                default: value = pick(Self.strings)
                }
                members.append(Array("\"\(key)\"\(colon)".utf8) + value)
            }
            var message = Array("{".utf8) + members.joined(separator: Array(separator.utf8)) + Array("}".utf8)
            if random(50) == 0 { message += Array(" \n".utf8) }
            if random(100) == 0 { message += Array("x".utf8) }
            let expected = Decoded(full, message)
            if expected.reason == nil { accepted += 1 }
            #expect(Decoded(shaped, message) == expected, "\(String(decoding: message, as: UTF8.self))")
        }
        #expect(accepted > 5_000)
        #expect(shaped.shapes.count > 1)
    }

    @Test("every truncation and every one-byte change of a learned message decodes as a full parse does")
    func truncatedAndChanged() {
        let message = Array(#"{"event_id":"e-1","type":"click","user_id":"u-1","timestamp":1795860930250,"content_id":"a-1","dwell_ms":12,"value":1.5,"attributes":{"country":"DE","device":"mobile","plan":"pro"}}"#.utf8)
        let shaped = EventDecoder(attributeNames: Self.attributeNames)
        let full = EventDecoder(attributeNames: Self.attributeNames, shapes: 0)
        // A longer message first: scratch memory holds its bytes past a shorter one's end.
        #expect(Decoded(shaped, message + Array("   ".utf8)).reason == nil)
        #expect(Decoded(shaped, message).reason == nil)
        #expect(shaped.shapes.count == 1)
        for length in 0..<message.count {
            let truncated = Array(message.prefix(length))
            #expect(Decoded(shaped, truncated) == Decoded(full, truncated), "\(length)")
        }
        for position in message.indices {
            for replacement in [UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "7"), UInt8(ascii: " "), 0x00, 0xC3] {
                var changed = message
                changed[position] = replacement
                #expect(Decoded(shaped, changed) == Decoded(full, changed), "\(String(decoding: changed, as: UTF8.self))")
            }
        }
    }

    @Test("the shape of a message is learned once and matched from then on; other layouts get shapes of their own, up to the limit")
    func learning() {
        let decoder = EventDecoder(attributeNames: Self.attributeNames, shapes: 2)
        func message(_ id: Int, _ order: Int) -> String {
            let members = [#""event_id":"e-\#(id)""#, #""type":"like""#, #""user_id":"u-\#(id % 7)""#, #""timestamp":\#(1_795_860_930_250 + id)"#]
            return "{" + (order == 0 ? members : order == 1 ? members.reversed() : [members[1], members[0], members[3], members[2]]).joined(separator: ",") + "}"
        }
        #expect(decoder.decode(message(1, 0)) == nil)
        #expect(decoder.shapes.count == 1)
        for id in 2..<100 { #expect(decoder.decode(message(id, 0)) == nil) }
        #expect(decoder.shapeMisses == 0)
        #expect(decoder.decode(message(100, 1)) == nil)
        #expect(decoder.decode(message(101, 2)) == nil)
        // Two kept: the oldest layout made room.
        #expect(decoder.shapes.count == 2)
        #expect(decoder.decode(message(102, 1)) == nil && decoder.shapeMisses == 0)
        #expect(decoder.decode(message(103, 0)) == nil && decoder.shapeMisses == 1)
        #expect(decoder.string(decoder.event.eventID) == "e-103")
        // A message with a nested attribute or an escaped key has no shape: parsed in full.
        let nested = EventDecoder(attributeNames: Self.attributeNames)
        #expect(nested.decode(#"{"event_id":"e","type":"like","user_id":"u","timestamp":1795860930250,"attributes":{"a":{"b":"c"}}}"#) == nil)
        #expect(nested.decode(#"{"event_id":"e","t\u0079pe":"like","user_id":"u","timestamp":1795860930250}"#) == nil)
        #expect(nested.shapes.isEmpty)
        #expect(EventDecoder(shapes: 0).decode(message(1, 0)) == nil)
    }
}
