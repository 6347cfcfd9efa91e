/// Checkpoints (whole and incremental) and restoring from them.
extension WindowMerger {
    /// 2 added the final flag of contributions and held markers; 3 each contribution's
    /// part, the slices and closed slices; 4: in an increment, each contribution is marked
    /// unchanged since the checkpoint before (0, its aggregate not written) or written (1);
    /// 5: or changed (2: the offset of the contribution it changes, then its aggregate
    /// with each unique counter written as its change from that one's). 1 to 4 are still
    /// read.
    static let formatVersion: UInt8 = 5

    /// A contribution's place in the state: its window or slice, segment and input partition.
    struct ContributionKey: Hashable {
        var window: WindowKey
        var isSlice: Bool
        var segment: String
        var partition: Int32
    }

    /// What identifies a contribution's value: a partial replaces another only with a
    /// newer input offset, and a final flag may be set on it later.
    struct Version: Equatable {
        var offset: Int64
        var isFinal: Bool
        var part: WindowPartial.Part
        init(_ contribution: Contribution) {
            offset = contribution.offset
            isFinal = contribution.isFinal
            part = contribution.part
        }
    }

    /// How a contribution's unique counters changed since the version `written` holds for
    /// its place (whose offset is `base`), kept from each partial that replaced it until
    /// the next checkpoint or increment is written: an increment writes only what
    /// changed in them instead of the counters whole.
    struct CounterChanges {
        var base: Int64
        var counters: [UniqueCounter.Change]
    }

    /// Notes how `aggregate`, replacing `old` at `place`, changed its unique counters, when
    /// the last written checkpoint holds `old` (or a change was noted since).
    func noteChange(from old: Contribution, to aggregate: SegmentAggregate, part: WindowPartial.Part, at place: ContributionKey) {
        guard old.part == part else {
            changes[place] = nil
            return
        }
        if let earlier = changes[place] {
            changes[place]?.counters = aggregate.counterChanges(since: old.aggregate, following: earlier.counters)
        } else if let base = written?[place], base.offset == old.offset, base.part == part {
            changes[place] = CounterChanges(base: old.offset, counters: aggregate.counterChanges(since: old.aggregate))
        }
    }

    /// The complete state as deterministic bytes.
    public func checkpoint() -> [UInt8] {
        // Without a limit the encoding always completes.
        encodeState(increment: false) ?? []
    }

    /// The state with only the contributions that changed since the last ``checkpoint()``
    /// or increment written out (the rest a one-byte mark); ``applyIncrement(_:)``
    /// restores it onto the state restored from those. Nil when no checkpoint was taken
    /// since this merger was made or restored, or when the increment grows past `limit`
    /// bytes (it stops there): write a whole ``checkpoint()`` then.
    public func checkpointIncrement(limit: Int = .max) -> [UInt8]? {
        guard written != nil else { return nil }
        return encodeState(increment: true, limit: limit)
    }

    private func encodeState(increment: Bool, limit: Int = .max) -> [UInt8]? {
        var writer = BinaryWriter(capacity: 4096)
        writer.write(WindowMerger.formatVersion)
        writer.writeSigned(stalePartials)
        writer.writeSigned(finalizedThrough)
        writer.writeVarint(partitionWatermarks.count)
        for (partition, time) in partitionWatermarks.sorted(by: { $0.key < $1.key }) {
            writer.writeSigned(Int64(partition))
            writer.writeSigned(time)
        }
        let previous = increment ? written : nil
        var versions: [ContributionKey: Version] = [:]
        unchangedInLastIncrement = 0
        changedInLastIncrement = 0
        guard encode(windows, isSlice: false, into: &writer, previous: previous, versions: &versions, limit: limit),
            encode(slices, isSlice: true, into: &writer, previous: previous, versions: &versions, limit: limit)
        else {
            // Abandoned: nothing was written, so the checkpoint before still is the last
            // (and the changes noted since still refer to it).
            return nil
        }
        written = versions
        changes = [:]
        writer.writeVarint(trends.count)
        for key in trends.keys.sorted() {
            writer.writeString(key)
            trends[key]?.encode(into: &writer)
        }
        writer.writeVarint(held.count)
        for (partition, marker) in held.sorted(by: { $0.key < $1.key }) {
            writer.writeSigned(Int64(partition))
            writer.writeSigned(marker.time)
            ClosedWindow.encode(marker.closing, into: &writer)
        }
        return writer.bytes
    }

    /// Pending windows or slices, in key order; in an increment (`previous`), each
    /// contribution marked unchanged since then or written. Records every contribution's
    /// version in `versions`. Returns false, stopping, once the writer holds more than
    /// `limit` bytes.
    private func encode(
        _ windows: [WindowKey: PendingWindow], isSlice: Bool, into writer: inout BinaryWriter, previous: [ContributionKey: Version]?,
        versions: inout [ContributionKey: Version], limit: Int
    ) -> Bool {
        writer.writeVarint(windows.count)
        for key in windows.keys.sorted() {
            guard writer.count <= limit else { return false }
            guard let window = windows[key] else { continue }
            writer.writeVarint(key.windowIndex)
            writer.writeSigned(key.start)
            writer.writeVarint(window.segments.count)
            for segment in window.segments.keys.sorted() {
                writer.writeString(segment)
                let contributions = window.segments[segment]?.entries ?? []
                writer.writeVarint(contributions.count)
                for contribution in contributions {
                    writer.writeSigned(Int64(contribution.partition))
                    writer.writeSigned(contribution.offset)
                    writer.writeSigned(contribution.overflowedEvents)
                    writer.write(contribution.isFinal ? 1 : 0)
                    writer.write(contribution.part.rawValue)
                    let place = ContributionKey(window: key, isSlice: isSlice, segment: segment, partition: contribution.partition)
                    let version = Version(contribution)
                    versions[place] = version
                    if let previous {
                        if previous[place] == version {
                            writer.write(0)
                            unchangedInLastIncrement += 1
                            continue
                        }
                        if let base = previous[place], base.part == version.part,
                            let counters = base.offset == version.offset
                                ? Array(repeating: .none, count: SegmentAggregate.counterCount) // only the final flag changed
                                : changes[place].flatMap({ $0.base == base.offset ? $0.counters : nil }) {
                            writer.write(2)
                            writer.writeSigned(base.offset)
                            contribution.aggregate.encode(changes: counters, into: &writer)
                            changedInLastIncrement += 1
                            continue
                        }
                        writer.write(1)
                    }
                    contribution.aggregate.encode(into: &writer)
                }
            }
        }
        return writer.count <= limit
    }

    /// Reads ``encode(_:isSlice:into:previous:versions:limit:)`` of a checkpoint of `version`. In
    /// an increment (`previous`: the contributions of the state it applies to), a
    /// contribution marked unchanged is taken from there.
    private func decodeWindows(
        from reader: inout BinaryReader, version: UInt8, isSlice: Bool, previous: [ContributionKey: Contribution]?
    ) throws(BinaryReader.Error) -> [WindowKey: PendingWindow] {
        var windows: [WindowKey: PendingWindow] = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 20)) {
            let key = WindowKey(windowIndex: try reader.readCount(limit: config.windows.count - 1), start: try reader.readSigned())
            let window = PendingWindow()
            for _ in 0..<(try reader.readCount(limit: 1 << 24)) {
                let segment = try reader.readString(limit: 1 << 16)
                var contributions = Contributions()
                for _ in 0..<(try reader.readCount(limit: 1 << 16)) {
                    let partition = Int32(truncatingIfNeeded: try reader.readSigned())
                    let offset = try reader.readSigned()
                    let overflow = try reader.readSigned()
                    let isFinal = version >= 2 ? try reader.read() == 1 : false
                    var part = WindowPartial.Part.window
                    if version >= 3 {
                        guard let read = WindowPartial.Part(rawValue: try reader.read()) else { throw BinaryReader.Error(message: "merge checkpoint: part") }
                        part = read
                    }
                    let aggregate: SegmentAggregate
                    let mark: UInt8 = if previous != nil, version >= 4 { try reader.read() } else { 1 }
                    let place = ContributionKey(window: key, isSlice: isSlice, segment: segment, partition: partition)
                    func missing(_ what: String) -> BinaryReader.Error {
                        BinaryReader.Error(message: "merge checkpoint increment: \(segment) of \(isSlice ? "slice" : "window") \(key.windowIndex)@\(key.start) "
                                           + "from input partition \(partition) at offset \(offset) \(what), but not in the state before it")
                    }
                    switch mark {
                    case 0:
                        guard let unchanged = previous?[place], unchanged.offset == offset, unchanged.isFinal == isFinal, unchanged.part == part else {
                            throw missing("unchanged")
                        }
                        aggregate = unchanged.aggregate
                    case 1:
                        aggregate = try SegmentAggregate.decode(from: &reader)
                    case 2 where version >= 5:
                        let baseOffset = try reader.readSigned()
                        guard let base = previous?[place], base.offset == baseOffset, base.offset <= offset, base.part == part else {
                            throw missing("changed from offset \(baseOffset)")
                        }
                        aggregate = try SegmentAggregate.decode(from: &reader, onto: base.aggregate)
                    default:
                        throw BinaryReader.Error(message: "merge checkpoint increment: contribution mark \(mark)")
                    }
                    let contribution = Contribution(partition: partition, offset: offset, aggregate: aggregate, overflowedEvents: overflow, isFinal: isFinal, part: part)
                    contributions[partition] = contribution
                }
                window.segments[segment] = contributions
            }
            windows[key] = window
        }
        return windows
    }

    /// Every contribution of the pending windows and slices, by its place.
    private func currentContributions() -> [ContributionKey: Contribution] {
        var result: [ContributionKey: Contribution] = [:]
        for (windows, isSlice) in [(windows, false), (slices, true)] {
            for (key, window) in windows {
                for (segment, contributions) in window.segments {
                    for contribution in contributions.entries {
                        result[ContributionKey(window: key, isSlice: isSlice, segment: segment, partition: contribution.partition)] = contribution
                    }
                }
            }
        }
        return result
    }

    /// Restores a ``checkpoint()`` (of this version or an earlier one).
    public func restore(_ bytes: [UInt8]) throws(BinaryReader.Error) {
        try restore(bytes, increment: false)
    }

    /// Restores a ``checkpointIncrement()`` onto the state restored from the checkpoints
    /// (whole, then incremental, in order) written before it.
    public func applyIncrement(_ bytes: [UInt8]) throws(BinaryReader.Error) {
        try restore(bytes, increment: true)
    }

    private func restore(_ bytes: [UInt8], increment: Bool) throws(BinaryReader.Error) {
        var reader = BinaryReader(bytes)
        let version = try reader.readVersion(1...WindowMerger.formatVersion, of: "merge checkpoint")
        // An increment's unchanged contributions are those of the state restored so far.
        let previous = increment ? currentContributions() : nil
        written = nil
        changes = [:]
        stalePartials = try reader.readSigned()
        finalizedThrough = try reader.readSigned()
        partitionWatermarks = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 16)) {
            partitionWatermarks[Int32(truncatingIfNeeded: try reader.readSigned())] = try reader.readSigned()
        }
        windows = try decodeWindows(from: &reader, version: version, isSlice: false, previous: previous)
        slices = version >= 3 ? try decodeWindows(from: &reader, version: version, isSlice: true, previous: previous) : [:]
        trends = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 24)) { trends[try reader.readString(limit: 1 << 16)] = try TrendState.decode(from: &reader) }
        held = [:]
        if version >= 2 {
            for _ in 0..<(try reader.readCount(limit: 1 << 16)) {
                let partition = Int32(truncatingIfNeeded: try reader.readSigned())
                let time = try reader.readSigned()
                held[partition] = HeldMarker(time: time, closing: try ClosedWindow.decode(from: &reader, maxWindowIndex: config.windows.count - 1,
                                                                                       withSlices: version >= 3))
            }
        }
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes in merge checkpoint") }
    }
}
