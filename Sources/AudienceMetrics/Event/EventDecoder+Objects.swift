// The event decoder's objects: keys matched against the input mapping's trie, the
// contract's fields, attributes, and values skipped.

extension EventDecoder {
    /// Parses the object whose `{` the cursor is at (every caller has looked).
    func parseObject(_ c: inout JSONCursor, _ state: inout ParseState, node: Int?, attributeMode: Bool, pathLength: Int, depth: Int) throws(RejectReason) {
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
    func childIndex(of node: Int, key: ByteRef) -> Int? {
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
    static func equal(_ bytes: [UInt8], _ pointer: UnsafePointer<UInt8>, _ count: Int) -> Bool {
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
            setString(value, of: field, priority: priority, &state)
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

    /// Sets string field `field` (an id, the type, the content or the session) to `value`,
    /// checked already, as the key of mapping priority `priority` says.
    @inline(__always)
    func setString(_ value: ByteRef, of field: EventField, priority: Int, _ state: inout ParseState) {
        state.setPriority(priority, of: field)
        switch field {
        case .eventID: state.event.eventID = value
        case .type: state.event.type = value
        case .userID: state.event.userID = value
        case .contentID: state.event.contentID = value
        default: state.event.sessionIDHash = hash(value)
        }
    }

    /// Skips any JSON value, checking its syntax and nesting depth.
    func skipValue(_ c: inout JSONCursor, _ state: inout ParseState, depth: Int) throws(RejectReason) {
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
