/// Decodes and validates events straight from message bytes.
///
/// A hand-written JSON scanner driven by a compiled ``InputMapping``: no Foundation
/// decoder, no per-event heap allocation (strings are copied, unescaped, into scratch
/// memory owned by the decoder and hashed). Every rejection is a ``RejectReason``.
///
/// Not thread-safe: one decoder per processing thread. The decoded event and its strings
/// stay valid until the next call to ``decode(_:)``.
public final class EventDecoder {
    /// The decoded event after a successful ``decode(_:)``.
    public private(set) var event = DecodedEvent()
    /// The attribute names that get slots, in slot order.
    public let attributeNames: [String]
    public let limits: EventLimits
    public let mapping: InputMapping

    private let scratch: UnsafeMutablePointer<UInt8>
    private let scratchCapacity: Int
    private let path: UnsafeMutablePointer<UInt8>
    private let pathCapacity = 1024
    private let slotValues: UnsafeMutablePointer<ByteRef>
    private let slotHashes: UnsafeMutablePointer<UInt64>
    private let slotCount: Int
    private let slotNameBytes: [[UInt8]]
    private let slotNamePrefixes: [UInt64]
    private let knownTypeBytes: [[UInt8]]
    private let knownTypePrefixes: [UInt64]
    private let aliases: [(fromBytes: [UInt8], to: [UInt8])]
    private let trie: KeyTrie

    /// What changes while one message is parsed; kept in a local value so the hot loop
    /// works on registers and the stack, not on the object.
    private struct ParseState {
        var scratchUsed = 0
        var event = DecodedEvent()
        /// Mapping priority of the candidate that set each field, 8 bits per field (0xFF: unset).
        var priorities: UInt64 = .max
        var attributeCount = 0

        @inline(__always) func priority(of field: EventField) -> Int {
            Int((priorities >> (UInt64(field.rawValue) * 8)) & 0xFF)
        }

        @inline(__always) mutating func setPriority(_ priority: Int, of field: EventField) {
            let shift = UInt64(field.rawValue) * 8
            priorities = (priorities & ~(0xFF << shift)) | (UInt64(priority & 0xFF) << shift)
        }
    }

    /// Values of the referenced attributes, by slot (allocates; for tests and tools).
    public var attributeValues: [ByteRef] { (0..<slotCount).map { slotValues[$0] } }
    /// Hashes of the referenced attribute values, by slot (allocates).
    public var attributeHashes: [UInt64] { (0..<slotCount).map { slotHashes[$0] } }

    /// The value of attribute slot `slot` for the current event (absent: negative count).
    @inline(__always) public func attributeValue(_ slot: Int) -> ByteRef { slotValues[slot] }
    /// The hash of attribute slot `slot`'s value (0 when absent).
    @inline(__always) public func attributeHash(_ slot: Int) -> UInt64 { slotHashes[slot] }

    /// - Parameters:
    ///   - attributeNames: attributes that segments refer to; each gets a slot
    ///     (``attributeValue(_:)``). Other attributes are counted against the limit and skipped.
    public init(mapping: InputMapping = .contract, limits: EventLimits = EventLimits(), attributeNames: [String] = []) {
        self.mapping = mapping
        self.limits = limits
        self.attributeNames = attributeNames
        scratchCapacity = limits.maxMessageBytes * 2 + 4096
        // Scratch memory with eight bytes to spare: a string's first eight bytes
        // (``prefix64(_:_:)``) and its hash's tail are read at once, wherever it ends.
        // Both buffers zeroed: bytes read past a string's end are masked off, but defined.
        scratch = .allocate(capacity: scratchCapacity + 8)
        scratch.initialize(repeating: 0, count: scratchCapacity + 8)
        path = .allocate(capacity: pathCapacity)
        path.initialize(repeating: 0, count: pathCapacity)
        slotCount = attributeNames.count
        slotValues = .allocate(capacity: max(1, slotCount))
        slotValues.initialize(repeating: .absent, count: max(1, slotCount))
        slotHashes = .allocate(capacity: max(1, slotCount))
        slotHashes.initialize(repeating: 0, count: max(1, slotCount))
        slotNameBytes = attributeNames.map { Array($0.utf8) }
        slotNamePrefixes = slotNameBytes.map { JSONCursor.prefix64($0) }
        knownTypeBytes = KnownEventType.allCases.map { Array($0.name.utf8) }
        knownTypePrefixes = knownTypeBytes.map { JSONCursor.prefix64($0) }
        aliases = mapping.typeAliases.sorted(by: { $0.key < $1.key }).map { (Array($0.key.utf8), Array($0.value.utf8)) }
        trie = KeyTrie.compile(mapping)
    }

    deinit {
        scratch.deallocate()
        path.deallocate()
        slotValues.deallocate()
        slotHashes.deallocate()
        trie.deallocate()
    }

    // MARK: Decoding

    /// Decodes one message. On success ``event`` and the attribute slots hold the result.
    public func decode(_ bytes: UnsafeRawBufferPointer) -> RejectReason? {
        do throws(RejectReason) {
            try decodeThrowing(bytes)
            return nil
        } catch {
            return error
        }
    }

    /// Decodes a `String` (convenience for tests and tools).
    public func decode(_ text: String) -> RejectReason? {
        var copy = text
        return copy.withUTF8 { decode(UnsafeRawBufferPointer($0)) }
    }

    private func decodeThrowing(_ bytes: UnsafeRawBufferPointer) throws(RejectReason) {
        guard bytes.count <= limits.maxMessageBytes else { throw .tooLarge }
        guard let source = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else { throw .malformedJSON }
        for slot in 0..<slotCount {
            slotValues[slot] = .absent
            slotHashes[slot] = 0
        }
        // The message is copied to the start of scratch memory once, so strings without
        // escapes are referenced where they are; unescaped copies go after it.
        scratch.update(from: source, count: bytes.count)
        var state = ParseState()
        state.scratchUsed = bytes.count
        var cursor = JSONCursor(base: UnsafePointer(scratch), count: bytes.count)
        cursor.skipWhitespace()
        guard cursor.peek() == UInt8(ascii: "{") else {
            if cursor.isAtEnd { throw .malformedJSON }
            try skipValue(&cursor, &state, depth: 0)
            cursor.skipWhitespace()
            throw cursor.isAtEnd ? .notAnObject : .malformedJSON
        }
        try parseObject(&cursor, &state, node: 0, attributeMode: false, pathLength: 0, depth: 1)
        cursor.skipWhitespace()
        guard cursor.isAtEnd else { throw .malformedJSON }
        try finish(&state)
        event = state.event
    }

    private func finish(_ state: inout ParseState) throws(RejectReason) {
        for field in [EventField.eventID, .type, .userID, .timestamp] where state.priority(of: field) == 0xFF {
            throw .missingField(field)
        }
        state.event.eventIDHash = hash(state.event.eventID)
        state.event.userIDHash = hash(state.event.userID)
        if !aliases.isEmpty {
            for alias in aliases where equals(state.event.type, alias.fromBytes) {
                state.event.type = store(alias.to, &state)
                break
            }
        }
        state.event.typeHash = hash(state.event.type)
        state.event.typeCode = -1
        let typeBase = scratch + Int(state.event.type.start)
        let typeLength = Int(state.event.type.count)
        let typePrefix = JSONCursor.prefix64(typeBase, min(typeLength, 8))
        for code in knownTypeBytes.indices where knownTypePrefixes[code] == typePrefix && EventDecoder.equal(knownTypeBytes[code], typeBase, typeLength) {
            state.event.typeCode = code
            break
        }
        if state.event.contentID.isPresent { state.event.contentIDHash = hash(state.event.contentID) }
    }

    // MARK: Accessing decoded strings

    /// The bytes of a decoded string (valid until the next decode).
    public func bytes(_ ref: ByteRef) -> UnsafeRawBufferPointer {
        guard ref.count > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: scratch + Int(ref.start), count: Int(ref.count))
    }

    /// A decoded string as a `String` (allocates; use where a name must be kept).
    public func string(_ ref: ByteRef) -> String {
        String(decoding: bytes(ref), as: UTF8.self)
    }

    /// The hash of a decoded string (``Hash64``). Decoded strings lie in the scratch
    /// memory, which has bytes to spare after any of them.
    @inline(__always)
    public func hash(_ ref: ByteRef) -> UInt64 {
        ref.count > 0 ? Hash64.hash(paddedBytes: scratch + Int(ref.start), count: Int(ref.count)) : Hash64.hash(bytes(ref))
    }

    /// Whether a decoded string equals `other`.
    public func equals(_ ref: ByteRef, _ other: [UInt8]) -> Bool {
        let mine = bytes(ref)
        return mine.count == other.count && other.withUnsafeBytes { mine.elementsEqual($0) }
    }

    private func store(_ value: [UInt8], _ state: inout ParseState) -> ByteRef {
        let start = state.scratchUsed
        let n = min(value.count, scratchCapacity - start)
        for index in 0..<n { scratch[start + index] = value[index] }
        state.scratchUsed += n
        return ByteRef(start: Int32(start), count: Int32(n))
    }

    /// Parses the object whose `{` the cursor is at (every caller has looked).
    private func parseObject(_ c: inout JSONCursor, _ state: inout ParseState, node: Int?, attributeMode: Bool, pathLength: Int, depth: Int) throws(RejectReason) {
        guard depth <= limits.maxDepth else { throw .tooDeep }
        if c.opensEmpty(UInt8(ascii: "}")) { return }
        // The child of the previous key (-1 before the first key; -2 after a key that is
        // not a child: no prediction then).
        var previous = -1
        while true {
            c.skipWhitespace()
            let key: ByteRef
            var child: Int?
            if let node {
                let predicted = previous == -1 ? trie.firstKey[node] : previous >= 0 ? trie.nextKey[previous] : -1
                if predicted >= 0, startsWithKey(c, trie.children[predicted]) {
                    key = ByteRef(start: Int32(c.i + 1), count: Int32(trie.children[predicted].length))
                    c.i += trie.children[predicted].length + 2
                    child = trie.children[predicted].node
                    previous = predicted
                } else {
                    key = try parseString(&c, &state)
                    if let found = childIndex(of: node, key: key) {
                        if previous == -1 { trie.firstKey[node] = found } else if previous >= 0 { trie.nextKey[previous] = found }
                        child = trie.children[found].node
                        previous = found
                    } else {
                        previous = -2
                    }
                }
            } else {
                key = try parseString(&c, &state)
            }
            try c.expect(UInt8(ascii: ":"))
            c.skipWhitespace()
            if let child {
                let childNode = trie.nodes[child]
                if let field = childNode.field {
                    try parseField(&c, &state, field: field, priority: childNode.priority)
                } else if c.peek() == UInt8(ascii: "{"), childNode.hasChildren || childNode.attributeSource {
                    try parseObject(&c, &state, node: child, attributeMode: childNode.attributeSource, pathLength: 0, depth: depth + 1)
                } else if childNode.attributeSource, c.peek() != UInt8(ascii: "n") {
                    throw .badAttribute
                } else if attributeMode {
                    try parseAttribute(&c, &state, key: key, pathLength: pathLength, depth: depth)
                } else {
                    try skipValue(&c, &state, depth: depth)
                }
            } else if attributeMode {
                try parseAttribute(&c, &state, key: key, pathLength: pathLength, depth: depth)
            } else {
                try skipValue(&c, &state, depth: depth)
            }
            if try c.endsContainer(UInt8(ascii: "}")) { return }
        }
    }

    /// Whether the cursor is at `child`'s key: a quote, its bytes, a quote.
    @inline(__always)
    private func startsWithKey(_ c: JSONCursor, _ child: KeyTrie.Child) -> Bool {
        let length = child.length
        // Eight bytes are read after the opening quote.
        guard child.isPlain, c.count - c.i >= max(length + 2, 9) else { return false }
        let at = c.base + c.i
        guard at[0] == UInt8(ascii: "\""), at[length + 1] == UInt8(ascii: "\"") else { return false }
        guard JSONCursor.prefix64(at + 1, min(length, 8)) == child.prefix else { return false }
        return tailMatches(child, at + 1)
    }

    /// Whether `child`'s key bytes from the ninth on equal those at `key` (whose first
    /// eight matched its prefix).
    @inline(__always)
    private func tailMatches(_ child: KeyTrie.Child, _ key: UnsafePointer<UInt8>) -> Bool {
        guard child.length > 8 else { return true }
        for offset in 8..<child.length where trie.tails[child.tail + offset - 8] != key[offset] { return false }
        return true
    }

    /// The position in `trie.children` of `node`'s child with `key`, if any.
    @inline(__always)
    private func childIndex(of node: Int, key: ByteRef) -> Int? {
        let entry = trie.nodes[node]
        guard entry.hasChildren else { return nil }
        let length = Int(key.count)
        let keyBase = scratch + Int(key.start)
        let prefix = JSONCursor.prefix64(keyBase, min(length, 8))
        for index in entry.childStart..<entry.childEnd {
            let child = trie.children[index]
            if child.length == length, child.prefix == prefix, tailMatches(child, keyBase) { return index }
        }
        return nil
    }

    private func parseAttribute(_ c: inout JSONCursor, _ state: inout ParseState, key: ByteRef, pathLength: Int, depth: Int) throws(RejectReason) {
        // The attribute's name is the path inside its source plus this key: built in
        // `path` when nested, else the key itself, where it is.
        let keyLength = Int(key.count)
        guard pathLength + keyLength + 1 < pathCapacity else { throw .badAttribute }
        let nameLength = pathLength + keyLength
        let name: UnsafePointer<UInt8>
        if pathLength == 0 && c.peek() != UInt8(ascii: "{") {
            name = UnsafePointer(scratch + Int(key.start))
        } else {
            (path + pathLength).update(from: scratch + Int(key.start), count: keyLength)
            name = UnsafePointer(path)
        }
        switch c.peek() {
        case UInt8(ascii: "{"):
            path[nameLength] = UInt8(ascii: ".")
            try parseObject(&c, &state, node: nil, attributeMode: true, pathLength: nameLength + 1, depth: depth + 1)
            return
        case UInt8(ascii: "["):
            throw .badAttribute
        case UInt8(ascii: "n"):
            try c.literal("null")
            return
        default:
            break
        }
        state.attributeCount += 1
        guard state.attributeCount <= limits.maxAttributes else { throw .tooManyAttributes }
        let value: ByteRef
        if c.peek() == UInt8(ascii: "\"") {
            value = try parseString(&c, &state)
        } else {
            // Numbers and booleans become their literal text.
            let start = c.i
            try skipValue(&c, &state, depth: depth)
            value = ByteRef(start: Int32(start), count: Int32(c.i - start))
        }
        guard value.count <= Int32(limits.maxStringBytes) else { throw .badAttribute }
        guard slotCount > 0 else { return }
        // Few attributes are referenced: compare lengths and first bytes, then the rest.
        let prefix = JSONCursor.prefix64(name, min(nameLength, 8))
        for slot in 0..<slotCount where slotNamePrefixes[slot] == prefix && EventDecoder.equal(slotNameBytes[slot], name, nameLength) {
            slotValues[slot] = value
            slotHashes[slot] = hash(value)
            return
        }
    }

    /// Whether `bytes` equals the `count` bytes at `pointer`.
    @inline(__always)
    private static func equal(_ bytes: [UInt8], _ pointer: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        guard bytes.count == count else { return false }
        for index in 0..<count where bytes[index] != pointer[index] { return false }
        return true
    }

    @inline(__always)
    private static func isDigitOrMinus(_ byte: UInt8) -> Bool { byte == UInt8(ascii: "-") || (byte >= 0x30 && byte <= 0x39) }

    private func parseField(_ c: inout JSONCursor, _ state: inout ParseState, field: EventField, priority: Int) throws(RejectReason) {
        if c.peek() == UInt8(ascii: "n") {
            try c.literal("null")
            return
        }
        let current = state.priority(of: field)
        if current == priority { throw .duplicateField(field) }
        let wins = priority < current
        switch field {
        case .eventID, .type, .userID, .contentID, .sessionID:
            let value: ByteRef
            if c.peek() == UInt8(ascii: "\"") {
                value = try parseString(&c, &state)
            } else if field == .userID || field == .eventID, EventDecoder.isDigitOrMinus(c.peek()) {
                // Numeric ids are common; keep their text.
                let start = c.i
                _ = try c.number()
                value = ByteRef(start: Int32(start), count: Int32(c.i - start))
            } else {
                throw .badField(field)
            }
            guard value.count <= Int32(limits.maxStringBytes) else { throw .tooLong(field) }
            guard value.count > 0, wins else { return }
            state.setPriority(priority, of: field)
            switch field {
            case .eventID: state.event.eventID = value
            case .type: state.event.type = value
            case .userID: state.event.userID = value
            case .contentID: state.event.contentID = value
            default: state.event.sessionIDHash = hash(value)
            }
        case .timestamp:
            let millis: Int64
            if c.peek() == UInt8(ascii: "\"") {
                let text = try parseString(&c, &state)
                guard let parsed = Timestamp.parseRFC3339(bytes(text)) else { throw .badTimestamp }
                millis = parsed
            } else {
                let number = try c.number()
                guard let integer = number.integer else { throw .badTimestamp }
                millis = integer
            }
            guard Timestamp.validRange.contains(millis) else { throw .badTimestamp }
            if wins {
                state.setPriority(priority, of: field)
                state.event.timestamp = millis
            }
        case .dwellMs:
            guard EventDecoder.isDigitOrMinus(c.peek()) else { throw .badField(field) }
            let number = try c.number()
            guard let integer = number.integer, integer >= 0, integer <= 86_400_000 else { throw .badField(field) }
            if wins {
                state.setPriority(priority, of: field)
                state.event.dwellMs = integer
            }
        case .value:
            guard EventDecoder.isDigitOrMinus(c.peek()) else { throw .badField(field) }
            let number = try c.number()
            guard let micros = number.micros else { throw .badField(field) }
            if wins {
                state.setPriority(priority, of: field)
                state.event.valueMicros = micros
            }
        }
    }

    /// Parses a JSON string: in place when it has no escapes, else unescaped into the
    /// scratch area after the message. UTF-8 is validated.
    @inline(__always)
    private func parseString(_ c: inout JSONCursor, _ state: inout ParseState) throws(RejectReason) -> ByteRef {
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

    /// Skips any JSON value, checking its syntax and nesting depth.
    private func skipValue(_ c: inout JSONCursor, _ state: inout ParseState, depth: Int) throws(RejectReason) {
        c.skipWhitespace()
        guard c.i < c.count else { throw .malformedJSON }
        switch c.base[c.i] {
        case UInt8(ascii: "{"):
            guard depth + 1 <= limits.maxDepth else { throw .tooDeep }
            if c.opensEmpty(UInt8(ascii: "}")) { return }
            repeat {
                c.skipWhitespace()
                let mark = state.scratchUsed
                _ = try parseString(&c, &state)
                state.scratchUsed = mark
                try c.expect(UInt8(ascii: ":"))
                try skipValue(&c, &state, depth: depth + 1)
            } while try !c.endsContainer(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            guard depth + 1 <= limits.maxDepth else { throw .tooDeep }
            if c.opensEmpty(UInt8(ascii: "]")) { return }
            repeat {
                try skipValue(&c, &state, depth: depth + 1)
            } while try !c.endsContainer(UInt8(ascii: "]"))
        case UInt8(ascii: "\""):
            let mark = state.scratchUsed
            _ = try parseString(&c, &state)
            state.scratchUsed = mark
        case UInt8(ascii: "t"): try c.literal("true")
        case UInt8(ascii: "f"): try c.literal("false")
        case UInt8(ascii: "n"): try c.literal("null")
        default: _ = try c.number()
        }
    }
}
