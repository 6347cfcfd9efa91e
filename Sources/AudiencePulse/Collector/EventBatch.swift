import AudienceMetrics
import Foundation

/// A collector request's body, split into events and validated one by one with the
/// core's decoder: accepted events carry their Kafka key (the user id); rejected ones
/// their index and reason.
public struct EventBatch: Sendable {
    public struct Accepted: Sendable {
        public var index: Int
        public var key: String
        public var value: [UInt8]
        public var eventID: String
    }

    public struct Rejected: Sendable, Equatable {
        public var index: Int
        public var reason: String
    }

    public enum BodyError: Error, Equatable, CustomStringConvertible {
        case empty
        case notEvents
        case malformedArray
        case tooManyEvents(Int, limit: Int)

        public var description: String {
            switch self {
            case .empty: "the body is empty"
            case .notEvents: "the body must be a JSON object, a JSON array of objects, or NDJSON (application/x-ndjson)"
            case .malformedArray: "the JSON array is malformed"
            case .tooManyEvents(let count, let limit): "\(count) events in one request; the limit is \(limit)"
            }
        }
    }

    public var accepted: [Accepted] = []
    public var rejected: [Rejected] = []
    public var count: Int { accepted.count + rejected.count }

    /// Splits and validates `body`. Events missing `event_id` or `timestamp` get one when
    /// `configuration` says so (`now` is the receive time, epoch ms).
    public init(body: [UInt8], ndjson: Bool, decoder: EventDecoder, configuration: CollectorConfiguration, now: Int64) throws(BodyError) {
        let events = try Self.split(body, ndjson: ndjson)
        guard events.count <= configuration.maxEventsPerRequest else {
            throw .tooManyEvents(events.count, limit: configuration.maxEventsPerRequest)
        }
        for (index, range) in events.enumerated() {
            var value = Array(body[range])
            var reason = value.withUnsafeBytes { decoder.decode($0) }
            // At most two fields can be filled in: event_id and timestamp.
            for _ in 0..<2 {
                guard let missing = reason else { break }
                if missing == .missingField(.eventID) && configuration.generateEventIDs {
                    value = Self.inserting(#""event_id":"\#(UUID().uuidString.lowercased())""#, into: value)
                } else if missing == .missingField(.timestamp) && configuration.defaultTimestamp {
                    value = Self.inserting(#""timestamp":\#(now)"#, into: value)
                } else {
                    break
                }
                reason = value.withUnsafeBytes { decoder.decode($0) }
            }
            if let reason {
                rejected.append(Rejected(index: index, reason: reason.code))
            } else {
                let event = decoder.event
                accepted.append(Accepted(index: index, key: decoder.string(event.userID), value: value, eventID: decoder.string(event.eventID)))
            }
        }
    }

    /// `member` added as the object's first member (the value starts with `{`).
    static func inserting(_ member: String, into value: [UInt8]) -> [UInt8] {
        guard let open = value.firstIndex(of: UInt8(ascii: "{")) else { return value }
        let rest = value[(open + 1)...]
        let isEmpty = rest.first { !Self.isSpace($0) } == UInt8(ascii: "}")
        return Array(value[...open]) + Array(member.utf8) + (isEmpty ? [] : [UInt8(ascii: ",")]) + Array(rest)
    }

    /// The byte ranges of the events in `body`: its lines (NDJSON), the elements of a
    /// top-level array, or the whole body (one object).
    static func split(_ body: [UInt8], ndjson: Bool) throws(BodyError) -> [Range<Int>] {
        guard let first = body.firstIndex(where: { !isSpace($0) }) else { throw .empty }
        if ndjson {
            var ranges: [Range<Int>] = []
            var start = 0
            for index in 0...body.count where index == body.count || body[index] == 0x0A {
                let line = start..<index
                if body[line].contains(where: { !isSpace($0) }) { ranges.append(line) }
                start = index + 1
            }
            return ranges
        }
        switch body[first] {
        case UInt8(ascii: "{"): return [first..<body.count]
        case UInt8(ascii: "["): return try elements(body, from: first)
        default: throw .notEvents
        }
    }

    /// Top-level elements of the array starting at `open`, by scanning strings and nesting.
    private static func elements(_ body: [UInt8], from open: Int) throws(BodyError) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var depth = 0
        var inString = false
        var escaped = false
        var elementStart = open + 1
        var index = open
        while index < body.count {
            let byte = body[index]
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else {
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    depth -= 1
                    if depth == 0 {
                        if body[elementStart..<index].contains(where: { !isSpace($0) }) { ranges.append(elementStart..<index) } else if !ranges.isEmpty { throw .malformedArray }
                        guard body[(index + 1)...].allSatisfy(isSpace) else { throw .malformedArray }
                        return ranges
                    }
                case UInt8(ascii: ","):
                    if depth == 1 {
                        guard body[elementStart..<index].contains(where: { !isSpace($0) }) else { throw .malformedArray }
                        ranges.append(elementStart..<index)
                        elementStart = index + 1
                    }
                default: break
                }
            }
            index += 1
        }
        throw .malformedArray
    }

    @inline(__always) static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 }
}
