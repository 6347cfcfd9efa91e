/// Heavy hitters: the most frequent items of a stream, by the Space-Saving algorithm
/// (Metwally, Agrawal, El Abbadi 2005) with ``capacity`` counters.
///
/// Each tracked item has a count and an error bound: its true count lies in
/// `count − error … count`. Any item occurring more than N/capacity times is tracked.
/// Merging sums the counters of both summaries and keeps the `capacity` largest (the
/// mergeable-summaries construction of Agarwal et al. 2012); the result is exact for
/// items tracked in every input. Ties are broken by name, so results are deterministic.
public struct TopK: Sendable, Equatable {
    public struct Item: Sendable, Hashable {
        public var name: String
        public var count: Int64
        public var error: Int64
    }

    public let capacity: Int
    private var items: [Item] = []
    private var hashes: [UInt64] = []
    private var index: [UInt64: Int] = [:]

    public init(capacity: Int = 64) {
        self.capacity = max(1, capacity)
    }

    /// Counts one occurrence of the item with `hash`; `name` is asked for only when the
    /// item is not yet tracked.
    @inline(__always)
    public mutating func add(hash: UInt64, name: () -> String) {
        if let position = index[hash] {
            items[position].count += 1
            return
        }
        if items.count < capacity {
            index[hash] = items.count
            items.append(Item(name: name(), count: 1, error: 0))
            hashes.append(hash)
            return
        }
        // Replace the item with the smallest count (first such, by position).
        var victim = 0
        for position in 1..<items.count where items[position].count < items[victim].count { victim = position }
        let floor = items[victim].count
        index[hashes[victim]] = nil
        index[hash] = victim
        hashes[victim] = hash
        items[victim] = Item(name: name(), count: floor + 1, error: floor)
    }

    /// The `k` most frequent items, largest count first (ties by name).
    public func top(_ k: Int) -> [Item] {
        Array(items.sorted { $0.count != $1.count ? $0.count > $1.count : $0.name < $1.name }.prefix(k))
    }

    /// Adds `other`'s counters to these.
    public mutating func merge(_ other: TopK) {
        var combined: [String: Item] = [:]
        for item in items + other.items {
            if var existing = combined[item.name] {
                existing.count += item.count
                existing.error += item.error
                combined[item.name] = existing
            } else {
                combined[item.name] = item
            }
        }
        let kept = combined.values.sorted { $0.count != $1.count ? $0.count > $1.count : $0.name < $1.name }.prefix(capacity)
        items = Array(kept)
        hashes = items.map { Hash64.hash($0.name) }
        index = Dictionary(uniqueKeysWithValues: hashes.enumerated().map { ($1, $0) })
    }

    public static func == (lhs: TopK, rhs: TopK) -> Bool {
        lhs.capacity == rhs.capacity && lhs.top(lhs.capacity) == rhs.top(rhs.capacity)
    }

    public var isEmpty: Bool { items.isEmpty }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1

    public func encode(into writer: inout BinaryWriter) {
        writer.write(TopK.formatVersion)
        writer.writeVarint(capacity)
        let sorted = items.sorted { $0.name < $1.name }
        writer.writeVarint(sorted.count)
        for item in sorted {
            writer.writeString(item.name)
            writer.writeSigned(item.count)
            writer.writeSigned(item.error)
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> TopK {
        try reader.expectVersion(formatVersion, of: "top-k")
        var sketch = TopK(capacity: try reader.readCount(limit: 1 << 16))
        let count = try reader.readCount(limit: sketch.capacity)
        for _ in 0..<count {
            let item = Item(name: try reader.readString(limit: 4096), count: try reader.readSigned(), error: try reader.readSigned())
            let hash = Hash64.hash(item.name)
            guard sketch.index[hash] == nil else { throw BinaryReader.Error(message: "duplicate top-k item") }
            sketch.index[hash] = sketch.items.count
            sketch.items.append(item)
            sketch.hashes.append(hash)
        }
        return sketch
    }
}
