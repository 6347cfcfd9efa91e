// The event decoder's learned shapes: a producer writes its events the same way every
// time — the same keys in the same order, the same spacing — and only the values change.
// After the general parser accepts a message, the decoder records its shape: the bytes
// between the values and what each value sets. A later message is first matched against
// the shapes it knows: each stretch of bytes between values compared a word at a time,
// each value scanned and checked as the general parser would. Anything else (another
// key, another order, another kind of value, an escape, a limit) falls back to the
// general parser, which gives the result, or the rejection, it always gives.

extension EventDecoder {
    /// What a value of a shape sets.
    enum ShapeTarget: Equatable {
        /// A contract field, with the mapping priority of the key that sets it.
        case field(EventField, priority: Int)
        /// An attribute: its slot, or -1 when no segment refers to it (still counted and checked).
        case attribute(slot: Int)
        /// A member the mapping does not know: checked, not kept.
        case skip
    }

    /// One value of a shape: the bytes that come before it (from the end of the previous
    /// value; a string's opening quote included), then the value.
    struct ShapeStep {
        var literalStart: Int
        var literalCount: Int
        var isString: Bool
        var target: ShapeTarget
    }

    /// A learned message shape. Its literal bytes have eight spare bytes after them, so
    /// that the last word of a stretch is read whole and masked.
    struct MessageShape {
        let literals: UnsafeMutablePointer<UInt8>
        let steps: UnsafeMutableBufferPointer<ShapeStep>
        /// The bytes after the last value, up to the closing brace.
        let tailStart: Int
        let tailCount: Int

        func deallocate() {
            literals.deallocate()
            steps.deallocate()
        }
    }

    /// Why a message did not decode along a shape.
    enum ShapeMiss: Error {
        /// Its bytes differ from the shape's (another key, order, spacing or kind of value).
        case structure
        /// It has the shape, but a value needs the general parser (an escape, a value a
        /// field refuses, a limit): a new shape would not help.
        case value
    }

    // MARK: Decoding along a shape

    /// Decodes the message at the start of scratch memory along the learned shapes, most
    /// recently matched first; true if one of them decoded it (the result is then in
    /// `state` and the attribute slots).
    @inline(__always)
    func decodeAlongShapes(count: Int, _ state: inout ParseState) -> Bool {
        var structural = true
        for index in shapes.indices {
            do throws(ShapeMiss) {
                try decode(along: shapes[index], count: count, &state)
                if index > 0 { shapes.swapAt(0, index) }
                shapeMisses = 0
                return true
            } catch {
                if error == .value { structural = false }
                state = ParseState()
                state.scratchUsed = count
                for slot in 0..<slotCount {
                    slotValues[slot] = .absent
                    slotHashes[slot] = 0
                }
            }
        }
        if structural { shapeMisses += 1 }
        return false
    }

    /// Whether to learn the shape of a message the general parser just accepted: after
    /// every shape missed its structure (none yet, or another producer's); when shapes
    /// keep missing (every message shaped differently), only now and then.
    var shouldLearnShape: Bool {
        shapeCapacity > 0 && shapeMisses > 0 && (shapeMisses <= 16 || shapeMisses % 256 == 0)
    }

    @inline(__always)
    private func decode(along shape: MessageShape, count: Int, _ state: inout ParseState) throws(ShapeMiss) {
        let base = UnsafePointer(scratch)
        var i = 0
        for step in shape.steps {
            guard count - i >= step.literalCount, Self.sameBytes(base + i, shape.literals + step.literalStart, step.literalCount) else {
                throw .structure
            }
            i += step.literalCount
            let value: ByteRef
            var number: JSONNumber?
            if step.isString {
                value = try scanString(base, count: count, from: &i)
            } else {
                var cursor = JSONCursor(base: base, count: count, i: i)
                do throws(RejectReason) {
                    number = try cursor.number()
                } catch {
                    throw .structure
                }
                value = ByteRef(start: Int32(i), count: Int32(cursor.i - i))
                i = cursor.i
            }
            try apply(step.target, value: value, number: number, &state)
        }
        guard count - i >= shape.tailCount, Self.sameBytes(base + i, shape.literals + shape.tailStart, shape.tailCount) else { throw .structure }
        var cursor = JSONCursor(base: base, count: count, i: i + shape.tailCount)
        cursor.skipWhitespace()
        guard cursor.isAtEnd else { throw .structure }
        do throws(RejectReason) {
            try finish(&state)
        } catch {
            throw .value
        }
    }

    /// A string value without escapes whose opening quote the shape matched: its bytes,
    /// UTF-8 checked; the cursor stops at the closing quote (the next stretch starts there).
    @inline(__always)
    private func scanString(_ base: UnsafePointer<UInt8>, count: Int, from i: inout Int) throws(ShapeMiss) -> ByteRef {
        let begin = i
        var highBits: UInt64 = 0
        // Scratch memory has eight spare bytes after the message: whole words are read,
        // and a special byte found past the end is not taken.
        while true {
            guard i < count else { throw .structure }
            let word = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
            let special = JSONCursor.specialBytes(word)
            if special != 0 {
                let ordinary = special.trailingZeroBitCount & ~7
                highBits |= word & ((1 << UInt64(ordinary)) &- 1)
                i += ordinary >> 3
                break
            }
            highBits |= word
            i += 8
        }
        guard i < count else { throw .structure }
        // An escape or a control byte: the general parser decides.
        guard base[i] == UInt8(ascii: "\"") else { throw .value }
        // Bytes of the word past the message's end are not part of the string.
        let ref = ByteRef(start: Int32(begin), count: Int32(i - begin))
        if highBits & 0x8080_8080_8080_8080 != 0, !JSONCursor.isValidUTF8(bytes(ref)) { throw .value }
        return ref
    }

    /// Sets what `target` sets, with the general parser's checks; a value it would refuse,
    /// or one it would not set, is left to it.
    @inline(__always)
    private func apply(_ target: ShapeTarget, value: ByteRef, number: JSONNumber?, _ state: inout ParseState) throws(ShapeMiss) {
        switch target {
        case .skip:
            return
        case .attribute(let slot):
            guard value.count <= Int32(limits.maxStringBytes) else { throw .value }
            state.attributeCount += 1
            guard state.attributeCount <= limits.maxAttributes else { throw .value }
            if slot >= 0 {
                slotValues[slot] = value
                slotHashes[slot] = hash(value)
            }
        case .field(let field, let priority):
            switch field {
            case .eventID, .type, .userID, .contentID, .sessionID:
                // Numeric ids keep their text; other fields take strings only (the shape
                // says which kind, as the message it was learned from had).
                guard value.count > 0, value.count <= Int32(limits.maxStringBytes) else { throw .value }
                setString(value, of: field, priority: priority, &state)
            case .timestamp:
                let millis: Int64
                if let number {
                    guard let integer = number.integer else { throw .value }
                    millis = integer
                } else {
                    guard let parsed = Timestamp.parseRFC3339(bytes(value)) else { throw .value }
                    millis = parsed
                }
                guard Timestamp.validRange.contains(millis) else { throw .value }
                state.setPriority(priority, of: field)
                state.event.timestamp = millis
            case .dwellMs:
                guard let integer = number?.integer, integer >= 0, integer <= 86_400_000 else { throw .value }
                state.setPriority(priority, of: field)
                state.event.dwellMs = integer
            case .value:
                guard let micros = number?.micros else { throw .value }
                state.setPriority(priority, of: field)
                state.event.valueMicros = micros
            }
        }
    }

    /// Whether the `count` bytes at `a` and `b` are equal; both have at least eight bytes
    /// readable from any position before `count`.
    @inline(__always)
    static func sameBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        var k = 0
        while count - k >= 8 {
            guard UnsafeRawPointer(a + k).loadUnaligned(as: UInt64.self) == UnsafeRawPointer(b + k).loadUnaligned(as: UInt64.self) else { return false }
            k += 8
        }
        guard k < count else { return true }
        let mask: UInt64 = (1 << UInt64(8 * (count - k))) &- 1
        let x = UInt64(littleEndian: UnsafeRawPointer(a + k).loadUnaligned(as: UInt64.self))
        let y = UInt64(littleEndian: UnsafeRawPointer(b + k).loadUnaligned(as: UInt64.self))
        return (x ^ y) & mask == 0
    }

    // MARK: Learning a shape

    /// Learns the shape of the message of `count` bytes at the start of scratch memory,
    /// which the general parser has just accepted, if it is one a shape can follow: an
    /// object of scalar members and attribute-source objects of scalar attributes, no key
    /// with an escape, no field set twice, no attribute named twice. The least recently
    /// matched shape makes room.
    func learnShape(count: Int) {
        guard let shape = Self.shape(of: UnsafePointer(scratch), count: count, decoder: self) else { return }
        if shapes.count >= shapeCapacity, let last = shapes.popLast() { last.deallocate() }
        shapes.insert(shape, at: 0)
    }

    private static func shape(of base: UnsafePointer<UInt8>, count: Int, decoder: EventDecoder) -> MessageShape? {
        var learner = ShapeLearner(base: base, count: count, decoder: decoder)
        guard learner.learn() else { return nil }
        let literals = UnsafeMutablePointer<UInt8>.allocate(capacity: learner.literals.count + 8)
        literals.initialize(repeating: 0, count: learner.literals.count + 8)
        literals.update(from: learner.literals, count: learner.literals.count)
        let steps = UnsafeMutableBufferPointer<ShapeStep>.allocate(capacity: learner.steps.count)
        _ = steps.initialize(from: learner.steps)
        return MessageShape(literals: literals, steps: steps, tailStart: learner.tailStart, tailCount: learner.tailCount)
    }
}

/// Walks an accepted message as the general parser does, recording the bytes between
/// its values and what each value sets; gives up on anything a shape does not follow.
private struct ShapeLearner {
    let base: UnsafePointer<UInt8>
    let count: Int
    let decoder: EventDecoder
    var i = 0
    /// Where the current stretch of bytes between values began.
    var stretchStart = 0
    var literals: [UInt8] = []
    var steps: [EventDecoder.ShapeStep] = []
    var tailStart = 0
    var tailCount = 0
    var fieldsSet: UInt64 = 0
    var attributeNames: Set<[UInt8]> = []

    init(base: UnsafePointer<UInt8>, count: Int, decoder: EventDecoder) {
        self.base = base
        self.count = count
        self.decoder = decoder
    }

    mutating func learn() -> Bool {
        skipWhitespace()
        guard peek() == UInt8(ascii: "{") else { return false }
        i += 1
        guard members(node: 0, attributes: false) else { return false }
        tailStart = literals.count
        tailCount = i - stretchStart
        literals.append(contentsOf: UnsafeBufferPointer(start: base + stretchStart, count: tailCount))
        return true
    }

    private func peek() -> UInt8 { i < count ? base[i] : 0 }

    private mutating func skipWhitespace() {
        while i < count, base[i] == 0x20 || base[i] == 0x0a || base[i] == 0x0d || base[i] == 0x09 { i += 1 }
    }

    /// The members of the object whose `{` was just passed, through its `}`.
    private mutating func members(node: Int, attributes: Bool) -> Bool {
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            i += 1
            return true
        }
        let trie = decoder.trie
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { return false }
            let keyStart = i + 1
            var keyEnd = keyStart
            while keyEnd < count, base[keyEnd] != UInt8(ascii: "\"") {
                guard base[keyEnd] != UInt8(ascii: "\\") else { return false }
                keyEnd += 1
            }
            guard keyEnd < count else { return false }
            i = keyEnd + 1
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { return false }
            i += 1
            skipWhitespace()
            let key = ByteRef(start: Int32(keyStart), count: Int32(keyEnd - keyStart))
            let child = decoder.childIndex(of: node, key: key).map { trie.children[$0].node }
            if attributes {
                // Attributes only: a key the mapping knows inside an attribute source, or
                // a nested attribute, is left to the general parser.
                guard child == nil else { return false }
                let name = Array(UnsafeBufferPointer(start: base + keyStart, count: keyEnd - keyStart))
                guard attributeNames.insert(name).inserted else { return false }
                guard value(.attribute(slot: decoder.slot(named: name))) else { return false }
            } else if let child, let field = trie.nodes[child].field {
                let bit: UInt64 = 1 << UInt64(field.rawValue)
                guard fieldsSet & bit == 0 else { return false }
                fieldsSet |= bit
                guard value(.field(field, priority: trie.nodes[child].priority)) else { return false }
            } else if let child, peek() == UInt8(ascii: "{"), trie.nodes[child].hasChildren || trie.nodes[child].attributeSource {
                guard trie.nodes[child].attributeSource, node == 0 else { return false }
                i += 1
                guard members(node: child, attributes: true) else { return false }
            } else if let child, trie.nodes[child].attributeSource {
                return false
            } else {
                guard value(.skip) else { return false }
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"):
                i += 1
                return true
            default: return false
            }
        }
    }

    /// A string or number value for `target`: the stretch before it becomes a step.
    private mutating func value(_ target: EventDecoder.ShapeTarget) -> Bool {
        let isString = peek() == UInt8(ascii: "\"")
        guard isString || peek() == UInt8(ascii: "-") || (peek() >= 0x30 && peek() <= 0x39) else { return false }
        if isString { i += 1 }
        steps.append(EventDecoder.ShapeStep(literalStart: literals.count, literalCount: i - stretchStart, isString: isString, target: target))
        literals.append(contentsOf: UnsafeBufferPointer(start: base + stretchStart, count: i - stretchStart))
        if isString {
            // Accepted already: escapes are well formed; the closing quote starts the next stretch.
            while i < count, base[i] != UInt8(ascii: "\"") { i += base[i] == UInt8(ascii: "\\") ? 2 : 1 }
            guard i < count else { return false }
            stretchStart = i
            i += 1
            return true
        } else {
            var cursor = JSONCursor(base: base, count: count, i: i)
            do throws(RejectReason) {
                _ = try cursor.number()
            } catch {
                return false
            }
            i = cursor.i
        }
        stretchStart = i
        return true
    }
}
