/// An open-addressing hash map keyed by 64-bit hashes (user ids, event ids, segment
/// keys), which are already well mixed: the key's own bits pick the slot, so lookups
/// hash nothing. Linear probing, backward-shift deletion, at most 80 % full.
///
/// Memory: (8 + stride of `Value`) bytes per slot; for 1 M users with 32-byte states,
/// 40–80 bytes per user depending on where the table is between growths.
public struct HashMap64<Value>: @unchecked Sendable {
    // @unchecked: a value type whose storage is arrays of `Value`; sendable exactly when
    // `Value` is (all uses in this module store Sendable values).
    private var keys: [UInt64]
    private var values: [Value]
    private let vacant: Value
    public private(set) var count = 0

    /// - Parameter vacant: the value stored in empty slots (never returned).
    public init(vacant: Value, capacity: Int = 16) {
        self.vacant = vacant
        let size = HashMap64.slots(for: capacity)
        keys = Array(repeating: 0, count: size)
        values = Array(repeating: vacant, count: size)
    }

    /// Slots for `capacity` entries: a power of two, at most 80 % full.
    private static func slots(for capacity: Int) -> Int { max(16, (capacity * 5 / 4 + 1).nextPowerOfTwo) }

    /// 0 marks an empty slot; the key 0 is stored as this instead.
    @inline(__always) private static func stored(_ key: UInt64) -> UInt64 { key == 0 ? 0x9E37_79B9_7F4A_7C15 : key }

    @inline(__always) private func slot(of key: UInt64) -> (index: Int, found: Bool) {
        let mask = keys.count - 1
        var index = Int(truncatingIfNeeded: key ^ (key >> 29)) & mask
        while true {
            let current = keys[index]
            if current == key { return (index, true) }
            if current == 0 { return (index, false) }
            index = (index + 1) & mask
        }
    }

    public subscript(key: UInt64) -> Value? {
        get {
            let (index, found) = slot(of: HashMap64.stored(key))
            return found ? values[index] : nil
        }
        set {
            if let newValue {
                update(key, default: newValue) { $0 = newValue }
            } else {
                remove(key)
            }
        }
    }

    /// Runs `body` on the value for `key`, inserting `initial` first if absent; returns
    /// what `body` returns. One probe sequence, no copy of the value.
    @inline(__always)
    public mutating func update<R>(_ key: UInt64, default initial: @autoclosure () -> Value, _ body: (inout Value) -> R) -> R {
        let storedKey = HashMap64.stored(key)
        var (index, found) = slot(of: storedKey)
        if !found {
            if (count + 1) * 5 > keys.count * 4 {
                grow()
                index = slot(of: storedKey).index
            }
            keys[index] = storedKey
            values[index] = initial()
            count += 1
        }
        return body(&values[index])
    }

    /// Whether `key` is present.
    @inline(__always) public func contains(_ key: UInt64) -> Bool { slot(of: HashMap64.stored(key)).found }

    @discardableResult
    public mutating func remove(_ key: UInt64) -> Value? {
        let (found, index) = { let s = slot(of: HashMap64.stored(key)); return (s.found, s.index) }()
        guard found else { return nil }
        let removed = values[index]
        deleteSlot(index)
        return removed
    }

    private mutating func deleteSlot(_ start: Int) {
        // Backward-shift: move later entries of the probe run into the hole.
        let mask = keys.count - 1
        var hole = start
        var index = (start + 1) & mask
        while keys[index] != 0 {
            let key = keys[index]
            let home = Int(truncatingIfNeeded: key ^ (key >> 29)) & mask
            // Move if the hole lies cyclically between the entry's home slot and its slot.
            let distanceToHole = (hole - home) & mask
            let distanceToIndex = (index - home) & mask
            if distanceToHole < distanceToIndex {
                keys[hole] = key
                values[hole] = values[index]
                hole = index
            }
            index = (index + 1) & mask
        }
        keys[hole] = 0
        values[hole] = vacant
        count -= 1
    }

    private mutating func grow() {
        rehash(size: keys.count * 2)
    }

    private mutating func rehash(size: Int) {
        let oldKeys = keys
        let oldValues = values
        keys = Array(repeating: 0, count: size)
        values = Array(repeating: vacant, count: size)
        for index in oldKeys.indices where oldKeys[index] != 0 {
            let (slot, _) = slot(of: oldKeys[index])
            keys[slot] = oldKeys[index]
            values[slot] = oldValues[index]
        }
    }

    /// Removes every entry for which `shouldRemove` is true, in place: no second table
    /// while it runs (pruning a large table used to build a new one next to it). Shrinks
    /// afterwards if under an eighth full.
    public mutating func removeAll(where shouldRemove: (UInt64, Value) -> Bool) {
        // Start after an empty slot (there is one: at most 80 % full), so no probe run
        // crosses the start. A deletion shifts later entries of its run back, the first
        // of them into the slot just examined, which is therefore examined again; the
        // shift stops at an empty slot, so it never reaches a slot already passed.
        guard count > 0, let empty = keys.firstIndex(of: 0) else { return }
        let mask = keys.count - 1
        var index = (empty + 1) & mask
        var remaining = keys.count - 1
        while remaining > 0 {
            let key = keys[index]
            if key != 0 && shouldRemove(key, values[index]) {
                deleteSlot(index)
                continue
            }
            index = (index + 1) & mask
            remaining -= 1
        }
        if keys.count > 16 && count * 8 < keys.count { rehash(size: HashMap64.slots(for: count)) }
    }

    /// All entries, in no particular order (keys as stored: 0 appears as its stand-in).
    public var entries: [(key: UInt64, value: Value)] {
        keys.indices.compactMap { keys[$0] != 0 ? (keys[$0], values[$0]) : nil }
    }

    /// Heap bytes held.
    public var memoryBytes: Int { keys.capacity * 8 + values.capacity * MemoryLayout<Value>.stride }
}
