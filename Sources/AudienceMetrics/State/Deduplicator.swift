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
    /// What changed since the last ``startJournal()``, in order, while one is kept: every
    /// id remembered (new, or again after its horizon passed) and every pruning, as the
    /// bound below which entries were dropped (`before`: the journal's length then). Nil
    /// when none is kept, or it outgrew ``journalLimit``.
    private var journal: (ids: [Entry], cuts: [Cut])?
    private var journalLimit = 0

    private struct Entry { var key: UInt64; var time: Int64 }
    /// Pruning dropped every entry ordered (time, key) at or below (`time`, `key`).
    private struct Cut { var before: Int; var time: Int64; var key: UInt64 }

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
        if journal != nil { record(id, time) }
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
        if cutoff > .min, let count = journal?.ids.count { journal?.cuts.append(Cut(before: count, time: cutoff - 1, key: .max)) }
        guard force, seen.count > maxEntries * 9 / 10 else { return }
        // Still too many: drop the oldest tenth.
        let ordered = seen.entries.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
        let drop = seen.count - maxEntries * 9 / 10
        for (key, _) in ordered.prefix(drop) { seen.remove(key) }
        evictedEarly += drop
        if drop > 0, let count = journal?.ids.count {
            let last = ordered[drop - 1]
            journal?.cuts.append(Cut(before: count, time: last.value, key: last.key))
        }
    }

    // MARK: Journal (incremental checkpoints)

    /// Starts (or restarts) keeping a journal of changes from the current state on, for
    /// ``encodeJournal(into:)``. It holds as many ids (16 bytes each) as half the table
    /// has now (at least 65,536) and is dropped beyond that: a journal that long is hardly
    /// cheaper to write than the table, and while the table fills up quickly (a backlog
    /// replayed) its memory is better left unused.
    public mutating func startJournal() {
        journal = ([], [])
        journalLimit = max(seen.count / 2, 65_536)
    }

    /// Whether a journal is kept, complete since the last ``startJournal()``.
    public var hasJournal: Bool { journal != nil }

    private mutating func record(_ id: UInt64, _ time: Int64) {
        journal?.ids.append(Entry(key: id, time: time))
        if let count = journal?.ids.count, count > journalLimit { journal = nil }
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1
    /// The journal form: what changed since a state written before it.
    static let journalVersion: UInt8 = 2

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

    /// Writes the journal kept since the last ``startJournal()`` (which must be kept:
    /// ``hasJournal``): applied by ``applyJournal(from:)`` to the state that was current
    /// then, it gives this one.
    public func encodeJournal(into writer: inout BinaryWriter) {
        let journal = journal ?? ([], [])
        writer.write(Deduplicator.journalVersion)
        writer.writeSigned(newest)
        writer.writeVarint(evictedEarly)
        writer.writeVarint(countAfterPrune)
        writer.writeVarint(journal.cuts.count)
        for cut in journal.cuts {
            writer.writeVarint(cut.before)
            writer.writeSigned(cut.time)
            writer.writeFixed64(cut.key)
        }
        writer.writeVarint(journal.ids.count)
        for entry in journal.ids {
            writer.writeFixed64(entry.key)
            writer.writeSigned(entry.time)
        }
    }

    /// Applies a journal written by ``encodeJournal(into:)`` to this de-duplicator, which
    /// must be the state it was kept from, in place.
    public mutating func applyJournal(from reader: inout BinaryReader) throws(BinaryReader.Error) {
        guard try reader.readVersion(Deduplicator.formatVersion...Deduplicator.journalVersion, of: "deduplicator") == Deduplicator.journalVersion else {
            throw BinaryReader.Error(message: "deduplicator: a whole table where changes to one were expected")
        }
        journal = nil
        newest = try reader.readSigned()
        evictedEarly = try reader.readInt()
        countAfterPrune = try reader.readInt()
        let cutCount = try reader.readCount(limit: 1 << 26)
        var cuts: [Cut] = []
        cuts.reserveCapacity(cutCount)
        for _ in 0..<cutCount { cuts.append(Cut(before: try reader.readInt(), time: try reader.readSigned(), key: try reader.readFixed64())) }
        let count = try reader.readCount(limit: 1 << 26)
        var nextCut = 0
        for index in 0...count {
            while nextCut < cuts.count, cuts[nextCut].before <= index {
                let cut = cuts[nextCut]
                seen.removeAll { key, time in (time, key) <= (cut.time, cut.key) }
                nextCut += 1
            }
            guard index < count else { break }
            seen[try reader.readFixed64()] = try reader.readSigned()
        }
        guard nextCut == cuts.count else { throw BinaryReader.Error(message: "deduplicator: a pruning past the end of its changes") }
    }

    /// Reads a de-duplicator written by ``encode(into:)``.
    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> Deduplicator {
        guard try reader.readVersion(formatVersion...journalVersion, of: "deduplicator") == formatVersion else {
            throw BinaryReader.Error(message: "deduplicator: changes without the table they apply to")
        }
        return try decodeTable(from: &reader)
    }

    private static func decodeTable(from reader: inout BinaryReader) throws(BinaryReader.Error) -> Deduplicator {
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
