/// Everything measured for one segment in one window: mergeable, so partials from several
/// input partitions (or several stages of one stream) add up to the aggregate of all
/// their events — exactly for counts, sums and small user sets, within the sketches'
/// stated error otherwise.
public struct SegmentAggregate: Sendable, Equatable {
    /// Counts per known event type, one lane per ``KnownEventType`` (there are eight).
    public typealias KnownTypeCounts = SIMD8<Int64>

    /// All events.
    public var events: Int64 = 0
    /// Events per ``KnownEventType`` (by raw value): one lane per type, held in the
    /// aggregate itself (no buffer of its own to allocate, copy or check for sharing).
    public var knownTypes = KnownTypeCounts()
    /// Events of types the metrics do not know, by name.
    public var otherTypes: [String: Int64] = [:]
    /// Distinct users.
    public var users = UniqueCounter()
    /// Distinct users whose first-ever event falls in the window.
    public var newUsers = UniqueCounter()
    /// Distinct users active here and in the previous window of the same size.
    public var retainedUsers = UniqueCounter()
    /// Distinct users who converted.
    public var convertingUsers = UniqueCounter()
    /// `dwell_ms` distribution.
    public var dwell = QuantileSketch()
    /// Page views per `content_id`.
    public var topContent: TopK
    /// Sum of `value` over conversions, in millionths.
    public var revenueMicros: Int64 = 0
    /// Sessions that started in the window.
    public var sessionsStarted: Int64 = 0
    /// Sessions that became engaged through an event in the window.
    public var sessionsEngaged: Int64 = 0
    /// Session time accrued by events in the window (the gaps between consecutive events
    /// of a session, credited to the later event), ms.
    public var sessionDurationMs: Int64 = 0
    /// Late events detected while this window held the newest event time.
    public var late: Int64 = 0
    /// Duplicate events in this window.
    public var duplicates: Int64 = 0
    /// Invalid events detected while this window held the newest event time (segment `all` only).
    public var invalid: Int64 = 0

    public init(topContentCapacity: Int = 64) {
        topContent = TopK(capacity: topContentCapacity)
    }

    /// Adds `other`'s measurements to these.
    public mutating func merge(_ other: SegmentAggregate) {
        merge(CollectionOfOne(other))
    }

    /// Adds the measurements of every aggregate in `others` (top content kept to its
    /// capacity once, after all of them).
    public mutating func merge(_ others: some Collection<SegmentAggregate>) {
        for other in others {
            events += other.events
            knownTypes &+= other.knownTypes
            for (name, count) in other.otherTypes { otherTypes[name, default: 0] += count }
            users.merge(other.users)
            newUsers.merge(other.newUsers)
            retainedUsers.merge(other.retainedUsers)
            convertingUsers.merge(other.convertingUsers)
            dwell.merge(other.dwell)
            revenueMicros += other.revenueMicros
            sessionsStarted += other.sessionsStarted
            sessionsEngaged += other.sessionsEngaged
            sessionDurationMs += other.sessionDurationMs
            late += other.late
            duplicates += other.duplicates
            invalid += other.invalid
        }
        topContent.merge(others.lazy.map(\.topContent))
    }

    /// Events of a known type.
    public func count(_ type: KnownEventType) -> Int64 { knownTypes[type.rawValue] }

    /// Events whose type is in `set`.
    public func count(in set: EventTypeSet) -> Int64 {
        knownTypes.indices.reduce(0) { set.contains($1) ? $0 + knownTypes[$1] : $0 }
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1

    public func encode(into writer: inout BinaryWriter) {
        encode(into: &writer) { counter, _, writer in counter.encode(into: &writer) }
    }

    /// The unique counters by position in the binary form: users, new, retained, converting.
    static let counterCount = 4

    subscript(counter index: Int) -> UniqueCounter {
        get {
            switch index {
            case 0: users
            case 1: newUsers
            case 2: retainedUsers
            default: convertingUsers
            }
        }
        set {
            switch index {
            case 0: users = newValue
            case 1: newUsers = newValue
            case 2: retainedUsers = newValue
            default: convertingUsers = newValue
            }
        }
    }

    /// Each unique counter's change since `base` (users, new, retained, converting); `earlier`: the
    /// changes between the base before it and `base`.
    public func counterChanges(since base: SegmentAggregate, following earlier: [UniqueCounter.Change]? = nil) -> [UniqueCounter.Change] {
        (0..<Self.counterCount).map { index in
            self[counter: index].change(since: base[counter: index], following: earlier?[index] ?? .none)
        }
    }

    /// Starts recording each unique counter's changes (``trackedCounterChanges``).
    public mutating func startTrackingCounters() {
        for index in 0..<Self.counterCount { self[counter: index].startTracking() }
    }

    /// Each unique counter's change since ``startTrackingCounters()`` (in the order of
    /// ``encode(changes:into:)``).
    public var trackedCounterChanges: [UniqueCounter.Change] {
        (0..<Self.counterCount).map { self[counter: $0].trackedChange }
    }

    /// The binary form with each unique counter written as its change in `changes` (from
    /// ``counterChanges(since:following:)``); read with ``decode(from:onto:)``.
    public func encode(changes: [UniqueCounter.Change], into writer: inout BinaryWriter) {
        encode(into: &writer) { counter, index, writer in counter.encode(changes[index], into: &writer) }
    }

    private func encode(into writer: inout BinaryWriter, counter: (UniqueCounter, Int, inout BinaryWriter) -> Void) {
        writer.write(SegmentAggregate.formatVersion)
        writer.writeSigned(events)
        writer.writeVarint(knownTypes.scalarCount)
        for index in knownTypes.indices { writer.writeSigned(knownTypes[index]) }
        writer.writeVarint(otherTypes.count)
        for (name, count) in otherTypes.sorted(by: { $0.key < $1.key }) {
            writer.writeString(name)
            writer.writeSigned(count)
        }
        for index in 0..<Self.counterCount { counter(self[counter: index], index, &writer) }
        dwell.encode(into: &writer)
        topContent.encode(into: &writer)
        for value in [revenueMicros, sessionsStarted, sessionsEngaged, sessionDurationMs, late, duplicates, invalid] {
            writer.writeSigned(value)
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> SegmentAggregate {
        try decode(from: &reader) { _, reader throws(BinaryReader.Error) in try UniqueCounter.decode(from: &reader) }
    }

    /// Reads ``encode(changes:into:)``: `base`'s unique counters with the changes applied,
    /// everything else as written.
    public static func decode(from reader: inout BinaryReader, onto base: SegmentAggregate) throws(BinaryReader.Error) -> SegmentAggregate {
        try decode(from: &reader) { index, reader throws(BinaryReader.Error) in try base[counter: index].applying(changeFrom: &reader) }
    }

    private static func decode(
        from reader: inout BinaryReader, counter: (Int, inout BinaryReader) throws(BinaryReader.Error) -> UniqueCounter
    ) throws(BinaryReader.Error) -> SegmentAggregate {
        try reader.expectVersion(formatVersion, of: "segment aggregate")
        var result = SegmentAggregate()
        result.events = try reader.readSigned()
        let typeCount = try reader.readCount(limit: 64)
        guard typeCount == result.knownTypes.scalarCount else { throw BinaryReader.Error(message: "event type count \(typeCount)") }
        for type in 0..<typeCount { result.knownTypes[type] = try reader.readSigned() }
        let otherCount = try reader.readCount(limit: 1 << 16)
        for _ in 0..<otherCount { result.otherTypes[try reader.readString(limit: 4096)] = try reader.readSigned() }
        for index in 0..<counterCount { result[counter: index] = try counter(index, &reader) }
        result.dwell = try QuantileSketch.decode(from: &reader)
        result.topContent = try TopK.decode(from: &reader)
        result.revenueMicros = try reader.readSigned()
        result.sessionsStarted = try reader.readSigned()
        result.sessionsEngaged = try reader.readSigned()
        result.sessionDurationMs = try reader.readSigned()
        result.late = try reader.readSigned()
        result.duplicates = try reader.readSigned()
        result.invalid = try reader.readSigned()
        return result
    }

    /// The binary form as bytes.
    public var encoded: [UInt8] {
        var writer = BinaryWriter(capacity: 512)
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes bytes from ``encoded``.
    public init(encoded bytes: [UInt8]) throws(BinaryReader.Error) {
        var reader = BinaryReader(bytes)
        self = try SegmentAggregate.decode(from: &reader)
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes") }
    }
}
