/// A position in a message's bytes, and the JSON tokens that can be scanned there without
/// the decoder's state (whitespace, punctuation, literals, numbers, `\u` escapes), with
/// the word-at-a-time tests the scanner is built on. The bytes must stay valid while it is
/// used; ``EventDecoder`` points it at its scratch copy of the message.
struct JSONCursor {
    let base: UnsafePointer<UInt8>
    let count: Int
    var i = 0

    var isAtEnd: Bool { i >= count }

    @inline(__always) func peek() -> UInt8 { i < count ? base[i] : 0 }

    @inline(__always) mutating func skipWhitespace() {
        while i < count {
            let c = base[i]
            guard c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 else { return }
            i += 1
        }
    }

    @inline(__always) mutating func expect(_ c: UInt8) throws(RejectReason) {
        skipWhitespace()
        guard i < count, base[i] == c else { throw .malformedJSON }
        i += 1
    }

    /// Opens the container whose opening byte (`{` or `[`) the cursor is at; true if it
    /// is empty (`close` follows, and is consumed too).
    @inline(__always) mutating func opensEmpty(_ close: UInt8) -> Bool {
        i += 1
        skipWhitespace()
        guard peek() == close else { return false }
        i += 1
        return true
    }

    /// After a container's member or element: true at its end (`close`, consumed), false
    /// after a comma (consumed); anything else is malformed.
    @inline(__always) mutating func endsContainer(_ close: UInt8) throws(RejectReason) -> Bool {
        skipWhitespace()
        guard i < count else { throw .malformedJSON }
        let next = base[i]
        i += 1
        if next == close { return true }
        guard next == UInt8(ascii: ",") else { throw .malformedJSON }
        return false
    }

    mutating func literal(_ word: StaticString) throws(RejectReason) {
        let length = word.utf8CodeUnitCount
        guard count - i >= length else { throw .malformedJSON }
        for k in 0..<length where base[i + k] != word.utf8Start[k] { throw .malformedJSON }
        i += length
    }

    /// A JSON number, scanned.
    mutating func number() throws(RejectReason) -> JSONNumber {
        var negative = false
        if peek() == UInt8(ascii: "-") {
            negative = true
            i += 1
        }
        // Mantissa digits (up to 18 significant), decimal exponent.
        var mantissa: Int64 = 0
        var exponent = 0
        var digits = 0
        var overflow = false
        let intStart = i
        // Eight digits at a time while they stay within 18 significant ones (after a
        // leading zero, more digits are malformed: below, one at a time).
        if i < count, base[i] != 0x30 {
            while count - i >= 8, digits <= 10 {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
                guard Self.isEightDigits(word) else { break }
                mantissa = mantissa &* 100_000_000 &+ Int64(Self.valueOfEightDigits(word))
                digits += 8
                i += 8
            }
        }
        while i < count, base[i] >= 0x30, base[i] <= 0x39 {
            if digits < 18 {
                mantissa = mantissa * 10 + Int64(base[i] - 0x30)
                if mantissa > 0 { digits += 1 }
            } else {
                exponent += 1
                overflow = true
            }
            i += 1
        }
        let intDigits = i - intStart
        guard intDigits > 0, !(intDigits > 1 && base[intStart] == 0x30) else { throw .malformedJSON }
        var isInteger = true
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let fracStart = i
            while i < count, base[i] >= 0x30, base[i] <= 0x39 {
                if digits < 18 {
                    mantissa = mantissa * 10 + Int64(base[i] - 0x30)
                    if mantissa > 0 { digits += 1 }
                    exponent -= 1
                }
                i += 1
            }
            guard i > fracStart else { throw .malformedJSON }
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            var expNegative = false
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") {
                expNegative = peek() == UInt8(ascii: "-")
                i += 1
            }
            var value = 0
            let expStart = i
            while i < count, base[i] >= 0x30, base[i] <= 0x39 {
                value = min(value * 10 + Int(base[i] - 0x30), 10_000)
                i += 1
            }
            guard i > expStart else { throw .malformedJSON }
            exponent += expNegative ? -value : value
        }
        return JSONNumber(mantissa: mantissa, exponent: exponent, negative: negative, isInteger: isInteger && !overflow)
    }

    /// Four hex digits (a `\u` escape's), as a number.
    mutating func hex4() throws(RejectReason) -> UInt32 {
        guard count - i >= 4 else { throw .malformedJSON }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = base[i]
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x41...0x46: digit = byte - 0x41 + 10
            case 0x61...0x66: digit = byte - 0x61 + 10
            default: throw .malformedJSON
            }
            value = value << 4 | UInt32(digit)
            i += 1
        }
        return value
    }

    // MARK: Words

    /// The first ≤ 8 bytes, little-endian, zero-padded.
    static func prefix64(_ bytes: [UInt8]) -> UInt64 {
        var value: UInt64 = 0
        for (index, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }

    /// The first `count` (≤ 8) bytes at `base`, little-endian, zero-padded. Reads eight
    /// bytes, whatever `count` is: the caller's memory must have them (the decoder's
    /// scratch memory and path buffer have bytes to spare after any string).
    @inline(__always)
    static func prefix64(_ base: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        let word = UInt64(littleEndian: UnsafeRawPointer(base).loadUnaligned(as: UInt64.self))
        return count >= 8 ? word : word & ((1 << UInt64(8 * count)) &- 1)
    }

    /// Whether the eight bytes of `word` are all ASCII digits (SWAR: each byte's high
    /// nibble is 3, and adding 6 leaves it 3).
    @inline(__always)
    static func isEightDigits(_ word: UInt64) -> Bool {
        let high: UInt64 = 0xF0F0_F0F0_F0F0_F0F0
        return (word & high) | (((word &+ 0x0606_0606_0606_0606) & high) >> 4) == 0x3333_3333_3333_3333
    }

    /// The number eight ASCII digits spell, the first in the lowest byte of `word`
    /// (pairs, then fours, then all eight combined by multiply-and-shift).
    @inline(__always)
    static func valueOfEightDigits(_ word: UInt64) -> UInt64 {
        var value = word &- 0x3030_3030_3030_3030
        value = (value &* 10 &+ (value >> 8)) & 0x00FF_00FF_00FF_00FF
        value = (value &* 100 &+ (value >> 16)) & 0x0000_FFFF_0000_FFFF
        return (value &* 10_000 &+ (value >> 32)) & 0xFFFF_FFFF
    }

    /// The bytes of `word` (little-endian) that are `"`, `\\` or below 0x20, as their
    /// high bit set (SWAR: a byte is zero after XOR with the pattern, or less than 0x20).
    /// Bytes above the first such byte may be marked wrongly (a borrow runs upwards);
    /// the lowest mark is always right, and it is the only one used.
    @inline(__always)
    static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let hasQuote = (quote &- ones) & ~quote & highs
        let hasBackslash = (backslash &- ones) & ~backslash & highs
        let hasControl = (word &- ones &* 0x20) & ~word & highs
        return hasQuote | hasBackslash | hasControl
    }

    /// Strict UTF-8 validation (no overlongs, no surrogates, ≤ U+10FFFF).
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 {
                i += 1
                continue
            }
            let length: Int
            let minimum: UInt32
            var scalar: UInt32
            switch b0 {
            case 0xC2...0xDF: length = 2; minimum = 0x80; scalar = UInt32(b0 & 0x1F)
            case 0xE0...0xEF: length = 3; minimum = 0x800; scalar = UInt32(b0 & 0x0F)
            case 0xF0...0xF4: length = 4; minimum = 0x10000; scalar = UInt32(b0 & 0x07)
            default: return false
            }
            guard i + length <= n else { return false }
            for k in 1..<length {
                let b = bytes[i + k]
                guard b & 0xC0 == 0x80 else { return false }
                scalar = scalar << 6 | UInt32(b & 0x3F)
            }
            guard scalar >= minimum, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else { return false }
            i += length
        }
        return true
    }
}

/// A JSON number as scanned: up to 18 significant digits and a decimal exponent. Its
/// value as an integer or in millionths is worked out only where a field asks for it.
struct JSONNumber {
    var mantissa: Int64
    var exponent: Int
    var negative: Bool
    /// Written without fraction or exponent, and within 18 significant digits.
    var isInteger: Bool

    /// The value, if an integer that fits.
    var integer: Int64? { isInteger ? scaled(0) : nil }

    /// The value in millionths (extra fraction truncated), if within ±10¹⁵ (±10⁹ units).
    var micros: Int64? { scaled(6).flatMap { abs($0) <= 1_000_000_000_000_000 ? $0 : nil } }

    /// mantissa × 10^(exponent + shift), exactly, if it fits (truncating extra fraction).
    private func scaled(_ shift: Int) -> Int64? {
        var value = mantissa
        var e = exponent + shift
        while e > 0 {
            let (product, o) = value.multipliedReportingOverflow(by: 10)
            if o { return nil }
            value = product
            e -= 1
        }
        while e < 0, value != 0 {
            value /= 10
            e += 1
        }
        return negative ? -value : value
    }
}
