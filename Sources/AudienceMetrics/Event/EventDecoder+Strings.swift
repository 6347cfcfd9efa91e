// The event decoder's strings: scanned in place eight bytes at a time, unescaped into
// scratch memory when they have escapes.

extension EventDecoder {
    /// Parses a JSON string: in place when it has no escapes, else unescaped into the
    /// scratch area after the message. UTF-8 is validated.
    @inline(__always)
    func parseString(_ c: inout JSONCursor, _ state: inout ParseState) throws(RejectReason) -> ByteRef {
        guard c.i < c.count, c.base[c.i] == UInt8(ascii: "\"") else { throw .malformedJSON }
        c.i += 1
        let begin = c.i
        var highBits: UInt64 = 0
        // Fast path: scan eight bytes at a time; the word holding the closing quote (or
        // an escape, or a control byte) also says where it is.
        while c.count - c.i >= 8 {
            let word = UInt64(littleEndian: UnsafeRawPointer(c.base + c.i).loadUnaligned(as: UInt64.self))
            let special = JSONCursor.specialBytes(word)
            if special != 0 {
                let ordinary = special.trailingZeroBitCount & ~7  // bits of the bytes before it
                highBits |= word & ((1 << UInt64(ordinary)) &- 1)
                c.i += ordinary >> 3
                break
            }
            highBits |= word
            c.i += 8
        }
        while c.i < c.count {
            let byte = c.base[c.i]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            highBits |= UInt64(byte)
            c.i += 1
        }
        guard c.i < c.count else { throw .malformedJSON }
        if c.base[c.i] == UInt8(ascii: "\"") {
            let ref = ByteRef(start: Int32(begin), count: Int32(c.i - begin))
            c.i += 1
            if highBits & 0x8080_8080_8080_8080 != 0, !JSONCursor.isValidUTF8(bytes(ref)) { throw .invalidUTF8 }
            return ref
        }
        return try parseEscapedString(&c, &state, begin: begin, highBits: highBits)
    }

    /// The rest of a string that has escapes: copy what was scanned, then unescape.
    @inline(never)
    private func parseEscapedString(_ c: inout JSONCursor, _ state: inout ParseState, begin: Int, highBits: UInt64) throws(RejectReason) -> ByteRef {
        let start = state.scratchUsed
        guard start + (c.i - begin) + 4 <= scratchCapacity else { throw .tooLarge }
        (scratch + start).update(from: c.base + begin, count: c.i - begin)
        state.scratchUsed += c.i - begin
        var sawHighBit = highBits & 0x8080_8080_8080_8080 != 0
        while true {
            let runStart = c.i
            while c.i < c.count {
                let byte = c.base[c.i]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                if byte >= 0x80 { sawHighBit = true }
                c.i += 1
            }
            let run = c.i - runStart
            guard state.scratchUsed + run + 4 <= scratchCapacity else { throw .tooLarge }
            (scratch + state.scratchUsed).update(from: c.base + runStart, count: run)
            state.scratchUsed += run
            guard c.i < c.count else { throw .malformedJSON }
            let byte = c.base[c.i]
            c.i += 1
            if byte == UInt8(ascii: "\"") { break }
            guard byte == UInt8(ascii: "\\"), c.i < c.count else { throw .malformedJSON }
            let escape = c.base[c.i]
            c.i += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): append(escape, &state)
            case UInt8(ascii: "b"): append(0x08, &state)
            case UInt8(ascii: "f"): append(0x0c, &state)
            case UInt8(ascii: "n"): append(0x0a, &state)
            case UInt8(ascii: "r"): append(0x0d, &state)
            case UInt8(ascii: "t"): append(0x09, &state)
            case UInt8(ascii: "u"):
                var scalar = try c.hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard c.count - c.i >= 6, c.base[c.i] == UInt8(ascii: "\\"), c.base[c.i + 1] == UInt8(ascii: "u") else { throw .invalidUTF8 }
                    c.i += 2
                    let low = try c.hex4()
                    guard (0xDC00...0xDFFF).contains(low) else { throw .invalidUTF8 }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw .invalidUTF8
                }
                appendUTF8(scalar, &state)
            default:
                throw .malformedJSON
            }
        }
        let ref = ByteRef(start: Int32(start), count: Int32(state.scratchUsed - start))
        if sawHighBit, !JSONCursor.isValidUTF8(bytes(ref)) { throw .invalidUTF8 }
        return ref
    }

    @inline(__always) private func append(_ byte: UInt8, _ state: inout ParseState) {
        scratch[state.scratchUsed] = byte
        state.scratchUsed += 1
    }

    private func appendUTF8(_ scalar: UInt32, _ state: inout ParseState) {
        switch scalar {
        case ..<0x80: append(UInt8(scalar), &state)
        case ..<0x800:
            append(UInt8(0xC0 | (scalar >> 6)), &state)
            append(UInt8(0x80 | (scalar & 0x3F)), &state)
        case ..<0x10000:
            append(UInt8(0xE0 | (scalar >> 12)), &state)
            append(UInt8(0x80 | ((scalar >> 6) & 0x3F)), &state)
            append(UInt8(0x80 | (scalar & 0x3F)), &state)
        default:
            append(UInt8(0xF0 | (scalar >> 18)), &state)
            append(UInt8(0x80 | ((scalar >> 12) & 0x3F)), &state)
            append(UInt8(0x80 | ((scalar >> 6) & 0x3F)), &state)
            append(UInt8(0x80 | (scalar & 0x3F)), &state)
        }
    }
}
