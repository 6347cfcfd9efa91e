/// Remembers event-id hashes for a horizon of event time, to drop repeated events.
///
/// An id is a duplicate if it was seen within ``horizon`` (event time) of the newest
/// event. Memory is bounded by ``maxEntries``: when the table is full, the oldest ids are
/// forgotten first (the horizon effectively shrinks and ``evictedEarly`` counts it).
/// Ids are 64-bit hashes; two different ids collide with probability ~n²/2⁶⁵.
public struct Deduplicator: Sendable {
    public let horizon: Int64
    public let maxEntries: Int
    private var seen = HashMap64<Int64>(vacant: .min)
    private var newest: Int64 = .min
    private var countAfterPrune = 0
    /// Ids forgotten before their horizon passed, because the table was full.
    public private(set) var evictedEarly = 0

    public init(horizon: Int64 = 600_000, maxEntries: Int = 2_000_000) {
        self.horizon = horizon
        self.maxEntries = maxEntries
    }

    public var count: Int { seen.count }

    /// Starts loading what ``isDuplicate(_:at:)`` will look at for `id` (a cache hint).
    @inline(__always)
    public mutating func prefetch(_ id: UInt64) { seen.prefetch(id) }

    /// Returns true if `id` was seen within the horizon; otherwise remembers it.
    @inline(__always)
    public mutating func isDuplicate(_ id: UInt64, at time: Int64) -> Bool {
        let cutoff = newest == .min ? .min : newest - horizon
        let duplicate = seen.update(id, default: .min) { previous in
            if previous != .min && previous >= cutoff { return true }
            previous = time
            return false
        }
        if duplicate { return true }
        if time > newest { newest = time }
        if seen.count > maxEntries { prune(force: true) }
        return false
    }

    /// Forgets ids older than the horizon (call now and then, e.g. when windows close).
    /// Unless forced, only runs once the table has doubled since the last pruning, so its
    /// cost stays proportional to the events added; expired ids never count as seen, so
    /// when pruning runs changes memory only, not results.
    public mutating func prune(force: Bool = false) {
        guard force || seen.count >= max(2 * countAfterPrune, 65_536) else { return }
        defer { countAfterPrune = seen.count }
        let cutoff = newest - horizon
        seen.removeAll { $1 < cutoff }
        guard force, seen.count > maxEntries * 9 / 10 else { return }
        // Still too many: drop the oldest tenth.
        let ordered = seen.entries.sorted { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }
        let drop = seen.count - maxEntries * 9 / 10
        for (key, _) in ordered.prefix(drop) { seen.remove(key) }
        evictedEarly += drop
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1

    public func encode(into writer: inout BinaryWriter) {
        writer.write(Deduplicator.formatVersion)
        writer.writeSigned(horizon)
        writer.writeVarint(maxEntries)
        writer.writeSigned(newest)
        writer.writeVarint(evictedEarly)
        writer.writeVarint(countAfterPrune)
        writer.writeVarint(seen.count)
        seen.forEachInKeyOrder { key, time in
            writer.writeFixed64(key)
            writer.writeSigned(time)
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> Deduplicator {
        try reader.expectVersion(formatVersion, of: "deduplicator")
        var result = Deduplicator(horizon: try reader.readSigned(), maxEntries: try reader.readInt())
        result.newest = try reader.readSigned()
        result.evictedEarly = try reader.readInt()
        result.countAfterPrune = try reader.readInt()
        let count = try reader.readCount(limit: 1 << 26)
        result.seen = HashMap64(vacant: .min, capacity: count)
        for _ in 0..<count { result.seen[try reader.readFixed64()] = try reader.readSigned() }
        return result
    }
}
