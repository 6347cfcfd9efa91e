/// Stage 1's computation for one input partition: de-duplication, per-user state,
/// segments, event-time windows with a watermark, and partial aggregates.
///
/// Deterministic: the same events in the same order give the same partials, the same
/// window closings and the same checkpoint bytes (wall-clock time enters only through
/// ``advanceWatermark(to:)``, which the caller uses for idle partitions). Not
/// thread-safe: one per partition, driven by one thread.
public final class PartitionAggregator {
    /// What happened to an event.
    public enum Outcome: Sendable, Hashable {
        case accepted
        case duplicate
        case late
    }

    public let config: AggregationConfig
    private let assigner: SegmentAssigner
    private var open: [[WindowState]]
    private var users: UserStates
    private var dedup: Deduplicator
    /// Event time up to which windows are complete (ms); `Int64.min` before any event.
    public private(set) var watermark: Int64 = .min
    /// The newest event time seen (ms).
    public private(set) var maxEventTime: Int64 = .min
    /// Counters since the partition was first processed (restored with checkpoints).
    public private(set) var acceptedCount: Int64 = 0
    public private(set) var duplicateCount: Int64 = 0
    public private(set) var lateCount: Int64 = 0
    public private(set) var invalidCount: Int64 = 0
    /// Names of content ids seen (by hash), so counting content allocates nothing.
    private var contentNames = HashMap64<String>(vacant: "")
    private let dwellBucketer = QuantileSketch()
    private let allKey = Hash64.hash("all")
    private let overflowKey = Hash64.hash(SegmentSpec.overflowSegment)
    private let tracksAll: Bool

    final class WindowState {
        let windowIndex: Int
        let start: Int64
        let end: Int64
        var slots = HashMap64<Int>(vacant: -1)
        var keys: [UInt64] = []
        var aggregates: [SegmentAggregate] = []
        var changed: [Bool] = []
        var changedSlots: [Int] = []
        var overflowedEvents: Int64 = 0

        init(windowIndex: Int, start: Int64, end: Int64) {
            self.windowIndex = windowIndex
            self.start = start
            self.end = end
        }

        @inline(__always)
        func slot(for key: UInt64, cap: Int, overflowKey: UInt64, topContentCapacity: Int) -> Int {
            if let slot = slots[key] {
                markChanged(slot)
                return slot
            }
            var target = key
            if keys.count >= cap {
                overflowedEvents += 1
                target = overflowKey
                if let slot = slots[target] {
                    markChanged(slot)
                    return slot
                }
            }
            let slot = keys.count
            slots[target] = slot
            keys.append(target)
            aggregates.append(SegmentAggregate(topContentCapacity: topContentCapacity))
            changed.append(false)
            markChanged(slot)
            return slot
        }

        @inline(__always)
        func markChanged(_ slot: Int) {
            if !changed[slot] {
                changed[slot] = true
                changedSlots.append(slot)
            }
        }
    }

    /// - Parameter assigner: the thread's segment assigner (it must have been created for
    ///   `config.segments` and the decoder's attribute slots).
    public init(config: AggregationConfig, assigner: SegmentAssigner) {
        self.config = config
        self.assigner = assigner
        open = Array(repeating: [], count: config.windows.count)
        users = UserStates(rules: config.sessions, ttl: config.userTTL, maxUsers: config.maxUsersPerPartition)
        dedup = Deduplicator(horizon: config.deduplicationHorizon, maxEntries: config.deduplicationMaxEntries)
        tracksAll = config.segments.dimensions.contains([])
    }

    /// Tracked users and remembered event ids (for sizing and metrics).
    public var trackedUsers: Int { users.count }
    public var rememberedEventIDs: Int { dedup.count }
    /// Open windows across all window sizes.
    public var openWindowCount: Int { open.reduce(0) { $0 + $1.count } }

    @inline(__always)
    private func isOpen(_ start: Int64, _ spec: WindowSpec) -> Bool {
        watermark == .min || start + spec.size + config.allowedLateness > watermark
    }

    @inline(__always)
    private func window(_ index: Int, start: Int64) -> WindowState {
        for state in open[index] where state.start == start { return state }
        let spec = config.windows[index]
        let state = WindowState(windowIndex: index, start: start, end: start + spec.size)
        open[index].append(state)
        return state
    }

    /// Processes the decoder's current event.
    public func process(_ decoder: EventDecoder) -> Outcome {
        let event = decoder.event
        let time = event.timestamp
        assigner.assign(decoder)
        let keys = assigner.keys
        let cap = config.segments.maxSegmentsPerWindow
        let capacity = config.topContentCapacity

        if dedup.isDuplicate(event.eventIDHash, at: time) {
            duplicateCount += 1
            for (index, spec) in config.windows.enumerated() {
                spec.forEachStart(containing: time) { start in
                    guard isOpen(start, spec) else { return }
                    let state = window(index, start: start)
                    for key in keys {
                        state.aggregates[state.slot(for: key, cap: cap, overflowKey: overflowKey, topContentCapacity: capacity)].duplicates += 1
                    }
                }
            }
            return .duplicate
        }

        var anyOpen = false
        for spec in config.windows {
            spec.forEachStart(containing: time) { start in anyOpen = anyOpen || isOpen(start, spec) }
        }
        guard anyOpen else {
            lateCount += 1
            attributeToCurrentWindows(keys: keys) { $0.late += 1 }
            return .late
        }

        let update = users.update(user: event.userIDHash, time: time, typeCode: event.typeCode)
        if event.hasContent && !contentNames.contains(event.contentIDHash) {
            contentNames[event.contentIDHash] = decoder.string(event.contentID)
        }
        let typeCode = event.typeCode
        let isConversion = config.conversionTypes.contains(typeCode)
        let isPageView = typeCode == KnownEventType.pageView.rawValue
        var otherTypeName: String?
        let dwellBucket = event.dwellMs >= 0 ? dwellBucketer.bucket(of: event.dwellMs) : 0
        for (index, spec) in config.windows.enumerated() {
            spec.forEachStart(containing: time) { start in
                guard isOpen(start, spec) else { return }
                let state = window(index, start: start)
                let end = state.end
                for key in keys {
                    let slot = state.slot(for: key, cap: cap, overflowKey: overflowKey, topContentCapacity: capacity)
                    state.aggregates.withUnsafeMutableBufferPointer { aggregates in
                        aggregates[slot].events += 1
                        if typeCode >= 0 {
                            aggregates[slot].knownTypes[typeCode] += 1
                        } else {
                            if otherTypeName == nil { otherTypeName = decoder.string(event.type) }
                            aggregates[slot].otherTypes[otherTypeName ?? "", default: 0] += 1
                        }
                        aggregates[slot].users.insert(event.userIDHash)
                        if update.firstSeen >= start && update.firstSeen < end { aggregates[slot].newUsers.insert(event.userIDHash) }
                        if update.previousLastSeen < start && update.previousLastSeen >= start - spec.size {
                            aggregates[slot].retainedUsers.insert(event.userIDHash)
                        }
                        if isConversion {
                            aggregates[slot].convertingUsers.insert(event.userIDHash)
                            aggregates[slot].revenueMicros &+= event.valueMicros ?? 0
                        }
                        if event.dwellMs >= 0 { aggregates[slot].dwell.add(event.dwellMs, bucket: dwellBucket) }
                        if isPageView && event.hasContent { aggregates[slot].topContent.add(hash: event.contentIDHash) }
                        // Session figures are credited to the window of the event that
                        // causes them, so they depend only on the user's own events.
                        if update.sessionStarted { aggregates[slot].sessionsStarted += 1 }
                        if update.becameEngaged { aggregates[slot].sessionsEngaged += 1 }
                        aggregates[slot].sessionDurationMs += update.durationAdded
                    }
                }
            }
        }
        acceptedCount += 1
        if time > maxEventTime {
            maxEventTime = time
            let candidate = time - config.maxOutOfOrderness
            if candidate > watermark { watermark = candidate }
        }
        return .accepted
    }

    /// Counts an invalid message (in the segment `all` of the current windows, if
    /// configured).
    public func recordInvalid() {
        invalidCount += 1
        guard tracksAll else { return }
        attributeToCurrentWindows(keys: [allKey]) { $0.invalid += 1 }
    }

    /// Applies `change` to `keys` in the current window (the one holding the newest event
    /// time), per window size, if it is still open.
    private func attributeToCurrentWindows(keys: [UInt64], _ change: (inout SegmentAggregate) -> Void) {
        guard maxEventTime != .min else { return }
        for (index, spec) in config.windows.enumerated() {
            let start = spec.lastStart(containing: maxEventTime)
            guard isOpen(start, spec) else { continue }
            let state = window(index, start: start)
            for key in keys {
                change(&state.aggregates[state.slot(for: key, cap: config.segments.maxSegmentsPerWindow, overflowKey: overflowKey, topContentCapacity: config.topContentCapacity)])
            }
        }
    }

    /// Moves the watermark forward (never back), e.g. for a partition that has been idle:
    /// windows then close even without new events.
    public func advanceWatermark(to time: Int64) {
        if time > watermark { watermark = time }
    }

    /// Removes and returns every window the watermark has passed (its end + allowed
    /// lateness), as final partials, oldest first; forgets expired users and event ids.
    public func closeReadyWindows() -> [WindowPartial] {
        var closed: [WindowPartial] = []
        for index in open.indices {
            let spec = config.windows[index]
            let (ready, remaining) = open[index].reduce(into: ([WindowState](), [WindowState]())) { result, state in
                if isOpen(state.start, spec) { result.1.append(state) } else { result.0.append(state) }
            }
            guard !ready.isEmpty else { continue }
            open[index] = remaining
            for state in ready.sorted(by: { $0.start < $1.start }) {
                closed.append(partial(of: state, slots: Array(state.keys.indices), isFinal: true))
            }
        }
        if !closed.isEmpty {
            dedup.prune()
            users.expire(now: watermark)
            pruneContentNames()
        }
        return closed.sorted { ($0.start, $0.windowIndex) < ($1.start, $1.windowIndex) }
    }

    /// Keeps the content-name table bounded: past 100,000 names, keep only those that
    /// open windows still track.
    private func pruneContentNames() {
        guard contentNames.count > 100_000 else { return }
        var kept = HashMap64<String>(vacant: "")
        for state in open.joined() {
            for index in state.aggregates.indices {
                var aggregate = state.aggregates[index].topContent
                aggregate.attachNames { contentNames[$0] }
                for (hash, name) in aggregate.knownNames { kept[hash] = name }
            }
        }
        contentNames = kept
    }

    /// Partials of the segments that changed since the last call, for open windows.
    public func takeUpdates() -> [WindowPartial] {
        var updates: [WindowPartial] = []
        for states in open {
            for state in states.sorted(by: { $0.start < $1.start }) where !state.changedSlots.isEmpty {
                updates.append(partial(of: state, slots: state.changedSlots, isFinal: false))
                for slot in state.changedSlots { state.changed[slot] = false }
                state.changedSlots.removeAll(keepingCapacity: true)
            }
        }
        return updates
    }

    /// An aggregate as it leaves the partition: with the names of its top content.
    private func named(_ aggregate: SegmentAggregate) -> SegmentAggregate {
        var copy = aggregate
        copy.topContent.attachNames { contentNames[$0] }
        return copy
    }

    private func partial(of state: WindowState, slots: [Int], isFinal: Bool) -> WindowPartial {
        let segments = slots.map { (name: assigner.name(of: state.keys[$0]), aggregate: named(state.aggregates[$0])) }.sorted { $0.name < $1.name }
        return WindowPartial(windowIndex: state.windowIndex, start: state.start, end: state.end, segments: segments,
                             overflowedEvents: state.overflowedEvents, isFinal: isFinal)
    }

    // MARK: Checkpoints

    static let formatVersion: UInt8 = 1

    /// The complete state, deterministic bytes.
    public func checkpoint() -> [UInt8] {
        var writer = BinaryWriter(capacity: 4096)
        writer.write(PartitionAggregator.formatVersion)
        writer.writeSigned(watermark)
        writer.writeSigned(maxEventTime)
        for counter in [acceptedCount, duplicateCount, lateCount, invalidCount] { writer.writeSigned(counter) }
        let states = open.joined().sorted { ($0.windowIndex, $0.start) < ($1.windowIndex, $1.start) }
        writer.writeVarint(states.count)
        for state in states {
            writer.writeVarint(state.windowIndex)
            writer.writeSigned(state.start)
            writer.writeSigned(state.overflowedEvents)
            let order = state.keys.indices.sorted { assigner.name(of: state.keys[$0]) < assigner.name(of: state.keys[$1]) }
            writer.writeVarint(order.count)
            for slot in order {
                writer.writeString(assigner.name(of: state.keys[slot]))
                named(state.aggregates[slot]).encode(into: &writer)
            }
        }
        users.encode(into: &writer)
        dedup.encode(into: &writer)
        return writer.bytes
    }

    /// Restores a ``checkpoint()``. The configuration must have the same windows.
    public func restore(_ bytes: [UInt8]) throws(BinaryReader.Error) {
        var reader = BinaryReader(bytes)
        try reader.expectVersion(PartitionAggregator.formatVersion, of: "partition checkpoint")
        watermark = try reader.readSigned()
        maxEventTime = try reader.readSigned()
        acceptedCount = try reader.readSigned()
        duplicateCount = try reader.readSigned()
        lateCount = try reader.readSigned()
        invalidCount = try reader.readSigned()
        open = Array(repeating: [], count: config.windows.count)
        let windowCount = try reader.readCount(limit: 1 << 20)
        for _ in 0..<windowCount {
            let index = try reader.readCount(limit: config.windows.count - 1)
            let start = try reader.readSigned()
            let state = WindowState(windowIndex: index, start: start, end: start + config.windows[index].size)
            state.overflowedEvents = try reader.readSigned()
            let segmentCount = try reader.readCount(limit: 1 << 24)
            for _ in 0..<segmentCount {
                let name = try reader.readString(limit: 1 << 16)
                let key = assigner.register(name)
                state.slots[key] = state.keys.count
                state.keys.append(key)
                let aggregate = try SegmentAggregate.decode(from: &reader)
                for (hash, name) in aggregate.topContent.knownNames { contentNames[hash] = name }
                state.aggregates.append(aggregate)
                state.changed.append(false)
            }
            open[index].append(state)
        }
        try users.decode(from: &reader)
        dedup = try Deduplicator.decode(from: &reader)
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes in partition checkpoint") }
    }
}

extension SegmentAssigner {
    /// Makes a segment name known (after a restore) and returns its key.
    @discardableResult
    public func register(_ name: String) -> UInt64 {
        let key = Hash64.hash(name)
        registerName(name, key: key)
        return key
    }
}
