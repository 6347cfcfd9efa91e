/// Reads the fields the read model keeps of a metric record (``MetricsStore/Headline``)
/// straight from the record's JSON, in one pass and without building a document: every
/// record of the metrics topic passes through here, and a general decoder spent tens of
/// microseconds on each.
///
/// It accepts what a strict JSON decoder accepts for these fields: the whole text must be
/// one valid JSON object (members it does not keep are checked and skipped), the
/// required fields must be present with their types (integers without a fraction or
/// exponent), `engagement.rate`, `conversion.rate` and `trend.anomaly` may be null or
/// missing, `trend` may be null or missing, `conversion` may be missing (a deployment may
/// leave both out, `metrics.include`). A member given twice counts with its first value,
/// as with the general decoder.
struct HeadlineReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0

    /// Nesting deeper than this is refused rather than followed (as a general decoder does).
    static let maxDepth = 512

    private struct Malformed: Error {}

    private init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    /// The headline of `json`, or nil if it is not a metric record.
    static func read(_ json: String) -> MetricsStore.Headline? {
        var json = json
        return json.withUTF8 { bytes in
            var reader = HeadlineReader(bytes)
            return try? reader.document()
        }
    }

    // MARK: The record's shape

    private mutating func document() throws(Malformed) -> MetricsStore.Headline {
        var segment = First<String>(), window = First<MetricsStore.Headline.Window>(), final = First<Bool>(), events = First<Int64>()
        var unique = First<Int64>(), engagement = First<MetricsStore.Headline.Rate>(), conversion = First<MetricsStore.Headline.Rate>()
        var trend = First<MetricsStore.Headline.Trend?>()
        try object(depth: 1) { reader, key throws(Malformed) in
            if key.equals("segment") {
                segment.offer(try reader.string())
            } else if key.equals("window") {
                window.offer(try reader.window())
            } else if key.equals("final") {
                final.offer(try reader.bool())
            } else if key.equals("events") {
                events.offer(try reader.integer())
            } else if key.equals("users") {
                unique.offer(try reader.users())
            } else if key.equals("engagement") {
                engagement.offer(try reader.rate())
            } else if key.equals("conversion") {
                conversion.offer(try reader.rate())
            } else if key.equals("trend") {
                trend.offer(try reader.trend())
            } else {
                try reader.skipValue(depth: 2)
            }
        }
        skipWhitespace()
        guard i == bytes.count, let segment = segment.value, let window = window.value, let final = final.value, let events = events.value,
              let unique = unique.value, let engagement = engagement.value
        else { throw Malformed() }
        return MetricsStore.Headline(segment: segment, window: window, final: final, events: events, users: .init(unique: unique),
                                     engagement: engagement, conversion: conversion.value, trend: trend.value ?? nil)
    }

    private mutating func window() throws(Malformed) -> MetricsStore.Headline.Window {
        var size = First<String>(), start = First<Int64>(), end = First<Int64>()
        try object(depth: 2) { reader, key throws(Malformed) in
            if key.equals("size") {
                size.offer(try reader.string())
            } else if key.equals("start_ms") {
                start.offer(try reader.integer())
            } else if key.equals("end_ms") {
                end.offer(try reader.integer())
            } else {
                try reader.skipValue(depth: 3)
            }
        }
        guard let size = size.value, let start = start.value, let end = end.value else { throw Malformed() }
        return .init(size: size, start_ms: start, end_ms: end)
    }

    private mutating func users() throws(Malformed) -> Int64 {
        var unique = First<Int64>()
        try object(depth: 2) { reader, key throws(Malformed) in
            if key.equals("unique") { unique.offer(try reader.integer()) } else { try reader.skipValue(depth: 3) }
        }
        guard let unique = unique.value else { throw Malformed() }
        return unique
    }

    private mutating func rate() throws(Malformed) -> MetricsStore.Headline.Rate {
        var rate = First<Double?>()
        try object(depth: 2) { reader, key throws(Malformed) in
            if key.equals("rate") { rate.offer(try reader.nullable { r throws(Malformed) in try r.number() }) } else { try reader.skipValue(depth: 3) }
        }
        return .init(rate: rate.value ?? nil)
    }

    private mutating func trend() throws(Malformed) -> MetricsStore.Headline.Trend? {
        try nullable { reader throws(Malformed) in
            var anomaly = First<Bool?>()
            try reader.object(depth: 2) { reader, key throws(Malformed) in
                if key.equals("anomaly") { anomaly.offer(try reader.nullable { r throws(Malformed) in try r.bool() }) } else { try reader.skipValue(depth: 3) }
            }
            return .init(anomaly: anomaly.value ?? nil)
        }
    }

    /// A member's value from its first occurrence (later ones are read, and checked, only).
    private struct First<Value> {
        private(set) var value: Value?

        mutating func offer(_ candidate: Value) {
            if value == nil { value = candidate }
        }
    }

    // MARK: JSON

    /// A member name as it stands in the text (escapes undone only where there were any).
    private struct Key {
        var raw: UnsafeBufferPointer<UInt8>
        var unescaped: [UInt8]?

        func equals(_ name: StaticString) -> Bool {
            let expected = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            if let unescaped { return unescaped.elementsEqual(expected) }
            return raw.elementsEqual(expected)
        }
    }

    private var current: UInt8 { i < bytes.count ? bytes[i] : 0 }

    private mutating func skipWhitespace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x0A, 0x0D, 0x09: i += 1
            default: return
            }
        }
    }

    private mutating func expect(_ byte: UInt8) throws(Malformed) {
        skipWhitespace()
        guard current == byte else { throw Malformed() }
        i += 1
    }

    /// Reads an object, calling `member` with the reader positioned at each value.
    private mutating func object(depth: Int, _ member: (inout HeadlineReader, Key) throws(Malformed) -> Void) throws(Malformed) {
        guard depth <= Self.maxDepth else { throw Malformed() }
        try expect(UInt8(ascii: "{"))
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            i += 1
            return
        }
        while true {
            skipWhitespace()
            let key = try stringBytes()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"):
                i += 1
                return
            default: throw Malformed()
            }
        }
    }

    private mutating func nullable<T>(_ value: (inout HeadlineReader) throws(Malformed) -> T) throws(Malformed) -> T? {
        skipWhitespace()
        if current == UInt8(ascii: "n") {
            try literal("null")
            return nil
        }
        return try value(&self)
    }

    private mutating func literal(_ word: StaticString) throws(Malformed) {
        let count = word.utf8CodeUnitCount
        guard bytes.count - i >= count,
              UnsafeBufferPointer(rebasing: bytes[i..<i + count]).elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: count))
        else { throw Malformed() }
        i += count
    }

    private mutating func bool() throws(Malformed) -> Bool {
        skipWhitespace()
        switch current {
        case UInt8(ascii: "t"):
            try literal("true")
            return true
        case UInt8(ascii: "f"):
            try literal("false")
            return false
        default: throw Malformed()
        }
    }

    private mutating func string() throws(Malformed) -> String {
        skipWhitespace()
        let key = try stringBytes()
        if let unescaped = key.unescaped { return String(decoding: unescaped, as: UTF8.self) }
        return String(decoding: key.raw, as: UTF8.self)
    }

    /// A string's contents; escapes are undone into `unescaped` when there are any.
    private mutating func stringBytes() throws(Malformed) -> Key {
        guard current == UInt8(ascii: "\"") else { throw Malformed() }
        i += 1
        let begin = i
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                defer { i += 1 }
                return Key(raw: UnsafeBufferPointer(rebasing: bytes[begin..<i]))
            }
            if byte == UInt8(ascii: "\\") { return try escapedString(from: begin) }
            guard byte >= 0x20 else { throw Malformed() }
            i += 1
        }
        throw Malformed()
    }

    private mutating func escapedString(from begin: Int) throws(Malformed) -> Key {
        var out = Array(UnsafeBufferPointer(rebasing: bytes[begin..<i]))
        while i < bytes.count {
            let byte = bytes[i]
            i += 1
            switch byte {
            case UInt8(ascii: "\""):
                return Key(raw: UnsafeBufferPointer(rebasing: bytes[begin..<i - 1]), unescaped: out)
            case UInt8(ascii: "\\"):
                let escape = current
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): try appendScalar(to: &out)
                default: throw Malformed()
                }
            case 0..<0x20: throw Malformed()
            default: out.append(byte)
            }
        }
        throw Malformed()
    }

    /// `\uXXXX` (the `\u` read), with a surrogate pair's second half.
    private mutating func appendScalar(to out: inout [UInt8]) throws(Malformed) {
        var value = try hex4()
        if (0xD800..<0xDC00).contains(value) {
            guard current == UInt8(ascii: "\\") else { throw Malformed() }
            i += 1
            guard current == UInt8(ascii: "u") else { throw Malformed() }
            i += 1
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw Malformed() }
            value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(value) {
            throw Malformed()
        }
        guard let scalar = Unicode.Scalar(value) else { throw Malformed() }
        UTF8.encode(scalar) { out.append($0) }
    }

    private mutating func hex4() throws(Malformed) -> UInt32 {
        guard bytes.count - i >= 4 else { throw Malformed() }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[i]
            i += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw Malformed()
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// The extent of a number (JSON's grammar), and whether it has a fraction or exponent.
    private mutating func numberSpan() throws(Malformed) -> (span: UnsafeBufferPointer<UInt8>, isInteger: Bool) {
        skipWhitespace()
        let begin = i
        var isInteger = true
        if current == UInt8(ascii: "-") { i += 1 }
        if current == UInt8(ascii: "0") {
            i += 1
        } else {
            guard try digits() > 0 else { throw Malformed() }
        }
        if current == UInt8(ascii: ".") {
            i += 1
            isInteger = false
            guard try digits() > 0 else { throw Malformed() }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            i += 1
            isInteger = false
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { i += 1 }
            guard try digits() > 0 else { throw Malformed() }
        }
        return (UnsafeBufferPointer(rebasing: bytes[begin..<i]), isInteger)
    }

    private mutating func digits() throws(Malformed) -> Int {
        let begin = i
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
        return i - begin
    }

    private mutating func integer() throws(Malformed) -> Int64 {
        let (span, isInteger) = try numberSpan()
        guard isInteger else { throw Malformed() }
        let negative = span.first == UInt8(ascii: "-")
        var magnitude: UInt64 = 0
        for byte in span.dropFirst(negative ? 1 : 0) {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw Malformed() }
            magnitude = sum
        }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { throw Malformed() }
            return magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { throw Malformed() }
        return Int64(magnitude)
    }

    private mutating func number() throws(Malformed) -> Double {
        let (span, _) = try numberSpan()
        guard let value = Double(String(decoding: span, as: UTF8.self)), value.isFinite else { throw Malformed() }
        return value
    }

    /// Checks and passes over one value of any kind.
    private mutating func skipValue(depth: Int) throws(Malformed) {
        skipWhitespace()
        switch current {
        case UInt8(ascii: "{"):
            try object(depth: depth) { reader, _ throws(Malformed) in try reader.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            guard depth <= Self.maxDepth else { throw Malformed() }
            i += 1
            skipWhitespace()
            if current == UInt8(ascii: "]") {
                i += 1
                return
            }
            while true {
                try skipValue(depth: depth + 1)
                skipWhitespace()
                switch current {
                case UInt8(ascii: ","): i += 1
                case UInt8(ascii: "]"):
                    i += 1
                    return
                default: throw Malformed()
                }
            }
        case UInt8(ascii: "\""): _ = try stringBytes()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: _ = try numberSpan()
        }
    }
}
