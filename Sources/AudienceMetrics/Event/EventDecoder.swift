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

    let scratch: UnsafeMutablePointer<UInt8>
    let scratchCapacity: Int
    let path: UnsafeMutablePointer<UInt8>
    let pathCapacity = 1024
    let slotValues: UnsafeMutablePointer<ByteRef>
    let slotHashes: UnsafeMutablePointer<UInt64>
    let slotCount: Int
    let slotNameBytes: [[UInt8]]
    let slotNamePrefixes: [UInt64]
    private let knownTypeBytes: [[UInt8]]
    private let knownTypePrefixes: [UInt64]
    private let aliases: [(fromBytes: [UInt8], to: [UInt8])]
    let trie: KeyTrie
    /// Learned message shapes, most recently matched first (``decodeAlongShapes(count:_:)``).
    var shapes: [MessageShape] = []
    /// How many shapes are kept (0: none learned, every message parsed in full).
    let shapeCapacity: Int
    /// Messages in a row that matched no shape's structure.
    var shapeMisses = 0

    /// What changes while one message is parsed; kept in a local value so the hot loop
    /// works on registers and the stack, not on the object.
    struct ParseState {
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
    ///   - shapes: how many message shapes to learn and match first (0: parse every
    ///     message in full); the results are the same either way.
    public init(mapping: InputMapping = .contract, limits: EventLimits = EventLimits(), attributeNames: [String] = [], shapes: Int = 4) {
        self.mapping = mapping
        shapeCapacity = max(0, shapes)
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
        for shape in shapes { shape.deallocate() }
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
        if !shapes.isEmpty, decodeAlongShapes(count: bytes.count, &state) {
            event = state.event
            return
        } else if shapes.isEmpty {
            shapeMisses += 1
        }
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
        if shouldLearnShape { learnShape(count: bytes.count) }
    }

    func finish(_ state: inout ParseState) throws(RejectReason) {
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

    /// The slot of the attribute named `name`, or -1 when no segment refers to it.
    func slot(named name: [UInt8]) -> Int {
        slotNameBytes.firstIndex(of: name) ?? -1
    }

    private func store(_ value: [UInt8], _ state: inout ParseState) -> ByteRef {
        let start = state.scratchUsed
        let n = min(value.count, scratchCapacity - start)
        for index in 0..<n { scratch[start + index] = value[index] }
        state.scratchUsed += n
        return ByteRef(start: Int32(start), count: Int32(n))
    }
}
