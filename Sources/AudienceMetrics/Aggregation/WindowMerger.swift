/// Stage 2's computation for the segments of one partials partition: merges the partials
/// of every input partition per (segment, window), finalizes a window once the watermark
/// of every input partition has passed its end (plus allowed lateness), and keeps each
/// segment's trend history.
///
/// Input partitions report their watermarks with markers that follow their final
/// partials in every partials partition, so when the slowest input partition's watermark
/// passes a window, all of that window's partials are here. An input partition without
/// events for a window still closes it by its watermark. A marker also says how many
/// final partials it follows per window it closes; until that many have arrived the
/// input partition's watermark is held (a record the broker failed to deliver then
/// stops the window from becoming final instead of finalizing it without its data).
///
/// Idempotent: a partial is a full-state replacement tagged with the input offset it
/// reflects; an older or repeated one is ignored, so replays after a crash change
/// nothing. Final records are computed from partials merged in input-partition order, so
/// the same inputs give byte-identical records. Not thread-safe.
public final class WindowMerger {
    public let config: AggregationConfig
    public let trendConfig: TrendConfig
    /// Input partitions whose close markers a window needs before it is final.
    public let inputPartitions: Int

    struct WindowKey: Hashable, Comparable {
        var windowIndex: Int
        var start: Int64
        static func < (a: WindowKey, b: WindowKey) -> Bool { (a.start, a.windowIndex) < (b.start, b.windowIndex) }
    }

    struct Contribution: Equatable {
        var partition: Int32
        var offset: Int64
        var aggregate: SegmentAggregate
        var overflowedEvents: Int64
        var isFinal: Bool
        /// For a window of a sliced size: whether this is the whole window or its own
        /// part (its slices then add the rest).
        var part: WindowPartial.Part = .window

        /// What it adds to a merge: its aggregate and its overflowed events.
        var summand: (SegmentAggregate, Int64) { (aggregate, overflowedEvents) }
    }

    /// One segment's contributions, at most one per input partition, ascending by
    /// partition: an array sized to what arrived (a dictionary keeps room for up to twice
    /// as many of these large values as it holds).
    struct Contributions: Equatable {
        private(set) var entries: [Contribution] = []

        subscript(partition: Int32) -> Contribution? {
            get {
                let position = self.position(of: partition)
                return position < entries.count && entries[position].partition == partition ? entries[position] : nil
            }
            set {
                let position = self.position(of: partition)
                let present = position < entries.count && entries[position].partition == partition
                switch (newValue, present) {
                case (let value?, true): entries[position] = value
                case (let value?, false): entries.insert(value, at: position)
                case (nil, true): entries.remove(at: position)
                case (nil, false): break
                }
            }
        }

        /// The first entry whose partition is at least `partition` (a scan: there are as
        /// many entries as input partitions at most).
        private func position(of partition: Int32) -> Int {
            entries.firstIndex { $0.partition >= partition } ?? entries.count
        }
    }

    /// A window an input partition closed, and how many final partials (segments) it
    /// sent for it to this partials partition.
    public struct ClosedWindow: Sendable, Hashable {
        public var windowIndex: Int
        public var start: Int64
        public var finals: Int
        /// A slice of the sliced size `windowIndex` starting at `start`, not a window.
        public var isSlice: Bool
        public init(windowIndex: Int, start: Int64, finals: Int, isSlice: Bool = false) {
            self.windowIndex = windowIndex
            self.start = start
            self.finals = finals
            self.isSlice = isSlice
        }

        /// A list of closed windows and slices, as close markers and merge checkpoints
        /// carry them.
        public static func encode(_ windows: [ClosedWindow], into writer: inout BinaryWriter) {
            writer.writeVarint(windows.count)
            for closed in windows {
                writer.writeVarint(closed.windowIndex)
                writer.writeSigned(closed.start)
                writer.writeVarint(closed.finals)
                writer.write(closed.isSlice ? 1 : 0)
            }
        }

        /// Reads ``encode(_:into:)`` (`withSlices` false: the form before slices, without
        /// their flags); window indexes above `maxWindowIndex` are an error.
        public static func decode(from reader: inout BinaryReader, maxWindowIndex: Int, withSlices: Bool = true) throws(BinaryReader.Error) -> [ClosedWindow] {
            var windows: [ClosedWindow] = []
            for _ in 0..<(try reader.readCount(limit: 1 << 20)) {
                var closed = ClosedWindow(windowIndex: try reader.readCount(limit: maxWindowIndex), start: try reader.readSigned(),
                                          finals: try reader.readCount(limit: 1 << 24))
                if withSlices {
                    switch try reader.read() {
                    case 0: break
                    case 1: closed.isSlice = true
                    default: throw BinaryReader.Error(message: "closed window flag")
                    }
                }
                windows.append(closed)
            }
            return windows
        }
    }

    /// A marker whose final partials have not all arrived: its watermark waits.
    struct HeldMarker: Equatable {
        var time: Int64
        var closing: [ClosedWindow]
    }

    final class PendingWindow {
        var segments: [String: Contributions] = [:]
        var touched: Set<String> = []
        /// A slice's segments merged over every input partition, as the windows
        /// containing it take them (derived from `segments`, so never checkpointed): made
        /// when first needed, dropped when a partition's contribution changes.
        var merged: [String: (aggregate: SegmentAggregate, overflow: Int64)] = [:]
    }

    var windows: [WindowKey: PendingWindow] = [:]
    /// Slices of sliced sizes (key: the sliced size and the slice's start), for windows
    /// assembled here (``AggregationConfig/sendsSlices``); a slice's segments list their
    /// contributions as a window's do.
    var slices: [WindowKey: PendingWindow] = [:]
    /// ``AggregationConfig/sliceSources``.
    private let sliceSources: [Int?]
    var trends: [String: TrendState] = [:]  // key: "windowIndex|segment"
    var partitionWatermarks: [Int32: Int64] = [:]
    var held: [Int32: HeldMarker] = [:]
    /// Every window ending (plus lateness) at or before this is final; partials for such
    /// windows are stale.
    public internal(set) var finalizedThrough: Int64 = .min
    /// Partials ignored because an equal or newer one was already applied.
    public internal(set) var stalePartials: Int64 = 0
    /// Each contribution's version as the last checkpoint or increment wrote it; nil when
    /// no checkpoint was taken since this merger was made or restored.
    var written: [ContributionKey: Version]?
    /// Contributions the last increment marked unchanged instead of writing them.
    public internal(set) var unchangedInLastIncrement = 0
    /// Contributions the last increment wrote as their changes.
    public internal(set) var changedInLastIncrement = 0
    /// How each contribution's unique counters changed since `written` (``CounterChanges``).
    var changes: [ContributionKey: CounterChanges] = [:]

    public init(config: AggregationConfig, inputPartitions: Int, trendConfig: TrendConfig = TrendConfig()) {
        self.config = config
        self.inputPartitions = inputPartitions
        self.trendConfig = trendConfig
        sliceSources = config.sliceSources
    }

    public var pendingWindowCount: Int { windows.count }

    /// Whether some input partition's watermark waits for final partials.
    public var isHoldingMarkers: Bool { !held.isEmpty }

    /// Input partitions whose watermark waits for final partials that have not arrived,
    /// with the windows concerned and how many finals each still lacks.
    public var missingFinals: [Int32: [(window: ClosedWindow, missing: Int)]] {
        var result: [Int32: [(window: ClosedWindow, missing: Int)]] = [:]
        for (partition, marker) in held {
            let gaps = marker.closing.compactMap { closed -> (window: ClosedWindow, missing: Int)? in
                let missing = closed.finals - finalsPresent(closed, from: partition)
                return missing > 0 ? (closed, missing) : nil
            }
            if !gaps.isEmpty { result[partition] = gaps }
        }
        return result
    }

    private func finalsPresent(_ closed: ClosedWindow, from partition: Int32) -> Int {
        let key = WindowKey(windowIndex: closed.windowIndex, start: closed.start)
        guard let window = closed.isSlice ? slices[key] : windows[key] else { return 0 }
        return window.segments.values.reduce(0) { $0 + ($1[partition]?.isFinal == true ? 1 : 0) }
    }

    /// Applies one partial from input partition `inputPartition`, reflecting its input up to
    /// `offset`. Returns false if it was stale (ignored).
    ///
    /// A slice (`part` `.slice`, `windowIndex` its sliced size) is kept until every window
    /// containing it is final; the windows assembled from it are updated with it.
    @discardableResult
    public func apply(partial aggregate: SegmentAggregate, segment: String, windowIndex: Int, start: Int64,
                      inputPartition: Int32, offset: Int64, overflowedEvents: Int64 = 0, isFinal: Bool = false,
                      part: WindowPartial.Part = .window) -> Bool {
        // A slice is stale once the newest window containing it (starting with it) is.
        if isFinalized(windowIndex: windowIndex, start: start) {
            stalePartials += 1
            return false
        }
        let key = WindowKey(windowIndex: windowIndex, start: start)
        let target = (part == .slice ? slices[key] : windows[key]) ?? PendingWindow()
        if part == .slice { slices[key] = target } else { windows[key] = target }
        let existing = target.segments[segment]?[inputPartition]
        if let existing, existing.offset >= offset {
            // Not newer, but a final one still says this input partition is done with
            // the window (the state it holds is at least as recent).
            if isFinal && !existing.isFinal { target.segments[segment]?[inputPartition]?.isFinal = true }
            stalePartials += 1
            return false
        }
        if let existing, written != nil {
            noteChange(from: existing, to: aggregate, part: part,
                       at: ContributionKey(window: key, isSlice: part == .slice, segment: segment, partition: inputPartition))
        }
        target.segments[segment, default: Contributions()][inputPartition] = Contribution(
            partition: inputPartition, offset: offset, aggregate: aggregate, overflowedEvents: overflowedEvents, isFinal: isFinal, part: part)
        guard part == .slice else {
            target.touched.insert(segment)
            return true
        }
        target.merged[segment] = nil
        for (index, source) in sliceSources.enumerated() where source == windowIndex {
            config.windows[index].forEachStart(containing: start) { windowStart in
                guard !isFinalized(windowIndex: index, start: windowStart) else { return }
                let windowKey = WindowKey(windowIndex: index, start: windowStart)
                let window = windows[windowKey] ?? PendingWindow()
                windows[windowKey] = window
                if window.segments[segment] == nil { window.segments[segment] = Contributions() }
                window.touched.insert(segment)
            }
        }
        return true
    }

    /// Re-applies the held marker of `inputPartition` once its final partials are all
    /// here; call after applying final partials. Returns the records that became final.
    public func releaseHeldMarker(of inputPartition: Int32) -> [MetricRecord] {
        guard let marker = held[inputPartition] else { return [] }
        return applyWatermark(marker.time, inputPartition: inputPartition, closing: [])
    }

    private func isFinalized(windowIndex: Int, start: Int64) -> Bool {
        start + config.windows[windowIndex].size + config.allowedLateness <= finalizedThrough
    }

    /// The watermark `inputPartition` reported last (nil before its first marker).
    public func watermark(of inputPartition: Int32) -> Int64? { partitionWatermarks[inputPartition] }

    /// The watermark over all input partitions: the slowest one's, once all have reported.
    public var watermark: Int64 {
        guard partitionWatermarks.count >= inputPartitions else { return .min }
        return partitionWatermarks.values.min() ?? .min
    }

    /// Records `inputPartition`'s watermark (it never goes back) once every final partial
    /// the marker announces in `closing` (and any earlier held marker announced) has
    /// arrived; until then holds it. Returns the final records of every window that
    /// thereby became complete, oldest window first, then by window size and segment.
    public func applyWatermark(_ time: Int64, inputPartition: Int32, closing: [ClosedWindow] = []) -> [MetricRecord] {
        var marker = HeldMarker(time: time, closing: closing.filter { $0.finals > 0 })
        if let earlier = held[inputPartition] {
            marker.time = max(marker.time, earlier.time)
            marker.closing = earlier.closing + marker.closing
        }
        marker.closing.removeAll { closed in
            isFinalized(windowIndex: closed.windowIndex, start: closed.start) || finalsPresent(closed, from: inputPartition) >= closed.finals
        }
        guard marker.closing.isEmpty else {
            held[inputPartition] = marker
            return []
        }
        held[inputPartition] = nil
        let time = marker.time
        guard time > partitionWatermarks[inputPartition] ?? .min else { return [] }
        partitionWatermarks[inputPartition] = time
        let global = watermark
        guard global > finalizedThrough else { return [] }
        finalizedThrough = global
        let ready = windows.keys.filter { isFinalized(windowIndex: $0.windowIndex, start: $0.start) }.sorted()
        var records: [MetricRecord] = []
        for key in ready {
            guard let window = windows.removeValue(forKey: key) else { continue }
            let spec = config.windows[key.windowIndex]
            for segment in window.segments.keys.sorted() {
                let (aggregate, overflow) = merged(key, window, segment)
                let trendKey = "\(key.windowIndex)|\(segment)"
                var state = trends[trendKey] ?? TrendState()
                let previousUnique = state.uniqueUsers(ofWindowStarting: key.start - spec.size)
                var record = MetricRecord(segment: segment, window: spec, start: key.start, aggregate: aggregate, isFinal: true,
                                          previousUniqueUsers: previousUnique, trend: nil, overflowedEvents: overflow, config: config)
                // The record's unique users, not a second estimate from the registers.
                record.trend = state.advance(start: key.start, spec: spec, value: Double(aggregate.events), unique: record.uniqueUsers, config: trendConfig)
                trends[trendKey] = state
                records.append(record)
            }
        }
        slices = slices.filter { !isFinalized(windowIndex: $0.key.windowIndex, start: $0.key.start) }
        return records
    }

    /// Non-final records for the segments whose partials changed since the last call.
    public func takeUpdatedRecords() -> [MetricRecord] {
        var records: [MetricRecord] = []
        for key in windows.keys.sorted() {
            guard let window = windows[key], !window.touched.isEmpty else { continue }
            let spec = config.windows[key.windowIndex]
            for segment in window.touched.sorted() {
                let (aggregate, overflow) = merged(key, window, segment)
                let previousUnique = trends["\(key.windowIndex)|\(segment)"]?.uniqueUsers(ofWindowStarting: key.start - spec.size)
                records.append(MetricRecord(segment: segment, window: spec, start: key.start, aggregate: aggregate, isFinal: false,
                                            previousUniqueUsers: previousUnique, trend: nil, overflowedEvents: overflow, config: config))
            }
            window.touched.removeAll()
        }
        return records
    }

    /// A segment's value in a window: its contributions and the window's slices, summed
    /// (counts, registers, quantile bins and top-content counters add up the same in any
    /// order), top content then cut back to its capacity once.
    ///
    /// Where no input partition sent the whole window, each slice comes merged over all
    /// input partitions (``PendingWindow/merged``, made once for every window containing
    /// it; its top content not cut). A whole window from an input partition (sent by a
    /// stage that did not send slices yet) replaces that partition's slices, so then the
    /// window takes, per input partition in order, its contribution and, unless that is
    /// the whole window, its slices.
    private func merged(_ key: WindowKey, _ window: PendingWindow, _ segment: String) -> (SegmentAggregate, Int64) {
        let contributions = window.segments[segment]
        let own = contributions?.entries ?? []
        let capacity = config.topContentCapacity
        guard let source = sliceSources[key.windowIndex] else { return Self.sum(own.lazy.map(\.summand), capacity: capacity) }
        let advance = config.windows[source].advance
        let slices = stride(from: key.start, to: key.start + config.windows[key.windowIndex].size, by: Int(advance)).compactMap {
            self.slices[WindowKey(windowIndex: source, start: $0)]
        }
        guard own.contains(where: { $0.part == .window }) else {
            let parts = slices.compactMap { slice in self.merged(slice: slice, segment) }
            return Self.sum(own.map(\.summand) + parts, capacity: capacity)
        }
        let parts = slices.compactMap { $0.segments[segment] }
        let partitions = Set(own.lazy.map(\.partition)).union(parts.lazy.flatMap { $0.entries.lazy.map(\.partition) }).sorted()
        var entries: [Contribution] = []
        for partition in partitions {
            let contribution = contributions?[partition]
            if let contribution { entries.append(contribution) }
            guard contribution?.part != .window else { continue }
            for slice in parts { if let contribution = slice[partition] { entries.append(contribution) } }
        }
        return Self.sum(entries.lazy.map(\.summand), capacity: capacity)
    }

    /// A slice's segment merged over every input partition, top content not cut (the
    /// window containing it cuts once); nil if the segment has nothing in the slice.
    private func merged(slice: PendingWindow, _ segment: String) -> (SegmentAggregate, Int64)? {
        if let merged = slice.merged[segment] { return merged }
        guard let contributions = slice.segments[segment], !contributions.entries.isEmpty else { return nil }
        let merged = Self.sum(contributions.entries.lazy.map(\.summand), capacity: .max)
        slice.merged[segment] = merged
        return merged
    }

    /// The parts' aggregates merged at once (top content cut back to `capacity` once), and
    /// their overflowed events.
    private static func sum(_ parts: some Collection<(SegmentAggregate, Int64)>, capacity: Int) -> (SegmentAggregate, Int64) {
        let overflow = parts.reduce(0) { $0 + $1.1 }
        // The first part is taken as it is when it has the configured capacity (merging
        // it into an empty aggregate gives the same value, at the cost of copying every
        // sketch); the others are added at once, so top content is cut back once.
        guard let first = parts.first?.0, first.topContent.capacity == capacity else {
            var result = SegmentAggregate(topContentCapacity: capacity)
            result.merge(parts.lazy.map(\.0))
            return (result, overflow)
        }
        var result = first
        result.merge(parts.dropFirst().lazy.map(\.0))
        return (result, overflow)
    }
}
