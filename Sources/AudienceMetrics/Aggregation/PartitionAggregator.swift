/// Stage 1's computation for one input partition: de-duplication, per-user state,
/// segments, event-time windows with a watermark, and partial aggregates.
///
/// Hopping windows whose size is a whole number of advances are built from slices: each
/// event updates the one slice (`advance` long) that holds it, and a window's aggregate
/// is the merge of its slices, taken when its partial is built. What depends on where a
/// window starts — retained users, users new in the window whose first event lies in an
/// earlier slice, and the late and invalid counts credited to the newest window — is kept
/// per window and merged in too. An event whose slice is shared by an older window that
/// is closed but not yet emitted goes to its open windows one by one instead, as
/// tumbling windows' events always do. A tumbling size as long as a sliced size's advance
/// (1m beside 10m/1m) shares those slices: its open window holds only what its slice does
/// not (retained users, and events that went to windows one by one), and takes the slice
/// in when closing emits it. So the partials are those of counting every event
/// into every open window that contains it (top content up to the merge of Space-Saving
/// summaries).
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
    let assigner: SegmentAssigner
    /// Per window size, its open windows (for a sliced size: what only each window holds).
    var open: [[WindowState]]
    /// Per window size, its slices, or nil where every window is kept whole.
    let slicing: [Slicing?]
    /// Per tumbling size, the sliced size whose slices are its windows, if any.
    let sharedSlices: [Int?]
    /// Per window size kept as whole windows (neither sliced nor sharing slices), its
    /// segments' user counts in the last closed window, which size a new window's tables.
    let sizeHints: [SizeHints?]
    var users: UserStates
    var dedup: Deduplicator
    /// Restored from a checkpoint of a stage that sent whole windows, while this one sends
    /// slices: stage 2 holds whole windows from this partition, so every slice and every
    /// pending window's own part go out in full first (``takeResentParts()``).
    var resendsParts = false
    /// Per aggregate, the hash of the bytes the last checkpoint wrote for it: an increment
    /// writes only the aggregates whose bytes changed since. Nil until a checkpoint is
    /// taken (and after a restore).
    var written: [AggregateKey: UInt64]?
    /// Aggregates the last ``checkpointIncrement()`` marked unchanged instead of writing.
    public internal(set) var unchangedInLastIncrement = 0
    /// Aggregates the last increment wrote as their counters' changes.
    public internal(set) var changedInLastIncrement = 0
    /// Event time up to which windows are complete (ms); `Int64.min` before any event.
    public internal(set) var watermark: Int64 = .min
    /// The newest event time seen (ms).
    public internal(set) var maxEventTime: Int64 = .min
    /// Counters since the partition was first processed (restored with checkpoints).
    public internal(set) var acceptedCount: Int64 = 0
    public internal(set) var duplicateCount: Int64 = 0
    public internal(set) var lateCount: Int64 = 0
    public internal(set) var invalidCount: Int64 = 0
    /// Names of content ids seen (by hash), so counting content allocates nothing.
    var contentNames = HashMap64<String>(vacant: "")
    private let dwellBucketer = QuantileSketch()
    /// Whether per-user state is kept (``MetricFamilies/needsUserState``).
    let keepsUsers: Bool
    private let allKey = Hash64.hash("all")
    private let overflowKey = Hash64.hash(SegmentSpec.overflowSegment)
    private let tracksAll: Bool
    /// Scratch: the slots of the current event's segments in one window.
    private let slots: UnsafeMutableBufferPointer<Int>
    /// Scratch: the windows of a sliced size that count the current event's user as new
    /// or retained, and their segments' slots (the segments of each window in turn).
    /// (Unretained: `open` holds them meanwhile.)
    private let windowTargets: UnsafeMutableBufferPointer<(state: Unmanaged<WindowState>, isNew: Bool, isRetained: Bool)>
    private let windowSlots: UnsafeMutableBufferPointer<Int>


    /// - Parameter assigner: the thread's segment assigner (it must have been created for
    ///   `config.segments` and the decoder's attribute slots).
    public init(config: AggregationConfig, assigner: SegmentAssigner) {
        self.config = config
        self.assigner = assigner
        open = Array(repeating: [], count: config.windows.count)
        let sources = config.sliceSources
        slicing = sources.enumerated().map { index, source in source == index ? Slicing() : nil }
        sharedSlices = sources.enumerated().map { index, source in source == index ? nil : source }
        sizeHints = sources.map { $0 == nil ? SizeHints() : nil }
        users = UserStates(rules: config.sessions, ttl: config.userTTL, maxUsers: config.maxUsersPerPartition)
        keepsUsers = config.metrics.needsUserState
        dedup = Deduplicator(horizon: config.deduplicationHorizon, maxEntries: config.deduplicationMaxEntries)
        tracksAll = config.segments.dimensions.contains([])
        // The assigner gives at most one key per combination and rule.
        let keys = max(1, assigner.spec.dimensions.count + assigner.spec.rules.count)
        slots = .allocate(capacity: keys)
        // A sliced size's event lies in size / advance windows.
        let windowsPerEvent = zip(config.windows, slicing).map { $1 == nil ? 0 : Int($0.size / $0.advance) }.max() ?? 0
        windowSlots = .allocate(capacity: max(1, windowsPerEvent * keys))
        windowTargets = .allocate(capacity: max(1, windowsPerEvent))
    }

    deinit {
        slots.deallocate()
        windowSlots.deallocate()
        windowTargets.deallocate()
    }

    /// Tracked users and remembered event ids (for sizing and metrics).
    public var trackedUsers: Int { users.count }
    public var rememberedEventIDs: Int { dedup.count }
    /// Open windows across all window sizes.
    public var openWindowCount: Int {
        open.indices.reduce(0) { count, index in
            count + (slicing[index] == nil ? open[index].count : slicedWindowStarts(index, through: .max).count)
        }
    }

    @inline(__always)
    func isOpen(_ start: Int64, _ spec: WindowSpec) -> Bool {
        watermark == .min || start + spec.size + config.allowedLateness > watermark
    }

    @inline(__always)
    private func window(_ index: Int, start: Int64) -> WindowState {
        windowReference(index, start: start).takeUnretainedValue()
    }

    /// The open window of size `index` starting at `start`, created if missing, without
    /// a reference count of its own: `open` holds it until ``closeReadyWindows()``, so it
    /// is valid for the event being processed. The lookup runs for every event and window:
    /// without the count, reference counting went from 10.5 to 8.8 % of stage 1's samples
    /// (`perf record -- pulse bench core --only stage1`).
    @inline(__always)
    private func windowReference(_ index: Int, start: Int64) -> Unmanaged<WindowState> {
        let found = open[index].withUnsafeBufferPointer { states -> Unmanaged<WindowState>? in
            for position in states.indices where states[position].start == start { return .passUnretained(states[position]) }
            return nil
        }
        if let found { return found }
        let spec = config.windows[index]
        let state = WindowState(windowIndex: index, start: start, end: start + spec.size, sizeHints: sizeHints[index])
        state.sharesSlice = sharedSlices[index] != nil
        open[index].append(state)
        return .passUnretained(state)
    }

    /// The open window of tumbling size `index` at `time` if the slice it shares counts
    /// the event for it (the event goes to that slice, and the window still shares it).
    @inline(__always)
    private func sharingWindow(_ index: Int, _ spec: WindowSpec, time: Int64) -> WindowState? {
        guard let sliced = sharedSlices[index], let slicing = slicing[sliced] else { return nil }
        let start = spec.lastStart(containing: time)
        guard isOpen(start, spec), sliceStart(for: time, config.windows[sliced], slicing) != nil else { return nil }
        let state = window(index, start: start)
        return state.sharesSlice ? state : nil
    }

    /// Windows sharing a slice that the watermark has closed take the slice in, before
    /// closing removes slices. Until then the slice holds only their events: an event goes
    /// to a slice only while the oldest unemitted window containing it is open, and the
    /// oldest window of the sliced size that contains a slice ends with that slice's
    /// tumbling window (their lateness is the same), so both are emitted by one closing.
    func detachClosedWindows() {
        for (index, sliced) in sharedSlices.enumerated() {
            guard let sliced, let slicing = slicing[sliced] else { continue }
            let spec = config.windows[index]
            for state in open[index] where state.sharesSlice && !isOpen(state.start, spec) {
                state.sharesSlice = false
                if let slice = slicing.slices.first(where: { $0.start == state.start }) { state.absorb(slice) }
            }
        }
    }

    /// The slot of segment `key` in `state` (the overflow segment past the cap), created
    /// if missing, marked changed.
    @inline(__always)
    private func slot(_ key: UInt64, in state: WindowState) -> Int {
        state.slot(for: key, cap: config.segments.maxSegmentsPerWindow, overflowKey: overflowKey, topContentCapacity: config.topContentCapacity)
    }

    /// Calls `body` with what an event at `time` updates for window size `index`: its slice
    /// (`isSlice`), or else each open window containing it. Returns the slice's start, if
    /// a slice was updated.
    @inline(__always)
    @discardableResult
    private func forEachTarget(_ index: Int, _ spec: WindowSpec, time: Int64, _ body: (_ state: WindowState, _ isSlice: Bool) -> Void) -> Int64? {
        if let slicing = slicing[index], let start = sliceStart(for: time, spec, slicing) {
            body(slice(slicing, index, start: start), true)
            return start
        }
        spec.forEachStart(containing: time) { start in
            if isOpen(start, spec) { windowReference(index, start: start)._withUnsafeGuaranteedRef { body($0, false) } }
        }
        return nil
    }

    /// The slice starting at `start`, created (in order) if missing.
    @inline(__always)
    private func slice(_ slicing: Slicing, _ index: Int, start: Int64) -> WindowState {
        var position = slicing.slices.count
        while position > 0 {
            let candidate = slicing.slices[position - 1]
            if candidate.start == start { return candidate }
            if candidate.start < start { break }
            position -= 1
        }
        let state = WindowState(windowIndex: index, start: start, end: start + config.windows[index].advance)
        slicing.slices.insert(state, at: position)
        return state
    }

    /// The slice that an event at `time` may update instead of each of its windows: when
    /// every window containing it that has not been emitted is open. Nil when some such
    /// window is closed (the event goes to the open ones one by one), or none is left.
    ///
    /// Sending slices (``AggregationConfig/sendsSlices``), a slice is sent final when its
    /// oldest window closes, and never changes after: an event goes to it only while that
    /// window is open, else to the open windows one by one.
    @inline(__always)
    private func sliceStart(for time: Int64, _ spec: WindowSpec, _ slicing: Slicing) -> Int64? {
        let last = spec.lastStart(containing: time)
        if config.sendsSlices { return isOpen(last - spec.size + spec.advance, spec) ? last : nil }
        let oldest = slicing.oldestPendingStart(containing: last, spec)
        return oldest <= last && isOpen(oldest, spec) ? last : nil
    }

    /// What an accepted event adds to each aggregate that counts it.
    private struct Contribution {
        let event: DecodedEvent
        let update: UserUpdate
        let isConversion: Bool
        /// A page view of a content id, counted for top content.
        let countsContent: Bool
        /// The dwell time's quantile bucket, or nil when only its count and sum are kept.
        let dwellBucket: Int?
        let countsSessions: Bool

        /// Adds the event to `aggregate`; `otherTypeName` is its type's name when
        /// ``DecodedEvent/typeCode`` is negative.
        @inline(__always)
        func add(to aggregate: inout SegmentAggregate, isNew: Bool, isRetained: Bool, otherTypeName: String?) {
            aggregate.events += 1
            if event.typeCode >= 0 {
                aggregate.knownTypes[event.typeCode] += 1
            } else {
                aggregate.otherTypes[otherTypeName ?? "", default: 0] += 1
            }
            aggregate.users.insert(event.userIDHash)
            if isNew { aggregate.newUsers.insert(event.userIDHash) }
            if isRetained { aggregate.retainedUsers.insert(event.userIDHash) }
            if isConversion {
                aggregate.convertingUsers.insert(event.userIDHash)
                aggregate.revenueMicros &+= event.valueMicros ?? 0
            }
            if event.dwellMs >= 0 {
                if let dwellBucket { aggregate.dwell.add(event.dwellMs, bucket: dwellBucket) } else { aggregate.dwell.addToTotals(event.dwellMs) }
            }
            if countsContent { aggregate.topContent.add(hash: event.contentIDHash) }
            // Session figures are credited to the window of the event that causes them,
            // so they depend only on the user's own events.
            guard countsSessions else { return }
            if update.sessionStarted { aggregate.sessionsStarted += 1 }
            if update.becameEngaged { aggregate.sessionsEngaged += 1 }
            aggregate.sessionDurationMs += update.durationAdded
        }
    }

    /// Starts loading the state that processing `event` will touch first (its id in the
    /// de-duplicator, its user), so a caller that decodes the next event before processing
    /// the current one overlaps those memory loads with that work. A hint only: results
    /// do not depend on it.
    @inline(__always)
    public func prefetch(_ event: DecodedEvent) {
        dedup.prefetch(event.eventIDHash)
        if keepsUsers { users.prefetch(event.userIDHash) }
    }

    /// Processes the decoder's current event.
    public func process(_ decoder: EventDecoder) -> Outcome {
        let event = decoder.event
        let time = event.timestamp
        assigner.assign(decoder)
        let keys = assigner.keys

        if dedup.isDuplicate(event.eventIDHash, at: time) {
            duplicateCount += 1
            for (index, spec) in config.windows.enumerated() where sharingWindow(index, spec, time: time) == nil {
                forEachTarget(index, spec, time: time) { state, _ in
                    for key in keys { state.aggregates[slot(key, in: state)].duplicates += 1 }
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

        let metrics = config.metrics
        var update = keepsUsers ? users.update(user: event.userIDHash, time: time, typeCode: event.typeCode) : .untracked
        if !metrics.contains(.retention) { update.forgetHistory() }
        let countsContent = metrics.contains(.topContent) && event.typeCode == KnownEventType.pageView.rawValue && event.hasContent
        if countsContent && !contentNames.contains(event.contentIDHash) {
            contentNames[event.contentIDHash] = decoder.string(event.contentID)
        }
        let contribution = Contribution(
            event: event, update: update, isConversion: metrics.contains(.conversion) && config.conversionTypes.contains(event.typeCode),
            countsContent: countsContent,
            dwellBucket: metrics.contains(.dwellQuantiles) && event.dwellMs >= 0 ? dwellBucketer.bucket(of: event.dwellMs) : nil,
            countsSessions: metrics.contains(.sessions))
        let typeName = event.typeCode >= 0 ? nil : decoder.string(event.type)
        for (index, spec) in config.windows.enumerated() {
            if let state = sharingWindow(index, spec, time: time) {
                // The shared slice counts the event; a retained user is this window's own.
                if update.previousLastSeen < state.start && update.previousLastSeen >= state.start - spec.size {
                    for key in keys { state.aggregates[slot(key, in: state)].retainedUsers.insert(event.userIDHash) }
                }
                continue
            }
            let slicedAt = forEachTarget(index, spec, time: time) { state, isSlice in
                let isNew = update.firstSeen >= state.start && update.firstSeen < state.end
                // A slice leaves retained users to its windows (below).
                let isRetained = !isSlice && update.previousLastSeen < state.start && update.previousLastSeen >= state.start - spec.size
                // The slots first, each segment's user table asked for the event's user;
                // then the additions, whose lookups in those tables (many segments and
                // windows: more than the caches hold) no longer wait one after another.
                for (position, key) in keys.enumerated() { slots[position] = slot(key, in: state) }
                state.aggregates.withUnsafeMutableBufferPointer { aggregates in
                    for position in keys.indices { aggregates[slots[position]].users.prefetch(event.userIDHash) }
                    for position in keys.indices {
                        contribution.add(to: &aggregates[slots[position]], isNew: isNew, isRetained: isRetained, otherTypeName: typeName)
                    }
                }
            }
            guard let start = slicedAt else { continue }
            // Per window: a user new in it whose first event lies in an earlier slice
            // (segments follow each event, so that slice may not count the user in these),
            // and a retained user (it depends on where the window starts).
            let newSinceEarlierSlice = update.firstSeen < start && update.firstSeen > time - spec.size
            let maybeRetained = update.previousLastSeen != .min && update.previousLastSeen < start
            guard newSinceEarlierSlice || maybeRetained else { continue }
            // As for the slices: every window's slots first, each counter asked for the
            // user, then the insertions (up to size/advance windows times the segments:
            // counters spread over more memory than the caches hold).
            var targets = 0
            spec.forEachStart(containing: time) { start in
                guard isOpen(start, spec) else { return }
                let isNew = newSinceEarlierSlice && update.firstSeen >= start
                let isRetained = maybeRetained && update.previousLastSeen < start && update.previousLastSeen >= start - spec.size
                guard isNew || isRetained else { return }
                let reference = windowReference(index, start: start)
                let first = targets * keys.count
                reference._withUnsafeGuaranteedRef { state in
                    for (position, key) in keys.enumerated() { windowSlots[first + position] = slot(key, in: state) }
                    state.aggregates.withUnsafeMutableBufferPointer { aggregates in
                        for position in keys.indices {
                            let slot = windowSlots[first + position]
                            if isNew { aggregates[slot].newUsers.prefetch(event.userIDHash) }
                            if isRetained { aggregates[slot].retainedUsers.prefetch(event.userIDHash) }
                        }
                    }
                }
                windowTargets[targets] = (reference, isNew, isRetained)
                targets += 1
            }
            for number in 0..<targets {
                let (state, isNew, isRetained) = windowTargets[number]
                let first = number * keys.count
                state._withUnsafeGuaranteedRef { state in
                    state.aggregates.withUnsafeMutableBufferPointer { aggregates in
                        for position in keys.indices {
                            let slot = windowSlots[first + position]
                            if isNew { aggregates[slot].newUsers.insert(event.userIDHash) }
                            if isRetained { aggregates[slot].retainedUsers.insert(event.userIDHash) }
                        }
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
                change(&state.aggregates[slot(key, in: state)])
            }
        }
    }

    /// Moves the watermark forward (never back), e.g. for a partition that has been idle:
    /// windows then close even without new events.
    public func advanceWatermark(to time: Int64) {
        if time > watermark { watermark = time }
    }
}
