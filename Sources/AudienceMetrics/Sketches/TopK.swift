/// Heavy hitters: the most frequent items of a stream, by the Space-Saving algorithm
/// (Metwally, Agrawal, El Abbadi 2005) with ``capacity`` counters.
///
/// Each tracked item has a count and an error bound: its true count lies in
/// `count − error … count`. Any item occurring more than N/capacity times is tracked.
/// Merging sums the counters of both summaries and keeps the `capacity` largest (the
/// mergeable-summaries construction of Agarwal et al. 2012); the result is exact for
/// items tracked in every input. Ties at that cut are broken by item hash and reported
/// items by name, so results are deterministic.
///
/// Items are counted by hash, so counting allocates nothing; names are attached when a
/// summary leaves its producer (``attachNames(_:)``) and travel with it from then on.
public struct TopK: Sendable, Equatable {
    /// A reported item.
    public struct Item: Sendable, Hashable {
        public var name: String
        public var count: Int64
        public var error: Int64
    }

    struct Counter: Sendable, Hashable {
        var hash: UInt64
        var count: Int64
        var error: Int64
        /// "" until attached.
        var name = ""
    }

    public let capacity: Int
    private var counters: [Counter] = []
    /// Counter positions by hash. Empty after decoding or a merge's cut until first
    /// needed (``ensureIndexed()``): a summary that is only read, encoded or merged into
    /// another one never needs it. Once the summary is full, a replaced item's entry stays
    /// behind (stale: its position holds another item now) until the index is rebuilt.
    private var index = TopK.emptyIndex
    private var isIndexed = true
    /// While the summary is full: no count is below `floorCount`, and every counter before
    /// `floorCursor` counts more than it, so the next victim (the first counter with the
    /// smallest count) is found by scanning on from the cursor, not from the start. Counts
    /// only grow and a replacement enters at `floorCount + 1`, which keeps both true until
    /// no counter is left at `floorCount`; then a full scan sets them again. -1: not known.
    private var floorCount: Int64 = -1
    private var floorCursor = 0

    /// Shared by every new summary until its first insertion copies it.
    private static let emptyIndex = HashMap64<Int>(vacant: -1)

    public init(capacity: Int = 64) {
        self.capacity = max(1, capacity)
    }

    public var isEmpty: Bool { counters.isEmpty }

    /// Slots in the index now (for tests of its size: nothing else depends on it).
    var indexSlotCount: Int { index.slotCount }

    /// Counts one occurrence of the item with `hash`.
    @inline(__always)
    public mutating func add(hash: UInt64) {
        ensureIndexed()
        let full = counters.count >= capacity
        // One probe: the item's position (its own, or a stale one it left when replaced),
        // or its new entry, which takes the position it enters at (past the counters).
        var entered = false
        let position = index.update(hash, default: counters.count) { position in
            if position < counters.count && counters[position].hash == hash {
                counters[position].count += 1
                return position
            }
            entered = true
            if !full { return position }
            // Full: replace the counter with the smallest count (first such, by position).
            position = TopK.nextVictim(in: counters, floorCount: &floorCount, floorCursor: &floorCursor)
            return position
        }
        guard entered else { return }
        if !full {
            counters.append(Counter(hash: hash, count: 1, error: 0))
            if counters.count == capacity { reserveForReplacements() }
            return
        }
        let floor = counters[position].count
        counters[position] = Counter(hash: hash, count: floor + 1, error: floor)
        if index.count >= 2 * capacity { dropStaleEntries() }
    }

    /// The first position holding the smallest count (the summary is full).
    @inline(__always)
    private static func nextVictim(in counters: [Counter], floorCount: inout Int64, floorCursor: inout Int) -> Int {
        if floorCount >= 0 {
            var position = floorCursor
            while position < counters.count {
                if counters[position].count == floorCount {
                    floorCursor = position + 1
                    return position
                }
                position += 1
            }
        }
        var victim = 0
        for candidate in 1..<counters.count where counters[candidate].count < counters[victim].count { victim = candidate }
        floorCount = counters[victim].count
        floorCursor = victim + 1
        return victim
    }

    /// Names the tracked items that have no name yet, from `resolve`.
    public mutating func attachNames(_ resolve: (UInt64) -> String?) {
        for position in counters.indices where counters[position].name.isEmpty {
            if let name = resolve(counters[position].hash) { counters[position].name = name }
        }
    }

    /// The names known for tracked items, by hash.
    public var knownNames: [UInt64: String] {
        var names: [UInt64: String] = [:]
        for counter in counters where !counter.name.isEmpty { names[counter.hash] = counter.name }
        return names
    }

    private static func label(of counter: Counter) -> String {
        counter.name.isEmpty ? "#" + String(counter.hash, radix: 16) : counter.name
    }

    /// The `k` most frequent items, largest count first (ties by name).
    public func top(_ k: Int) -> [Item] {
        guard k > 0 else { return [] }
        // Only the counters that can make the cut are named and ordered: those counting at
        // least the k-th largest count (the rest would sort after all of them).
        var threshold = Int64.min
        if counters.count > k {
            threshold = withUnsafeTemporaryAllocation(of: Int64.self, capacity: counters.count) { buffer in
                var counts = buffer
                for (position, counter) in counters.enumerated() { counts[position] = counter.count }
                counts.sort(by: >)
                return counts[k - 1]
            }
        }
        var items: [Item] = []
        for counter in counters where counter.count >= threshold {
            items.append(Item(name: TopK.label(of: counter), count: counter.count, error: counter.error))
        }
        items.sort { $0.count != $1.count ? $0.count > $1.count : $0.name < $1.name }
        return Array(items.prefix(k))
    }

    /// Adds `other`'s counters to these.
    public mutating func merge(_ other: TopK) {
        merge(CollectionOfOne(other))
    }

    /// Adds the counters of every summary in `others`, then keeps the `capacity` largest
    /// once: merging several summaries this way sorts once instead of once per summary
    /// (and keeps at least as much as merging them one by one).
    public mutating func merge(_ others: some Collection<TopK>) {
        var added = false
        for other in others where !other.counters.isEmpty {
            if counters.isEmpty && other.capacity == capacity {
                // Nothing here yet: the other summary as it is (its storage shared until
                // written), as adding its counters one by one would make it.
                self = other
                continue
            }
            if !added {
                // Indexed for every counter the merge may hold, at most about half full:
                // most merged items are new, and a new item's probe runs to an empty slot
                // (at the usual 80 % it took many steps, and the index grew step by step).
                rebuildIndex(capacity: 2 * others.reduce(counters.count) { $0 + $1.counters.count })
                floorCount = -1
                added = true
            }
            for counter in other.counters {
                // One probe: the position, or the next one entered for a new item.
                let position = index.update(counter.hash, default: counters.count) { $0 }
                if position == counters.count {
                    counters.append(counter)
                } else {
                    counters[position].count += counter.count
                    counters[position].error += counter.error
                    if counters[position].name.isEmpty { counters[position].name = counter.name }
                }
            }
        }
        guard added else { return }
        // Indexed again only if counted into or merged into later: most merged summaries
        // are only read, and the merge's index was sized for all its inputs' counters.
        index = TopK.emptyIndex
        isIndexed = false
        guard counters.count > capacity else { return }
        // Keep the `capacity` largest, ties by item hash: the same cut whether names are
        // attached yet or not, and no strings compared.
        TopK.selectFirst(capacity, of: &counters)
        counters.removeLast(counters.count - capacity)
        TopK.sort(&counters)
    }

    /// The cut's order: larger count first, ties by item hash (a strict order: a summary
    /// holds each hash once).
    @inline(__always)
    static func precedes(_ a: (count: Int64, hash: UInt64), _ b: (count: Int64, hash: UInt64)) -> Bool {
        a.count != b.count ? a.count > b.count : a.hash < b.hash
    }

    @inline(__always)
    static func precedes(_ a: Counter, _ b: Counter) -> Bool {
        precedes((a.count, a.hash), (b.count, b.hash))
    }

    /// Sorts `counters` in ``precedes(_:_:)`` order by sorting their counts, hashes and
    /// positions (plain values; no names moved or reference-counted while sorting), then
    /// placing each counter once.
    static func sort(_ counters: inout [Counter]) {
        var keys = counters.enumerated().map { (count: $0.element.count, hash: $0.element.hash, position: $0.offset) }
        keys.sort { precedes(($0.count, $0.hash), ($1.count, $1.hash)) }
        counters = keys.map { [counters] in counters[$0.position] }
    }

    /// Moves the `k` counters first in ``precedes(_:_:)`` order to the front, in no
    /// particular order: a quickselect (median-of-three pivots, expected linear time), so
    /// a merge sorts only what it keeps, not every counter of its inputs. After 64
    /// partitioning rounds the range left is sorted instead, which bounds the worst case.
    static func selectFirst(_ k: Int, of counters: inout [Counter]) {
        guard k > 0, k < counters.count else { return }
        counters.withUnsafeMutableBufferPointer { buffer in
            var low = 0
            var high = buffer.count - 1
            var rounds = 0
            while low < high {
                rounds += 1
                if rounds > 64 {
                    var rest = UnsafeMutableBufferPointer(rebasing: buffer[low...high])
                    rest.sort(by: precedes)
                    return
                }
                // Median of three to `high`, then a Lomuto partition around it.
                let middle = low + (high - low) / 2
                if precedes(buffer[middle], buffer[low]) { buffer.swapAt(middle, low) }
                if precedes(buffer[high], buffer[low]) { buffer.swapAt(high, low) }
                if precedes(buffer[middle], buffer[high]) { buffer.swapAt(middle, high) }
                var store = low
                for position in low..<high where precedes(buffer[position], buffer[high]) {
                    buffer.swapAt(position, store)
                    store += 1
                }
                buffer.swapAt(store, high)
                // `store` now holds its place in the order: everything before precedes it.
                if store == k || store == k - 1 { return }
                if store > k { high = store - 1 } else { low = store + 1 }
            }
        }
    }

    @inline(__always)
    private mutating func ensureIndexed() {
        if !isIndexed { rebuildIndex() }
    }

    private mutating func rebuildIndex(capacity: Int? = nil) {
        index = HashMap64(vacant: -1, capacity: capacity ?? counters.count)
        if counters.count >= self.capacity { reserveForReplacements() }
        enterCounters()
        isIndexed = true
    }

    /// Enters every counter's position in the index.
    private mutating func enterCounters() {
        for (position, counter) in counters.enumerated() { index[counter.hash] = position }
    }

    /// Once the summary is full, most new items replace a counter, and each leaves its
    /// victim's entry behind: the index gets room for twice the capacity at most half full
    /// (``dropStaleEntries()`` keeps it there). Removing the victim's entry instead cost a
    /// probe and a backward shift per replacement.
    private mutating func reserveForReplacements() {
        index.reserve(slots: 4 * capacity)
    }

    /// Rebuilds the index from the counters in its own slots, without the entries that
    /// replaced items left (after `capacity` replacements of new items).
    private mutating func dropStaleEntries() {
        index.removeAllKeepingSlots()
        enterCounters()
    }

    public static func == (lhs: TopK, rhs: TopK) -> Bool {
        lhs.capacity == rhs.capacity && lhs.top(lhs.capacity) == rhs.top(rhs.capacity)
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 3

    /// Counters in their positions, each with its name ("" if unknown). The positions
    /// decide which of several counters tied at the smallest count the next new item
    /// replaces, so a summary restored from these bytes counts on exactly as the original
    /// would. (Version 2 wrote them sorted by hash; it is still read.)
    public func encode(into writer: inout BinaryWriter) {
        writer.write(TopK.formatVersion)
        writer.writeVarint(capacity)
        writer.writeVarint(counters.count)
        for counter in counters {
            writer.writeFixed64(counter.hash)
            writer.writeString(counter.name)
            writer.writeSigned(counter.count)
            writer.writeSigned(counter.error)
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> TopK {
        _ = try reader.readVersion(2...formatVersion, of: "top-k")
        var sketch = TopK(capacity: try reader.readCount(limit: 1 << 16))
        let count = try reader.readCount(limit: sketch.capacity)
        sketch.counters.reserveCapacity(count)
        for _ in 0..<count {
            let hash = try reader.readFixed64()
            let name = try reader.readString(limit: 4096)
            sketch.counters.append(Counter(hash: hash, count: try reader.readSigned(), error: try reader.readSigned(), name: name))
        }
        let repeated = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { buffer in
            var hashes = buffer
            for (position, counter) in sketch.counters.enumerated() { hashes[position] = counter.hash }
            hashes.sort()
            return zip(hashes.dropFirst(), hashes).contains { $0 == $1 }
        }
        if repeated { throw BinaryReader.Error(message: "top-k item repeated") }
        sketch.isIndexed = sketch.counters.isEmpty
        return sketch
    }
}
