import CPrefetch

/// An open-addressing hash map keyed by 64-bit hashes (user ids, event ids, segment
/// keys). Linear probing, backward-shift deletion, at most 80 % full.
///
/// A slot holds its key and its value side by side, so a lookup in a table larger than
/// the caches (event ids, users) waits for one cache line, not for one line of keys and
/// then another of values.
///
/// The table may have any number of slots: a key's home slot is the high half of
/// (key × odd constant) × slot count, which spreads well-mixed hashes and small integers
/// alike, and needs no power-of-two size. So the table grows by half, not by doubling:
/// between growths it is 53–80 % full rather than 40–80 %, and a growth holds 2.5 times
/// the old table at once rather than 3 times.
///
/// Memory: the stride of a (`UInt64`, `Value`) pair per slot; for users with 16-byte
/// states, 30–45 bytes per user depending on where the table is between growths.
public struct HashMap64<Value>: @unchecked Sendable {
    // @unchecked: a value type whose storage is an array holding `Value`s; sendable
    // exactly when `Value` is (all uses in this module store Sendable values).
    private struct Slot {
        /// 0: the slot is empty.
        var key: UInt64
        var value: Value
    }
    private var table: [Slot]
    private let vacant: Value
    public private(set) var count = 0

    /// - Parameter vacant: the value stored in empty slots (never returned).
    public init(vacant: Value, capacity: Int = 16) {
        self.vacant = vacant
        table = Array(repeating: Slot(key: 0, value: vacant), count: HashMap64.slots(for: capacity))
    }

    /// Slots for `capacity` entries: two thirds full, so that a table restored at its size
    /// takes a fifth more entries before it grows.
    private static func slots(for capacity: Int) -> Int { max(16, capacity + capacity / 2 + 1) }

    /// 0 marks an empty slot; the key 0 is stored as ``zeroStandIn`` instead.
    @inline(__always) private static func stored(_ key: UInt64) -> UInt64 { key == 0 ? zeroStandIn : key }

    /// The key 0's stored form. Any non-zero value serves; the key that is this value
    /// itself shares the entry with 0 (keys are 64-bit hashes: a chance of 2⁻⁶⁴ per key).
    @inline(__always) private static var zeroStandIn: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    /// An odd multiplier (2⁶⁴ / golden ratio) that carries every bit of a key into the
    /// product's high bits, which pick the home slot.
    @inline(__always) private static var spread: UInt64 { 0x9E37_79B9_7F4A_7C15 }
    /// A cache line's size: 64 bytes on x86-64, where the next-line prefetch was measured.
    @inline(__always) private static var cacheLineBytes: Int { 64 }

    /// The slot where `key`'s probe run starts in a table of `slots` slots (a stored key).
    @inline(__always) private static func home(of key: UInt64, slots: Int) -> Int {
        Int(truncatingIfNeeded: (key &* spread).multipliedFullWidth(by: UInt64(truncatingIfNeeded: slots)).high)
    }

    /// The slot where `key`'s probe run starts now (for tests of the layout: nothing
    /// else depends on it).
    func homeSlot(of key: UInt64) -> Int { HashMap64.home(of: HashMap64.stored(key), slots: table.count) }

    /// Slots in the table now (for tests of growth and of the index sizes built on it).
    var slotCount: Int { table.count }

    @inline(__always) private static func next(_ index: Int, slots: Int) -> Int {
        index + 1 == slots ? 0 : index + 1
    }

    /// How many slots on from `from` `to` lies, going forward around the table's end.
    @inline(__always) private static func distance(from: Int, to: Int, slots: Int) -> Int {
        to >= from ? to - from : to - from + slots
    }

    @inline(__always) private func slot(of key: UInt64) -> (index: Int, found: Bool) {
        table.withUnsafeBufferPointer { HashMap64.slot(of: key, in: $0) }
    }

    /// Where `key` (stored form) is in `table`, or the first empty slot of its probe run.
    @inline(__always) private static func slot(of key: UInt64, in table: UnsafeBufferPointer<Slot>) -> (index: Int, found: Bool) {
        let slots = table.count
        var index = home(of: key, slots: slots)
        while true {
            let current = table[index].key
            if current == key { return (index, true) }
            if current == 0 { return (index, false) }
            index = next(index, slots: slots)
        }
    }

    public subscript(key: UInt64) -> Value? {
        get {
            let (index, found) = slot(of: HashMap64.stored(key))
            return found ? table[index].value : nil
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
            if (count + 1) * 5 > table.count * 4 {
                grow()
                index = slot(of: storedKey).index
            }
            table[index] = Slot(key: storedKey, value: initial())
            count += 1
        }
        return body(&table[index].value)
    }

    /// Starts loading `key`'s home slot into the cache, and the cache line after it, for a
    /// lookup of it soon (a hint: nothing changes). Worth it where the table is larger than
    /// the caches and other work can run meanwhile. A probe often runs on past the home
    /// slot's line: the table is 53–80 % full, where a key that is not there takes about 3
    /// to 13 slots to reach an empty one (linear probing; Knuth's estimate). Measured on
    /// the per-user tables (docs/benchmarks-log.md, "Midday (2026-12-02)"). Mutating only
    /// so that reaching the storage costs a uniqueness check, not a retain and a release
    /// (callers update the key next anyway).
    @inline(__always)
    public mutating func prefetch(_ key: UInt64) {
        table.withUnsafeMutableBufferPointer { table in
            guard let base = table.baseAddress else { return }
            let home = UnsafeRawPointer(base + HashMap64.home(of: HashMap64.stored(key), slots: table.count))
            pulse_prefetch_for_write(home)
            let nextLine = home + HashMap64.cacheLineBytes
            if nextLine < UnsafeRawPointer(base + table.count) { pulse_prefetch_for_write(nextLine) }
        }
    }

    /// Whether `key` is present.
    @inline(__always) public func contains(_ key: UInt64) -> Bool { slot(of: HashMap64.stored(key)).found }

    @discardableResult
    public mutating func remove(_ key: UInt64) -> Value? {
        let (index, found) = slot(of: HashMap64.stored(key))
        guard found else { return nil }
        let removed = table[index].value
        deleteSlot(index)
        return removed
    }

    private mutating func deleteSlot(_ start: Int) {
        // Backward-shift: move later entries of the probe run into the hole.
        let slots = table.count
        var hole = start
        var index = HashMap64.next(start, slots: slots)
        while table[index].key != 0 {
            let home = HashMap64.home(of: table[index].key, slots: slots)
            // Move if the hole lies cyclically between the entry's home slot and its slot.
            if HashMap64.distance(from: home, to: hole, slots: slots) < HashMap64.distance(from: home, to: index, slots: slots) {
                table[hole] = table[index]
                hole = index
            }
            index = HashMap64.next(index, slots: slots)
        }
        table[hole] = Slot(key: 0, value: vacant)
        count -= 1
    }

    private mutating func grow() {
        rehash(size: table.count + table.count / 2)
    }

    /// Makes the table at least `slots` slots now. Tables grow on their own as entries
    /// arrive; this is for one kept sparser than that (probes for absent keys, which run
    /// to an empty slot, stay short), such as a top-content summary's index.
    public mutating func reserve(slots: Int) {
        if slots > table.count { rehash(size: slots) }
    }

    /// Empties the table in place, keeping its slots: for one refilled at once soon after.
    public mutating func removeAllKeepingSlots() {
        let empty = Slot(key: 0, value: vacant)
        table.withUnsafeMutableBufferPointer { $0.update(repeating: empty) }
        count = 0
    }

    private mutating func rehash(size: Int) {
        let old = table
        table = Array(repeating: Slot(key: 0, value: vacant), count: size)
        for entry in old where entry.key != 0 {
            table[slot(of: entry.key).index] = entry
        }
    }

    /// Removes every entry for which `shouldRemove` is true, in place: no second table
    /// while it runs (pruning a large table used to build a new one next to it). Shrinks
    /// afterwards if under an eighth full.
    ///
    /// One pass over the slots, starting after an empty one: a removed entry's slot is
    /// emptied, and each kept entry moves to the first empty slot from its home on (at the
    /// latest its own). Every slot from that home up to the entry's own was visited already
    /// (a probe run never crosses the empty starting slot), and the pass only ever empties
    /// the slot it is at, so the slots a kept entry's probe run passes stay full. Deleting
    /// one entry at a time instead walks the rest of its probe run for each: pruning half of
    /// a large de-duplicator took about 6.5 % of the stage-1 workers' samples in a lean
    /// bounded benchmark run that way, and about 4.6 % this way (`perf record -a`).
    public mutating func removeAll(where shouldRemove: (UInt64, Value) -> Bool) {
        guard count > 0 else { return }
        let vacant = self.vacant
        var removed = 0
        table.withUnsafeMutableBufferPointer { table in
            let slots = table.count
            guard var index = table.firstIndex(where: { $0.key == 0 }) else { return }
            for _ in 1..<slots {
                index = HashMap64.next(index, slots: slots)
                let key = table[index].key
                if key == 0 { continue }
                if shouldRemove(key, table[index].value) {
                    table[index] = Slot(key: 0, value: vacant)
                    removed += 1
                    continue
                }
                // The key itself, at `index`, unless an empty slot comes first.
                let (target, found) = HashMap64.slot(of: key, in: UnsafeBufferPointer(table))
                guard !found else { continue }
                table[target] = table[index]
                table[index] = Slot(key: 0, value: vacant)
            }
        }
        count -= removed
        if table.count > 16 && count * 8 < table.count { rehash(size: HashMap64.slots(for: count)) }
    }

    /// All entries, in no particular order (keys as stored: 0 appears as its stand-in).
    public var entries: [(key: UInt64, value: Value)] {
        table.compactMap { $0.key != 0 ? ($0.key, $0.value) : nil }
    }

    /// Calls `body` with every entry in ascending key order (keys as stored), for
    /// encodings that must not depend on the table's layout. A value no larger than a
    /// slot position travels with its key through the sort; a larger one is read from its
    /// slot afterwards, asked for a few entries ahead: in key order the slots lie at random
    /// places in a table that may be far larger than the caches.
    public func forEachInKeyOrder(_ body: (UInt64, Value) throws -> Void) rethrows {
        if MemoryLayout<Value>.stride <= MemoryLayout<Int>.stride {
            for (key, value) in keyOrdered(empty: vacant, { slot, _ in slot.value }) { try body(key, value) }
            return
        }
        let ordered = keyOrdered(empty: 0) { _, position in position }
        let lookahead = 16
        try table.withUnsafeBufferPointer { table in
            guard let base = table.baseAddress else { return }
            for (index, entry) in ordered.enumerated() {
                if index + lookahead < ordered.count { pulse_prefetch_for_read(base + ordered[index + lookahead].payload) }
                try body(entry.key, table[entry.payload].value)
            }
        }
    }

    /// Every entry's key with `payload` of its slot (and the slot's position), in
    /// ascending key order. Keys are well mixed, so their top bits spread the entries over
    /// buckets of a few each (one counting pass, one scattering pass), and each bucket is
    /// then sorted on its own: insertion-sorted, or, if it holds many (keys alike in their
    /// top bits), with the standard sort, so no input costs more than a comparison sort.
    /// Holds the key and the payload of every entry meanwhile.
    private func keyOrdered<Payload>(empty: Payload, _ payload: (Slot, Int) -> Payload) -> [(key: UInt64, payload: Payload)] {
        let bits = min(18, max(1, Int.bitWidth - count.leadingZeroBitCount))
        let shift = UInt64(64 - bits)
        var starts = [Int](repeating: 0, count: (1 << bits) + 1)
        for slot in table where slot.key != 0 { starts[Int(truncatingIfNeeded: slot.key >> shift) + 1] += 1 }
        for bucket in 1..<starts.count { starts[bucket] += starts[bucket - 1] }
        var ordered = [(key: UInt64, payload: Payload)](repeating: (0, empty), count: count)
        var next = starts
        for (position, slot) in table.enumerated() where slot.key != 0 {
            let bucket = Int(truncatingIfNeeded: slot.key >> shift)
            ordered[next[bucket]] = (slot.key, payload(slot, position))
            next[bucket] += 1
        }
        ordered.withUnsafeMutableBufferPointer { ordered in
            for bucket in 0..<(starts.count - 1) {
                let range = starts[bucket]..<starts[bucket + 1]
                guard range.count > 1 else { continue }
                if range.count > 16 {
                    ordered[range].sort { $0.key < $1.key }
                    continue
                }
                for index in range.dropFirst() {
                    let entry = ordered[index]
                    var hole = index
                    while hole > range.lowerBound && ordered[hole - 1].key > entry.key {
                        ordered[hole] = ordered[hole - 1]
                        hole -= 1
                    }
                    ordered[hole] = entry
                }
            }
        }
        return ordered
    }

    /// Heap bytes held.
    public var memoryBytes: Int { table.capacity * MemoryLayout<Slot>.stride }
}
