/// Checkpoints (whole and incremental) and restoring from them.
extension PartitionAggregator {
    /// 2: sliced window sizes' slices follow the windows. 3: each window says whether it
    /// shares a slice. 4: whether stage 2 holds this partition's slices and windows' own
    /// parts (``AggregationConfig/sendsSlices``). 5: in an increment, each aggregate is
    /// marked unchanged since the checkpoint before (0, not written) or written (1). 6: or
    /// changed (2: written with each unique counter as its change since that checkpoint,
    /// ``SegmentAggregate/encode(changes:into:)``).
    static let formatVersion: UInt8 = 6

    /// An aggregate's place in the state: its window (or slice) and segment.
    struct AggregateKey: Hashable {
        var windowIndex: Int
        var start: Int64
        var isSlice: Bool
        var segment: UInt64
    }

    /// The complete state, deterministic bytes. Starts journals of the de-duplicator's and
    /// the user table's changes, for ``checkpointIncrement()``.
    public func checkpoint() -> [UInt8] {
        defer { startJournals() }
        return encodeState(journals: false)
    }

    /// The state, with the de-duplicator and the user table (usually its largest parts)
    /// written as what changed since the last ``checkpoint()`` or increment instead of
    /// whole, and of the windows' aggregates only those whose bytes changed since;
    /// ``applyIncrement(_:)`` restores it onto the state restored from those. Nil when
    /// that is not known (no checkpoint taken since a restore, or the changes outgrew
    /// their journals): write a whole ``checkpoint()`` then.
    public func checkpointIncrement() -> [UInt8]? {
        guard dedup.hasJournal, users.hasJournal, written != nil else { return nil }
        defer { startJournals() }
        return encodeState(journals: true)
    }

    private func startJournals() {
        dedup.startJournal()
        users.startJournal()
    }

    private func encodeState(journals: Bool) -> [UInt8] {
        var writer = BinaryWriter(capacity: 4096)
        writer.write(PartitionAggregator.formatVersion)
        writer.writeSigned(watermark)
        writer.writeSigned(maxEventTime)
        for counter in [acceptedCount, duplicateCount, lateCount, invalidCount] { writer.writeSigned(counter) }
        // An increment refers to the aggregates the checkpoint before it wrote.
        let previous = journals ? written : nil
        var hashes: [AggregateKey: UInt64] = [:]
        unchangedInLastIncrement = 0
        changedInLastIncrement = 0
        let states = open.joined().sorted { ($0.windowIndex, $0.start) < ($1.windowIndex, $1.start) }
        encode(states, isSlice: false, into: &writer, previous: previous, hashes: &hashes)
        let sliced = slicing.indices.filter { slicing[$0] != nil }
        writer.writeVarint(sliced.count)
        for index in sliced {
            writer.writeVarint(index)
            writer.writeSigned(slicing[index]?.emittedThrough ?? .min)
            encode(slicing[index]?.slices ?? [], isSlice: true, into: &writer, previous: previous, hashes: &hashes)
        }
        written = hashes
        startTrackingCounters()
        writer.write(config.sendsSlices && !resendsParts ? 1 : 0)
        if journals {
            users.encodeJournal(into: &writer)
            dedup.encodeJournal(into: &writer)
        } else {
            users.encode(into: &writer)
            dedup.encode(into: &writer)
        }
        return writer.bytes
    }

    /// Writes `states` (each aggregate marked, in an increment: unchanged since `previous`
    /// or written) and records each aggregate's hash in `hashes`.
    private func encode(
        _ states: [WindowState], isSlice: Bool, into writer: inout BinaryWriter, previous: [AggregateKey: UInt64]?, hashes: inout [AggregateKey: UInt64]
    ) {
        writer.writeVarint(states.count)
        for state in states {
            writer.writeVarint(state.windowIndex)
            writer.writeSigned(state.start)
            writer.writeSigned(state.overflowedEvents)
            writer.write(state.sharesSlice ? 1 : 0)
            let order = state.keys.indices.sorted { assigner.name(of: state.keys[$0]) < assigner.name(of: state.keys[$1]) }
            writer.writeVarint(order.count)
            for slot in order {
                writer.writeString(assigner.name(of: state.keys[slot]))
                let key = AggregateKey(windowIndex: state.windowIndex, start: state.start, isSlice: isSlice, segment: state.keys[slot])
                let mark = writer.count
                if previous != nil { writer.write(1) }
                let start = writer.count
                named(state.aggregates[slot]).encode(into: &writer)
                let hash = writer.hash(from: start)
                hashes[key] = hash
                guard let previous, let before = previous[key] else { continue }
                if before == hash {
                    writer.truncate(to: mark)
                    writer.write(0)
                    unchangedInLastIncrement += 1
                } else {
                    // Its counters have recorded their changes since that checkpoint.
                    writer.truncate(to: mark)
                    writer.write(2)
                    named(state.aggregates[slot]).encode(changes: state.aggregates[slot].trackedCounterChanges, into: &writer)
                    changedInLastIncrement += 1
                }
            }
        }
    }

    /// Starts every aggregate's counters recording their changes, from the checkpoint
    /// just written (an increment's changes are relative to it).
    private func startTrackingCounters() {
        for state in open.joined() + slicing.compactMap({ $0 }).flatMap(\.slices) {
            state.aggregates.withUnsafeMutableBufferPointer { aggregates in
                for slot in aggregates.indices { aggregates[slot].startTrackingCounters() }
            }
        }
    }

    /// Reads states written by ``encode(_:isSlice:into:previous:hashes:)`` (of checkpoint
    /// `version`); a slice is `advance` long. In an increment (`previous`: the aggregates
    /// of the state it applies to), an aggregate marked unchanged is taken from there.
    private func decodeStates(
        from reader: inout BinaryReader, version: UInt8, slices: Bool, previous: [AggregateKey: SegmentAggregate]?
    ) throws(BinaryReader.Error) -> [WindowState] {
        var states: [WindowState] = []
        let count = try reader.readCount(limit: 1 << 20)
        for _ in 0..<count {
            let index = try reader.readCount(limit: config.windows.count - 1)
            let start = try reader.readSigned()
            let spec = config.windows[index]
            let state = WindowState(windowIndex: index, start: start, end: start + (slices ? spec.advance : spec.size))
            state.overflowedEvents = try reader.readSigned()
            if version >= 3 {
                switch try reader.read() {
                case 0: break
                case 1 where !slices && sharedSlices[index] != nil: state.sharesSlice = true
                case 1: throw BinaryReader.Error(message: "partition checkpoint: window size \(index) shares slices, which this configuration does not")
                case let flag: throw BinaryReader.Error(message: "partition checkpoint: window flag \(flag)")
                }
            }
            let segmentCount = try reader.readCount(limit: 1 << 24)
            for _ in 0..<segmentCount {
                let name = try reader.readString(limit: 1 << 16)
                let key = assigner.register(name)
                state.slots[key] = state.keys.count
                state.keys.append(key)
                let aggregate: SegmentAggregate
                if let previous, version >= 5 {
                    switch try reader.read() {
                    case 0:
                        let place = AggregateKey(windowIndex: index, start: start, isSlice: slices, segment: key)
                        guard let unchanged = previous[place] else {
                            throw BinaryReader.Error(message: "partition checkpoint increment: \(name) of window \(index)@\(start) unchanged, but not in the state before it")
                        }
                        aggregate = unchanged
                    case 1:
                        aggregate = try SegmentAggregate.decode(from: &reader)
                    case 2 where version >= 6:
                        let place = AggregateKey(windowIndex: index, start: start, isSlice: slices, segment: key)
                        guard let base = previous[place] else {
                            throw BinaryReader.Error(message: "partition checkpoint increment: \(name) of window \(index)@\(start) changed, but not in the state before it")
                        }
                        aggregate = try SegmentAggregate.decode(from: &reader, onto: base)
                    case let mark:
                        throw BinaryReader.Error(message: "partition checkpoint increment: aggregate mark \(mark)")
                    }
                } else {
                    aggregate = try SegmentAggregate.decode(from: &reader)
                }
                for (hash, name) in aggregate.topContent.knownNames { contentNames[hash] = name }
                state.aggregates.append(aggregate)
                state.changed.append(false)
            }
            states.append(state)
        }
        return states
    }

    /// Every aggregate of the open windows and slices, by its place.
    private func currentAggregates() -> [AggregateKey: SegmentAggregate] {
        var result: [AggregateKey: SegmentAggregate] = [:]
        for (states, isSlice) in [(Array(open.joined()), false), (slicing.compactMap { $0 }.flatMap(\.slices), true)] {
            for state in states {
                for (slot, segment) in state.keys.enumerated() {
                    result[AggregateKey(windowIndex: state.windowIndex, start: state.start, isSlice: isSlice, segment: segment)] = state.aggregates[slot]
                }
            }
        }
        return result
    }

    /// Restores a ``checkpoint()`` (this version's or the previous one, whose windows were
    /// all kept whole). The configuration must have the same windows.
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
        let version = try reader.readVersion(1...PartitionAggregator.formatVersion, of: "partition checkpoint")
        watermark = try reader.readSigned()
        maxEventTime = try reader.readSigned()
        acceptedCount = try reader.readSigned()
        duplicateCount = try reader.readSigned()
        lateCount = try reader.readSigned()
        invalidCount = try reader.readSigned()
        // An increment's unchanged aggregates are those of the state restored so far.
        let previous = increment ? currentAggregates() : nil
        written = nil
        open = Array(repeating: [], count: config.windows.count)
        for state in try decodeStates(from: &reader, version: version, slices: false, previous: previous) { open[state.windowIndex].append(state) }
        for (index, slicing) in slicing.enumerated() {
            guard let slicing else { continue }
            slicing.slices = []
            // Whole windows from before slicing: every closed one is emitted or still held.
            let spec = config.windows[index]
            slicing.emittedThrough = watermark == .min ? .min : spec.lastStart(containing: watermark - spec.size - config.allowedLateness)
        }
        if version >= 2 {
            let slicedCount = try reader.readCount(limit: config.windows.count)
            for _ in 0..<slicedCount {
                let index = try reader.readCount(limit: config.windows.count - 1)
                let emittedThrough = try reader.readSigned()
                let slices = try decodeStates(from: &reader, version: version, slices: true, previous: previous)
                guard slices.allSatisfy({ $0.windowIndex == index }) else { throw BinaryReader.Error(message: "partition checkpoint: a slice out of place") }
                guard let slicing = slicing[index] else {
                    if slices.isEmpty { continue }
                    throw BinaryReader.Error(message: "partition checkpoint holds slices of window size \(index), which this configuration keeps whole")
                }
                slicing.emittedThrough = emittedThrough
                slicing.slices = slices.sorted { $0.start < $1.start }
            }
        }
        let sentSlices = version >= 4 ? try reader.read() == 1 : false
        resendsParts = config.sendsSlices && !sentSlices
        if increment { try users.applyJournal(from: &reader) } else { try users.decode(from: &reader) }
        // Users restored from a deployment that kept them, into one that no longer does
        // (`metrics.include` without retention and sessions), would only take up memory.
        if !keepsUsers { users.removeAll() }
        if increment {
            try dedup.applyJournal(from: &reader)
        } else {
            dedup = try Deduplicator.decode(from: &reader)
        }
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes in partition checkpoint") }
    }
}
