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
    private let assigner: SegmentAssigner
    /// Per window size, its open windows (for a sliced size: what only each window holds).
    private var open: [[WindowState]]
    /// Per window size, its slices, or nil where every window is kept whole.
    private let slicing: [Slicing?]
    /// Per tumbling size, the sliced size whose slices are its windows, if any.
    private let sharedSlices: [Int?]
    private var users: UserStates
    private var dedup: Deduplicator
    /// Restored from a checkpoint of a stage that sent whole windows, while this one sends
    /// slices: stage 2 holds whole windows from this partition, so every slice and every
    /// pending window's own part go out in full first (``takeResentParts()``).
    private var resendsParts = false
    /// Per aggregate, the hash of the bytes the last checkpoint wrote for it: an increment
    /// writes only the aggregates whose bytes changed since. Nil until a checkpoint is
    /// taken (and after a restore).
    private var written: [AggregateKey: UInt64]?
    /// Aggregates the last ``checkpointIncrement()`` marked unchanged instead of writing.
    public private(set) var unchangedInLastIncrement = 0
    /// Aggregates the last increment wrote as their counters' changes.
    public private(set) var changedInLastIncrement = 0
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
    /// Whether per-user state is kept (``MetricFamilies/needsUserState``).
    private let keepsUsers: Bool
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
        /// A tumbling window whose slice (of another size) holds the rest of it.
        var sharesSlice = false

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

        func clearChanged() {
            for slot in changedSlots { changed[slot] = false }
            changedSlots.removeAll(keepingCapacity: true)
        }

        /// Adds what `slice` holds.
        func absorb(_ slice: WindowState) {
            for (slot, key) in slice.keys.enumerated() {
                if let own = slots[key] {
                    aggregates[own].merge(slice.aggregates[slot])
                } else {
                    slots[key] = keys.count
                    keys.append(key)
                    aggregates.append(slice.aggregates[slot])
                    changed.append(false)
                }
            }
            overflowedEvents += slice.overflowedEvents
        }
    }

    /// The slices of one hopping window size.
    final class Slicing {
        /// Slices (`advance` long, aligned as window starts are), oldest first.
        var slices: [WindowState] = []
        /// Every window starting at or before this has been emitted as final.
        var emittedThrough: Int64 = .min

        /// The start of the oldest window of `spec` that contains the slice starting at
        /// `sliceStart` and has not been emitted (after `sliceStart` if none is left).
        @inline(__always)
        func oldestPendingStart(containing sliceStart: Int64, _ spec: WindowSpec) -> Int64 {
            let first = sliceStart - spec.size + spec.advance
            return emittedThrough == .min ? first : max(first, emittedThrough + spec.advance)
        }

        /// Starts of the windows of `spec` that contain the slice starting at `sliceStart`
        /// and have not been emitted, oldest first.
        func pendingStarts(containing sliceStart: Int64, _ spec: WindowSpec) -> StrideThrough<Int64> {
            stride(from: oldestPendingStart(containing: sliceStart, spec), through: sliceStart, by: Int(spec.advance))
        }
    }

    /// - Parameter assigner: the thread's segment assigner (it must have been created for
    ///   `config.segments` and the decoder's attribute slots).
    public init(config: AggregationConfig, assigner: SegmentAssigner) {
        self.config = config
        self.assigner = assigner
        open = Array(repeating: [], count: config.windows.count)
        let sources = config.sliceSources
        slicing = sources.enumerated().map { index, source in source == index ? Slicing() : nil }
        sharedSlices = sources.enumerated().map { index, source in source == index ? nil : source }
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
    private func isOpen(_ start: Int64, _ spec: WindowSpec) -> Bool {
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
        let state = WindowState(windowIndex: index, start: start, end: start + spec.size)
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
    private func detachClosedWindows() {
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

    /// Removes and returns every window the watermark has passed (its end + allowed
    /// lateness), as final partials, oldest first; forgets expired users and event ids.
    public func closeReadyWindows() -> [WindowPartial] {
        if !config.sendsSlices { detachClosedWindows() }
        var closed = takeResentParts()
        for index in open.indices {
            let spec = config.windows[index]
            let ready = open[index].filter { !isOpen($0.start, spec) }
            if let slicing = slicing[index] {
                guard watermark != .min else { continue }
                // The newest window start the watermark has passed.
                let limit = spec.lastStart(containing: watermark - spec.size - config.allowedLateness)
                if config.sendsSlices {
                    // The closed windows' own parts, then every slice whose oldest window
                    // closed now (it ends no later than the newest closed window).
                    for state in ready.sorted(by: { $0.start < $1.start }) where !state.keys.isEmpty {
                        closed.append(partial(of: state, slots: Array(state.keys.indices), isFinal: true, part: .own))
                    }
                    open[index].removeAll { !isOpen($0.start, spec) }
                    let sentBefore = slicing.emittedThrough == .min ? Int64.min : slicing.emittedThrough + spec.size - spec.advance
                    let finalThrough = limit + spec.size - spec.advance
                    for slice in slicing.slices where slice.start > sentBefore && slice.start <= finalThrough {
                        closed.append(partial(of: slice, slots: Array(slice.keys.indices), isFinal: true, part: .slice))
                        slice.clearChanged()
                    }
                    slicing.emittedThrough = max(slicing.emittedThrough, limit)
                    slicing.slices.removeAll { $0.start <= slicing.emittedThrough }
                    continue
                }
                var starts = slicedWindowStarts(index, through: limit)
                for state in ready { starts.insert(state.start) }
                var suffixes = SuffixMerges()
                for start in starts.sorted(by: >) { closed.append(slicedPartial(index, start: start, keys: nil, isFinal: true, suffixes: &suffixes)) }
                open[index].removeAll { !isOpen($0.start, spec) }
                slicing.emittedThrough = max(slicing.emittedThrough, limit)
                slicing.slices.removeAll { $0.start <= slicing.emittedThrough }
                continue
            }
            guard !ready.isEmpty else { continue }
            open[index].removeAll { !isOpen($0.start, spec) }
            for state in ready.sorted(by: { $0.start < $1.start }) {
                // Sending slices, a window sharing a slice sends only its own part (the
                // slice is sent by its size).
                let part: WindowPartial.Part = config.sendsSlices && state.sharesSlice ? .own : .window
                guard part == .window || !state.keys.isEmpty else { continue }
                closed.append(partial(of: state, slots: Array(state.keys.indices), isFinal: true, part: part))
            }
        }
        if !closed.isEmpty {
            dedup.prune()
            users.expire(now: watermark)
            pruneContentNames()
        }
        return closed.sorted { ($0.start, $0.windowIndex) < ($1.start, $1.windowIndex) }
    }

    /// After a restore from a stage that sent whole windows (``resendsParts``), once:
    /// every slice in full, and for every pending window of a size assembled from slices
    /// its own part for each segment it or its slices hold (empty where it holds nothing
    /// of its own), which replaces the whole window stage 2 holds. Not final: their
    /// windows close later. Whole windows kept from before slices were shared (format 2)
    /// stay whole.
    private func takeResentParts() -> [WindowPartial] {
        guard resendsParts else { return [] }
        resendsParts = false
        var parts: [WindowPartial] = []
        for (index, source) in config.sliceSources.enumerated() {
            guard let source, let slicing = slicing[source] else { continue }
            let spec = config.windows[index]
            if source == index {
                for slice in slicing.slices {
                    parts.append(partial(of: slice, slots: Array(slice.keys.indices), isFinal: false, part: .slice))
                    slice.clearChanged()
                }
            }
            let starts = source == index ? slicedWindowStarts(index, through: .max) : Set(open[index].lazy.filter(\.sharesSlice).map(\.start))
            for start in starts.sorted() {
                let own = open[index].first { $0.start == start }
                let inWindow = slicing.slices.filter { $0.start >= start && $0.start < start + spec.size }
                var keys = Set(own?.keys ?? [])
                for slice in inWindow { keys.formUnion(slice.keys) }
                let segments = keys.map { key in
                    var aggregate = SegmentAggregate(topContentCapacity: config.topContentCapacity)
                    if let own, let slot = own.slots[key] { aggregate = named(own.aggregates[slot]) }
                    return (name: assigner.name(of: key), aggregate: aggregate)
                }.sorted { $0.name < $1.name }
                guard !segments.isEmpty else { continue }
                parts.append(WindowPartial(windowIndex: index, start: start, end: start + spec.size, segments: segments,
                                           overflowedEvents: own?.overflowedEvents ?? 0, isFinal: false, part: .own))
                own?.clearChanged()
            }
        }
        return parts
    }

    /// Keeps the content-name table bounded: past 100,000 names, keep only those that
    /// open windows and slices still track.
    private func pruneContentNames() {
        guard contentNames.count > 100_000 else { return }
        var kept = HashMap64<String>(vacant: "")
        for state in Array(open.joined()) + slicing.compactMap({ $0?.slices }).joined() {
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
        if config.sendsSlices { return takeResentParts() + takeUpdatedParts() }
        var updates: [WindowPartial] = []
        // The segments that changed in slices shared with tumbling windows, read before
        // the slices' own updates below clear them: window size → window start → keys.
        var sliceChanges: [Int: [Int64: [UInt64]]] = [:]
        for (index, sliced) in sharedSlices.enumerated() {
            guard let sliced, let slicing = slicing[sliced] else { continue }
            for state in open[index] where state.sharesSlice {
                guard let slice = slicing.slices.first(where: { $0.start == state.start }), !slice.changedSlots.isEmpty else { continue }
                sliceChanges[index, default: [:]][state.start] = slice.changedSlots.map { slice.keys[$0] }
            }
        }
        for (index, states) in open.enumerated() {
            if let slicing = slicing[index] {
                let spec = config.windows[index]
                // Window start → its segments that changed, in it or in one of its slices.
                var changed: [Int64: Set<UInt64>] = [:]
                for state in states where !state.changedSlots.isEmpty {
                    changed[state.start, default: []].formUnion(state.changedSlots.lazy.map { state.keys[$0] })
                }
                for slice in slicing.slices where !slice.changedSlots.isEmpty {
                    let keys = slice.changedSlots.map { slice.keys[$0] }
                    for start in slicing.pendingStarts(containing: slice.start, spec) { changed[start, default: []].formUnion(keys) }
                    slice.clearChanged()
                }
                // Newest first, so that windows ending after the same slices share merges.
                var suffixes = SuffixMerges()
                var built: [WindowPartial] = []
                for (start, keys) in changed.sorted(by: { $0.key > $1.key }) {
                    built.append(slicedPartial(index, start: start, keys: Array(keys), isFinal: false, suffixes: &suffixes))
                }
                updates += built.reversed()
                for state in states { state.clearChanged() }
                continue
            }
            for state in states.sorted(by: { $0.start < $1.start }) {
                if state.sharesSlice, let sliced = sharedSlices[index] {
                    let keys = Set(state.changedSlots.lazy.map { state.keys[$0] }).union(sliceChanges[index]?[state.start] ?? [])
                    guard !keys.isEmpty else { continue }
                    var suffixes = SuffixMerges()
                    updates.append(slicedPartial(index, slicesOf: sliced, start: state.start, keys: Array(keys), isFinal: false, suffixes: &suffixes))
                    state.clearChanged()
                    continue
                }
                guard !state.changedSlots.isEmpty else { continue }
                updates.append(partial(of: state, slots: state.changedSlots, isFinal: false))
                state.clearChanged()
            }
        }
        return updates
    }

    /// ``takeUpdates()`` sending slices: the changed segments of each slice, and of each
    /// window what it holds of its own.
    private func takeUpdatedParts() -> [WindowPartial] {
        var updates: [WindowPartial] = []
        for (index, states) in open.enumerated() {
            for slice in slicing[index]?.slices ?? [] where !slice.changedSlots.isEmpty {
                updates.append(partial(of: slice, slots: slice.changedSlots, isFinal: false, part: .slice))
                slice.clearChanged()
            }
            let ownPart: WindowPartial.Part = slicing[index] != nil ? .own : .window
            for state in states.sorted(by: { $0.start < $1.start }) where !state.changedSlots.isEmpty {
                updates.append(partial(of: state, slots: state.changedSlots, isFinal: false, part: state.sharesSlice ? .own : ownPart))
                state.clearChanged()
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

    private func partial(of state: WindowState, slots: [Int], isFinal: Bool, part: WindowPartial.Part = .window) -> WindowPartial {
        let segments = slots.map { (name: assigner.name(of: state.keys[$0]), aggregate: named(state.aggregates[$0])) }.sorted { $0.name < $1.name }
        return WindowPartial(windowIndex: state.windowIndex, start: state.start, end: state.end, segments: segments,
                             overflowedEvents: state.overflowedEvents, isFinal: isFinal, part: part)
    }

    /// Starts of the windows of a sliced size that have not been emitted, start at or
    /// before `limit`, and hold something (in a slice or of their own).
    private func slicedWindowStarts(_ index: Int, through limit: Int64) -> Set<Int64> {
        guard let slicing = slicing[index] else { return [] }
        let spec = config.windows[index]
        var starts = Set(open[index].lazy.map(\.start).filter { $0 <= limit })
        for slice in slicing.slices {
            starts.formUnion(slicing.pendingStarts(containing: slice.start, spec).lazy.filter { $0 <= limit })
        }
        return starts
    }

    /// Per segment, the merge of the slices from some position up to (not including)
    /// `upper`, so that windows asked for newest first, all ending after the same slices,
    /// each extend it back to their start: about one merge per window, not one per slice.
    private struct SuffixMerges {
        var upper = -1
        var merges: [UInt64: (position: Int, aggregate: SegmentAggregate?)] = [:]
    }

    /// A sliced window's partial: for each segment (`keys`, or all it holds), the merge of
    /// what its slices (those of size `sliced`: its own, or those a tumbling window shares)
    /// hold and what it holds of its own. `suffixes` carries the slices' merges from one
    /// call to the next (it starts over when the window ends elsewhere).
    private func slicedPartial(_ index: Int, slicesOf sliced: Int? = nil, start: Int64, keys: [UInt64]?, isFinal: Bool, suffixes: inout SuffixMerges) -> WindowPartial {
        let end = start + config.windows[index].size
        let slices = slicing[sliced ?? index]?.slices ?? []
        let own = open[index].first { $0.start == start }
        let upper = slices.firstIndex { $0.start >= end } ?? slices.count
        if suffixes.upper != upper { suffixes = SuffixMerges(upper: upper) }
        let first = slices[..<upper].firstIndex { $0.start >= start } ?? upper
        var segments: [(name: String, aggregate: SegmentAggregate)] = []
        for key in keys ?? Array(Set(slices[first..<upper].lazy.flatMap(\.keys) + (own?.keys ?? []))) {
            var (position, merged) = suffixes.merges[key].flatMap { $0.position >= first ? $0 : nil } ?? (upper, nil)
            while position > first {
                position -= 1
                if let slot = slices[position].slots[key] { Self.add(slices[position].aggregates[slot], to: &merged) }
            }
            suffixes.merges[key] = (position, merged)
            if let own, let slot = own.slots[key] {
                // The window's own part first: the slices' merge, kept for the next
                // window, is then read, not copied to be written.
                var whole = own.aggregates[slot]
                if let merged { whole.merge(merged) }
                merged = whole
            }
            if let merged { segments.append((name: assigner.name(of: key), aggregate: named(merged))) }
        }
        segments.sort { $0.name < $1.name }
        let overflowed = slices[first..<upper].reduce(own?.overflowedEvents ?? 0) { $0 + $1.overflowedEvents }
        return WindowPartial(windowIndex: index, start: start, end: end, segments: segments, overflowedEvents: overflowed, isFinal: isFinal)
    }

    /// `merged` ⊕ `aggregate`, in place (nil: nothing yet).
    private static func add(_ aggregate: SegmentAggregate, to merged: inout SegmentAggregate?) {
        if merged == nil {
            merged = aggregate
        } else {
            merged?.merge(aggregate)
        }
    }

    // MARK: Checkpoints

    /// 2: sliced window sizes' slices follow the windows. 3: each window says whether it
    /// shares a slice. 4: whether stage 2 holds this partition's slices and windows' own
    /// parts (``AggregationConfig/sendsSlices``). 5: in an increment, each aggregate is
    /// marked unchanged since the checkpoint before (0, not written) or written (1). 6: or
    /// changed (2: written with each unique counter as its change since that checkpoint,
    /// ``SegmentAggregate/encode(changes:into:)``).
    static let formatVersion: UInt8 = 6

    /// An aggregate's place in the state: its window (or slice) and segment.
    private struct AggregateKey: Hashable {
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

extension SegmentAssigner {
    /// Makes a segment name known (after a restore) and returns its key.
    @discardableResult
    public func register(_ name: String) -> UInt64 {
        let key = Hash64.hash(name)
        registerName(name, key: key)
        return key
    }
}
