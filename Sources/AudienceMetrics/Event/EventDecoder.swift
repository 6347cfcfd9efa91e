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
    /// Values of the referenced attributes (see `attributeNames`), by slot; absent ones
    /// have a negative count.
    public private(set) var attributeValues: [ByteRef]
    /// Hashes of the referenced attribute values, by slot (0 when absent).
    public private(set) var attributeHashes: [UInt64]
    /// The attribute names that get slots, in slot order.
    public let attributeNames: [String]
    public let limits: EventLimits
    public let mapping: InputMapping

    private let scratch: UnsafeMutablePointer<UInt8>
    private let scratchCapacity: Int
    private var scratchUsed = 0
    private let path: UnsafeMutablePointer<UInt8>
    private let pathCapacity = 1024
    private var nodes: [Node] = []
    private var fieldPriority = [Int](repeating: .max, count: EventField.allCases.count)
    private var attributeCount = 0
    private var slotTable: [SlotEntry]
    private var slotNameBytes: [[UInt8]]
    private let knownTypeHashes: [UInt64]
    private var aliases: [(from: UInt64, fromBytes: [UInt8], to: [UInt8])] = []

    private struct Node {
        var children: [(key: [UInt8], node: Int)] = []
        var target: (field: EventField, priority: Int)?
        var attributeSource = false
    }

    private struct SlotEntry {
        var hash: UInt64
        var slot: Int
    }

    /// - Parameters:
    ///   - attributeNames: attributes that segments refer to; each gets a slot in
    ///     ``attributeValues``. Other attributes are counted against the limit and skipped.
    public init(mapping: InputMapping = .contract, limits: EventLimits = EventLimits(), attributeNames: [String] = []) {
        self.mapping = mapping
        self.limits = limits
        self.attributeNames = attributeNames
        scratchCapacity = limits.maxMessageBytes * 2 + 4096
        scratch = .allocate(capacity: scratchCapacity)
        path = .allocate(capacity: pathCapacity)
        attributeValues = Array(repeating: .absent, count: attributeNames.count)
        attributeHashes = Array(repeating: 0, count: attributeNames.count)
        slotNameBytes = attributeNames.map { Array($0.utf8) }
        let tableSize = max(8, (attributeNames.count * 2).nextPowerOfTwo)
        slotTable = Array(repeating: SlotEntry(hash: 0, slot: -1), count: tableSize)
        knownTypeHashes = KnownEventType.allCases.map { Hash64.hash($0.name) }
        for (slot, name) in attributeNames.enumerated() {
            var index = Int(truncatingIfNeeded: Hash64.hash(name)) & (tableSize - 1)
            while slotTable[index].slot >= 0 { index = (index + 1) & (tableSize - 1) }
            slotTable[index] = SlotEntry(hash: Hash64.hash(name), slot: slot)
        }
        for (from, to) in mapping.typeAliases.sorted(by: { $0.key < $1.key }) {
            aliases.append((Hash64.hash(from), Array(from.utf8), Array(to.utf8)))
        }
        compile()
    }

    deinit {
        scratch.deallocate()
        path.deallocate()
    }

    // MARK: Compiling the mapping

    private func compile() {
        nodes = [Node()]
        func node(for dottedPath: String) -> Int {
            var current = 0
            for component in dottedPath.split(separator: ".", omittingEmptySubsequences: false) {
                let key = Array(component.utf8)
                if let existing = nodes[current].children.first(where: { $0.key == key }) {
                    current = existing.node
                } else {
                    nodes.append(Node())
                    nodes[current].children.append((key, nodes.count - 1))
                    current = nodes.count - 1
                }
            }
            return current
        }
        for field in EventField.allCases {
            for (priority, candidate) in mapping.candidates(for: field).enumerated() {
                let index = node(for: candidate)
                if nodes[index].target == nil { nodes[index].target = (field, priority) }
            }
        }
        for source in mapping.attributeSources { nodes[node(for: source)].attributeSource = true }
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
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else { throw .malformedJSON }
        event = DecodedEvent()
        scratchUsed = 0
        attributeCount = 0
        for index in fieldPriority.indices { fieldPriority[index] = .max }
        for slot in attributeValues.indices {
            attributeValues[slot] = .absent
            attributeHashes[slot] = 0
        }
        var cursor = Cursor(base: base, count: bytes.count)
        cursor.skipWhitespace()
        guard cursor.peek() == UInt8(ascii: "{") else {
            if cursor.isAtEnd { throw .malformedJSON }
            try skipValue(&cursor, depth: 0)
            cursor.skipWhitespace()
            throw cursor.isAtEnd ? .notAnObject : .malformedJSON
        }
        try parseObject(&cursor, node: 0, attributeMode: false, pathLength: 0, depth: 1)
        cursor.skipWhitespace()
        guard cursor.isAtEnd else { throw .malformedJSON }
        try finish()
    }

    private func finish() throws(RejectReason) {
        for field in [EventField.eventID, .type, .userID, .timestamp] where fieldPriority[field.rawValue] == .max {
            throw .missingField(field)
        }
        event.eventIDHash = hash(event.eventID)
        event.userIDHash = hash(event.userID)
        applyAlias()
        event.typeHash = hash(event.type)
        event.typeCode = knownTypeHashes.firstIndex(of: event.typeHash).flatMap { code in
            equals(event.type, Array(KnownEventType.allCases[code].name.utf8)) ? code : nil
        } ?? -1
        if event.contentID.isPresent { event.contentIDHash = hash(event.contentID) }
    }

    private func applyAlias() {
        guard !aliases.isEmpty else { return }
        let typeHash = hash(event.type)
        for alias in aliases where alias.from == typeHash && equals(event.type, alias.fromBytes) {
            event.type = store(alias.to)
            return
        }
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

    /// The hash of a decoded string (``Hash64``).
    @inline(__always)
    public func hash(_ ref: ByteRef) -> UInt64 { Hash64.hash(bytes(ref)) }

    /// Whether a decoded string equals `other`.
    public func equals(_ ref: ByteRef, _ other: [UInt8]) -> Bool {
        let mine = bytes(ref)
        return mine.count == other.count && other.withUnsafeBytes { mine.elementsEqual($0) }
    }

    private func store(_ value: [UInt8]) -> ByteRef {
        let start = scratchUsed
        for byte in value where scratchUsed < scratchCapacity {
            scratch[scratchUsed] = byte
            scratchUsed += 1
        }
        return ByteRef(start: Int32(start), count: Int32(scratchUsed - start))
    }

    // MARK: The scanner

    private struct Cursor {
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

        mutating func literal(_ word: StaticString) throws(RejectReason) {
            let length = word.utf8CodeUnitCount
            guard count - i >= length else { throw .malformedJSON }
            for k in 0..<length where base[i + k] != word.utf8Start[k] { throw .malformedJSON }
            i += length
        }
    }

    private func parseObject(_ c: inout Cursor, node: Int?, attributeMode: Bool, pathLength: Int, depth: Int) throws(RejectReason) {
        guard depth <= limits.maxDepth else { throw .tooDeep }
        try c.expect(UInt8(ascii: "{"))
        c.skipWhitespace()
        if c.peek() == UInt8(ascii: "}") {
            c.i += 1
            return
        }
        while true {
            c.skipWhitespace()
            let key = try parseString(&c)
            try c.expect(UInt8(ascii: ":"))
            c.skipWhitespace()
            let child = node.flatMap { childNode(of: $0, key: key) }
            if let child, let target = nodes[child].target {
                try parseField(&c, field: target.field, priority: target.priority)
            } else if let child, c.peek() == UInt8(ascii: "{"), !nodes[child].children.isEmpty || nodes[child].attributeSource {
                try parseObject(&c, node: child, attributeMode: nodes[child].attributeSource, pathLength: 0, depth: depth + 1)
            } else if let child, nodes[child].attributeSource, c.peek() != UInt8(ascii: "n") {
                throw .badAttribute
            } else if attributeMode {
                try parseAttribute(&c, key: key, pathLength: pathLength, depth: depth)
            } else {
                try skipValue(&c, depth: depth)
            }
            // Keys are no longer needed once handled; reuse their scratch space.
            if scratchUsed == Int(key.start) + Int(key.count) { scratchUsed = Int(key.start) }
            c.skipWhitespace()
            guard c.i < c.count else { throw .malformedJSON }
            let next = c.base[c.i]
            c.i += 1
            if next == UInt8(ascii: "}") { return }
            guard next == UInt8(ascii: ",") else { throw .malformedJSON }
        }
    }

    @inline(__always)
    private func childNode(of node: Int, key: ByteRef) -> Int? {
        let children = nodes[node].children
        guard !children.isEmpty else { return nil }
        let keyBytes = bytes(key)
        for child in children where child.key.count == keyBytes.count {
            if child.key.withUnsafeBytes({ keyBytes.elementsEqual($0) }) { return child.node }
        }
        return nil
    }

    private func parseAttribute(_ c: inout Cursor, key: ByteRef, pathLength: Int, depth: Int) throws(RejectReason) {
        // The attribute's name is the path inside its source plus this key.
        let keyBytes = bytes(key)
        guard pathLength + keyBytes.count + 1 < pathCapacity else { throw .tooLong(.type) }
        if let base = keyBytes.baseAddress { (path + pathLength).update(from: base.assumingMemoryBound(to: UInt8.self), count: keyBytes.count) }
        let nameLength = pathLength + keyBytes.count
        switch c.peek() {
        case UInt8(ascii: "{"):
            path[nameLength] = UInt8(ascii: ".")
            try parseObject(&c, node: nil, attributeMode: true, pathLength: nameLength + 1, depth: depth + 1)
            return
        case UInt8(ascii: "["):
            throw .badAttribute
        case UInt8(ascii: "n"):
            try c.literal("null")
            return
        default:
            break
        }
        attributeCount += 1
        guard attributeCount <= limits.maxAttributes else { throw .tooManyAttributes }
        let value: ByteRef
        if c.peek() == UInt8(ascii: "\"") {
            value = try parseString(&c)
        } else {
            // Numbers and booleans become their literal text.
            let start = c.i
            try skipValue(&c, depth: depth)
            value = store(rawBytes: c.base + start, count: c.i - start)
        }
        guard value.count <= Int32(limits.maxStringBytes) else { throw .badAttribute }
        guard !attributeNames.isEmpty else { return }
        let name = UnsafeRawBufferPointer(start: path, count: nameLength)
        let nameHash = Hash64.hash(name)
        var index = Int(truncatingIfNeeded: nameHash) & (slotTable.count - 1)
        while slotTable[index].slot >= 0 {
            let entry = slotTable[index]
            if entry.hash == nameHash, slotNameBytes[entry.slot].withUnsafeBytes({ name.elementsEqual($0) }) {
                attributeValues[entry.slot] = value
                attributeHashes[entry.slot] = hash(value)
                return
            }
            index = (index + 1) & (slotTable.count - 1)
        }
    }

    private func store(rawBytes: UnsafePointer<UInt8>, count: Int) -> ByteRef {
        let start = scratchUsed
        let n = min(count, scratchCapacity - scratchUsed)
        (scratch + start).update(from: rawBytes, count: n)
        scratchUsed += n
        return ByteRef(start: Int32(start), count: Int32(n))
    }

    private func parseField(_ c: inout Cursor, field: EventField, priority: Int) throws(RejectReason) {
        if c.peek() == UInt8(ascii: "n") {
            try c.literal("null")
            return
        }
        let current = fieldPriority[field.rawValue]
        if current == priority { throw .duplicateField(field) }
        let wins = priority < current
        switch field {
        case .eventID, .type, .userID, .contentID, .sessionID:
            let value: ByteRef
            if c.peek() == UInt8(ascii: "\"") {
                value = try parseString(&c)
            } else if field == .userID || field == .eventID, c.peek() == UInt8(ascii: "-") || (c.peek() >= 0x30 && c.peek() <= 0x39) {
                // Numeric ids are common; keep their text.
                let start = c.i
                _ = try parseNumber(&c)
                value = store(rawBytes: c.base + start, count: c.i - start)
            } else {
                throw .badField(field)
            }
            guard value.count <= Int32(limits.maxStringBytes) else { throw .tooLong(field) }
            guard value.count > 0, wins else { return }
            fieldPriority[field.rawValue] = priority
            switch field {
            case .eventID: event.eventID = value
            case .type: event.type = value
            case .userID: event.userID = value
            case .contentID: event.contentID = value
            default: event.sessionIDHash = hash(value)
            }
        case .timestamp:
            let millis: Int64
            if c.peek() == UInt8(ascii: "\"") {
                let text = try parseString(&c)
                guard let parsed = Timestamp.parseRFC3339(bytes(text)) else { throw .badTimestamp }
                millis = parsed
            } else {
                let number = try parseNumber(&c)
                guard number.isInteger, let integer = number.integer else { throw .badTimestamp }
                millis = integer
            }
            guard Timestamp.validRange.contains(millis) else { throw .badTimestamp }
            if wins {
                fieldPriority[field.rawValue] = priority
                event.timestamp = millis
            }
        case .dwellMs:
            guard c.peek() == UInt8(ascii: "-") || (c.peek() >= 0x30 && c.peek() <= 0x39) else { throw .badField(field) }
            let number = try parseNumber(&c)
            guard number.isInteger, let integer = number.integer, integer >= 0, integer <= 86_400_000 else { throw .badField(field) }
            if wins {
                fieldPriority[field.rawValue] = priority
                event.dwellMs = integer
            }
        case .value:
            guard c.peek() == UInt8(ascii: "-") || (c.peek() >= 0x30 && c.peek() <= 0x39) else { throw .badField(field) }
            let number = try parseNumber(&c)
            guard let micros = number.micros else { throw .badField(field) }
            if wins {
                fieldPriority[field.rawValue] = priority
                event.valueMicros = micros
            }
        }
    }

    /// A JSON number's value as an integer and/or in millionths.
    private struct Number {
        var isInteger: Bool
        var integer: Int64?
        var micros: Int64?
    }

    private func parseNumber(_ c: inout Cursor) throws(RejectReason) -> Number {
        var negative = false
        if c.peek() == UInt8(ascii: "-") {
            negative = true
            c.i += 1
        }
        // Mantissa digits (up to 18 significant), decimal exponent.
        var mantissa: Int64 = 0
        var exponent = 0
        var digits = 0
        var overflow = false
        let intStart = c.i
        while c.i < c.count, c.base[c.i] >= 0x30, c.base[c.i] <= 0x39 {
            if digits < 18 {
                mantissa = mantissa * 10 + Int64(c.base[c.i] - 0x30)
                if mantissa > 0 { digits += 1 }
            } else {
                exponent += 1
                overflow = true
            }
            c.i += 1
        }
        let intDigits = c.i - intStart
        guard intDigits > 0, !(intDigits > 1 && c.base[intStart] == 0x30) else { throw .malformedJSON }
        var isInteger = true
        if c.peek() == UInt8(ascii: ".") {
            isInteger = false
            c.i += 1
            let fracStart = c.i
            while c.i < c.count, c.base[c.i] >= 0x30, c.base[c.i] <= 0x39 {
                if digits < 18 {
                    mantissa = mantissa * 10 + Int64(c.base[c.i] - 0x30)
                    if mantissa > 0 { digits += 1 }
                    exponent -= 1
                }
                c.i += 1
            }
            guard c.i > fracStart else { throw .malformedJSON }
        }
        if c.peek() == UInt8(ascii: "e") || c.peek() == UInt8(ascii: "E") {
            isInteger = false
            c.i += 1
            var expNegative = false
            if c.peek() == UInt8(ascii: "+") || c.peek() == UInt8(ascii: "-") {
                expNegative = c.peek() == UInt8(ascii: "-")
                c.i += 1
            }
            var value = 0
            let expStart = c.i
            while c.i < c.count, c.base[c.i] >= 0x30, c.base[c.i] <= 0x39 {
                value = min(value * 10 + Int(c.base[c.i] - 0x30), 10_000)
                c.i += 1
            }
            guard c.i > expStart else { throw .malformedJSON }
            exponent += expNegative ? -value : value
        }
        func scaled(_ shift: Int) -> Int64? {
            // mantissa × 10^(exponent + shift), exactly, if it fits (truncating extra fraction).
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
        let integer = isInteger && !overflow ? scaled(0) : nil
        let micros = scaled(6).flatMap { abs($0) <= 1_000_000_000_000_000 ? $0 : nil }
        return Number(isInteger: isInteger && !overflow, integer: integer, micros: micros)
    }

    /// Parses a JSON string into scratch (unescaped, UTF-8 validated).
    private func parseString(_ c: inout Cursor) throws(RejectReason) -> ByteRef {
        guard c.i < c.count, c.base[c.i] == UInt8(ascii: "\"") else { throw .malformedJSON }
        c.i += 1
        let start = scratchUsed
        var sawHighBit = false
        while true {
            // Copy a run of plain bytes at once.
            let runStart = c.i
            while c.i < c.count {
                let byte = c.base[c.i]
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
                if byte >= 0x80 { sawHighBit = true }
                c.i += 1
            }
            let run = c.i - runStart
            guard scratchUsed + run + 4 <= scratchCapacity else { throw .tooLarge }
            (scratch + scratchUsed).update(from: c.base + runStart, count: run)
            scratchUsed += run
            guard c.i < c.count else { throw .malformedJSON }
            let byte = c.base[c.i]
            c.i += 1
            if byte == UInt8(ascii: "\"") { break }
            guard byte == UInt8(ascii: "\\"), c.i < c.count else { throw .malformedJSON }
            let escape = c.base[c.i]
            c.i += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): append(escape)
            case UInt8(ascii: "b"): append(0x08)
            case UInt8(ascii: "f"): append(0x0c)
            case UInt8(ascii: "n"): append(0x0a)
            case UInt8(ascii: "r"): append(0x0d)
            case UInt8(ascii: "t"): append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(&c)
                if (0xD800...0xDBFF).contains(scalar) {
                    guard c.count - c.i >= 6, c.base[c.i] == UInt8(ascii: "\\"), c.base[c.i + 1] == UInt8(ascii: "u") else { throw .invalidUTF8 }
                    c.i += 2
                    let low = try hex4(&c)
                    guard (0xDC00...0xDFFF).contains(low) else { throw .invalidUTF8 }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw .invalidUTF8
                }
                appendUTF8(scalar)
            default:
                throw .malformedJSON
            }
        }
        let ref = ByteRef(start: Int32(start), count: Int32(scratchUsed - start))
        if sawHighBit, !EventDecoder.isValidUTF8(bytes(ref)) { throw .invalidUTF8 }
        return ref
    }

    @inline(__always) private func append(_ byte: UInt8) {
        scratch[scratchUsed] = byte
        scratchUsed += 1
    }

    private func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case ..<0x80: append(UInt8(scalar))
        case ..<0x800:
            append(UInt8(0xC0 | (scalar >> 6)))
            append(UInt8(0x80 | (scalar & 0x3F)))
        case ..<0x10000:
            append(UInt8(0xE0 | (scalar >> 12)))
            append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            append(UInt8(0x80 | (scalar & 0x3F)))
        default:
            append(UInt8(0xF0 | (scalar >> 18)))
            append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
            append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
            append(UInt8(0x80 | (scalar & 0x3F)))
        }
    }

    private func hex4(_ c: inout Cursor) throws(RejectReason) -> UInt32 {
        guard c.count - c.i >= 4 else { throw .malformedJSON }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = c.base[c.i]
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x41...0x46: digit = byte - 0x41 + 10
            case 0x61...0x66: digit = byte - 0x61 + 10
            default: throw .malformedJSON
            }
            value = value << 4 | UInt32(digit)
            c.i += 1
        }
        return value
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

    /// Skips any JSON value, checking its syntax and nesting depth.
    private func skipValue(_ c: inout Cursor, depth: Int) throws(RejectReason) {
        c.skipWhitespace()
        guard c.i < c.count else { throw .malformedJSON }
        switch c.base[c.i] {
        case UInt8(ascii: "{"):
            guard depth + 1 <= limits.maxDepth else { throw .tooDeep }
            c.i += 1
            c.skipWhitespace()
            if c.peek() == UInt8(ascii: "}") {
                c.i += 1
                return
            }
            while true {
                c.skipWhitespace()
                let mark = scratchUsed
                _ = try parseString(&c)
                scratchUsed = mark
                try c.expect(UInt8(ascii: ":"))
                try skipValue(&c, depth: depth + 1)
                c.skipWhitespace()
                guard c.i < c.count else { throw .malformedJSON }
                let next = c.base[c.i]
                c.i += 1
                if next == UInt8(ascii: "}") { return }
                guard next == UInt8(ascii: ",") else { throw .malformedJSON }
            }
        case UInt8(ascii: "["):
            guard depth + 1 <= limits.maxDepth else { throw .tooDeep }
            c.i += 1
            c.skipWhitespace()
            if c.peek() == UInt8(ascii: "]") {
                c.i += 1
                return
            }
            while true {
                try skipValue(&c, depth: depth + 1)
                c.skipWhitespace()
                guard c.i < c.count else { throw .malformedJSON }
                let next = c.base[c.i]
                c.i += 1
                if next == UInt8(ascii: "]") { return }
                guard next == UInt8(ascii: ",") else { throw .malformedJSON }
            }
        case UInt8(ascii: "\""):
            let mark = scratchUsed
            _ = try parseString(&c)
            scratchUsed = mark
        case UInt8(ascii: "t"): try c.literal("true")
        case UInt8(ascii: "f"): try c.literal("false")
        case UInt8(ascii: "n"): try c.literal("null")
        default: _ = try parseNumber(&c)
        }
    }
}

extension Int {
    var nextPowerOfTwo: Int {
        var value = 1
        while value < self { value <<= 1 }
        return value
    }
}
