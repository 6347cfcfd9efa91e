/// What leaves the aggregator: final partials of the windows the watermark closed, and
/// updates of the windows that changed since the last ones.
extension PartitionAggregator {
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
            let oldestFirst = ready.sorted(by: { $0.start < $1.start })
            sizeHints[index]?.record(oldestFirst)
            for state in oldestFirst {
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
    func named(_ aggregate: SegmentAggregate) -> SegmentAggregate {
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
    func slicedWindowStarts(_ index: Int, through limit: Int64) -> Set<Int64> {
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
}
