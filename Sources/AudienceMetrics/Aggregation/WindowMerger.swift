/// Stage 2's computation for the segments of one partials partition: merges the partials
/// of every input partition per (segment, window), finalizes a window once every input
/// partition closed it, and keeps each segment's trend history.
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
        var offset: Int64
        var aggregate: SegmentAggregate
        var overflowedEvents: Int64
    }

    final class PendingWindow {
        var segments: [String: [Int32: Contribution]] = [:]
        var closedBy: Set<Int32> = []
        var touched: Set<String> = []
    }

    private var windows: [WindowKey: PendingWindow] = [:]
    private var trends: [String: TrendState] = [:]  // key: "windowIndex|segment"
    /// Windows already finalized, per window size (to drop partials that arrive after a
    /// replay): the newest finalized start.
    private var finalizedThrough: [Int: Int64] = [:]
    /// Partials ignored because an equal or newer one was already applied.
    public private(set) var stalePartials: Int64 = 0

    public init(config: AggregationConfig, inputPartitions: Int, trendConfig: TrendConfig = TrendConfig()) {
        self.config = config
        self.inputPartitions = inputPartitions
        self.trendConfig = trendConfig
    }

    public var pendingWindowCount: Int { windows.count }

    /// Applies one partial from input partition `inputPartition`, reflecting its input up to
    /// `offset`. Returns false if it was stale (ignored).
    @discardableResult
    public func apply(partial aggregate: SegmentAggregate, segment: String, windowIndex: Int, start: Int64,
                      inputPartition: Int32, offset: Int64, overflowedEvents: Int64 = 0) -> Bool {
        if let done = finalizedThrough[windowIndex], start <= done {
            stalePartials += 1
            return false
        }
        let key = WindowKey(windowIndex: windowIndex, start: start)
        let window = windows[key] ?? PendingWindow()
        windows[key] = window
        if let existing = window.segments[segment]?[inputPartition], existing.offset >= offset {
            stalePartials += 1
            return false
        }
        window.segments[segment, default: [:]][inputPartition] = Contribution(offset: offset, aggregate: aggregate, overflowedEvents: overflowedEvents)
        window.touched.insert(segment)
        return true
    }

    /// Records that `inputPartition` closed a window. Returns the final records of the
    /// window (sorted by segment) once every input partition has closed it.
    public func applyClose(windowIndex: Int, start: Int64, inputPartition: Int32) -> [MetricRecord] {
        if let done = finalizedThrough[windowIndex], start <= done { return [] }
        let key = WindowKey(windowIndex: windowIndex, start: start)
        let window = windows[key] ?? PendingWindow()
        windows[key] = window
        window.closedBy.insert(inputPartition)
        guard window.closedBy.count >= inputPartitions else { return [] }
        windows[key] = nil
        finalizedThrough[windowIndex] = max(finalizedThrough[windowIndex] ?? .min, start)
        let spec = config.windows[windowIndex]
        return window.segments.keys.sorted().map { segment in
            let (aggregate, overflow) = merged(window.segments[segment] ?? [:])
            let trendKey = "\(windowIndex)|\(segment)"
            var state = trends[trendKey] ?? TrendState()
            let previousUnique = state.uniqueUsers(ofWindowStarting: start - spec.size)
            let values = state.advance(start: start, spec: spec, value: Double(aggregate.events), unique: aggregate.users.count, config: trendConfig)
            trends[trendKey] = state
            return MetricRecord(segment: segment, window: spec, start: start, aggregate: aggregate, isFinal: true,
                                previousUniqueUsers: previousUnique, trend: values, overflowedEvents: overflow, config: config)
        }
    }

    /// Non-final records for the segments whose partials changed since the last call.
    public func takeUpdatedRecords() -> [MetricRecord] {
        var records: [MetricRecord] = []
        for key in windows.keys.sorted() {
            guard let window = windows[key], !window.touched.isEmpty else { continue }
            let spec = config.windows[key.windowIndex]
            for segment in window.touched.sorted() {
                let (aggregate, overflow) = merged(window.segments[segment] ?? [:])
                let previousUnique = trends["\(key.windowIndex)|\(segment)"]?.uniqueUsers(ofWindowStarting: key.start - spec.size)
                records.append(MetricRecord(segment: segment, window: spec, start: key.start, aggregate: aggregate, isFinal: false,
                                            previousUniqueUsers: previousUnique, trend: nil, overflowedEvents: overflow, config: config))
            }
            window.touched.removeAll()
        }
        return records
    }

    private func merged(_ contributions: [Int32: Contribution]) -> (SegmentAggregate, Int64) {
        var result = SegmentAggregate(topContentCapacity: config.topContentCapacity)
        var overflow: Int64 = 0
        for partition in contributions.keys.sorted() {
            guard let contribution = contributions[partition] else { continue }
            result.merge(contribution.aggregate)
            overflow += contribution.overflowedEvents
        }
        return (result, overflow)
    }

    // MARK: Checkpoints

    static let formatVersion: UInt8 = 1

    /// The complete state as deterministic bytes.
    public func checkpoint() -> [UInt8] {
        var writer = BinaryWriter(capacity: 4096)
        writer.write(WindowMerger.formatVersion)
        writer.writeSigned(stalePartials)
        writer.writeVarint(finalizedThrough.count)
        for (index, start) in finalizedThrough.sorted(by: { $0.key < $1.key }) {
            writer.writeVarint(index)
            writer.writeSigned(start)
        }
        writer.writeVarint(windows.count)
        for key in windows.keys.sorted() {
            guard let window = windows[key] else { continue }
            writer.writeVarint(key.windowIndex)
            writer.writeSigned(key.start)
            let closed = window.closedBy.sorted()
            writer.writeVarint(closed.count)
            for partition in closed { writer.writeSigned(Int64(partition)) }
            writer.writeVarint(window.segments.count)
            for segment in window.segments.keys.sorted() {
                writer.writeString(segment)
                let contributions = window.segments[segment] ?? [:]
                writer.writeVarint(contributions.count)
                for partition in contributions.keys.sorted() {
                    guard let contribution = contributions[partition] else { continue }
                    writer.writeSigned(Int64(partition))
                    writer.writeSigned(contribution.offset)
                    writer.writeSigned(contribution.overflowedEvents)
                    contribution.aggregate.encode(into: &writer)
                }
            }
        }
        writer.writeVarint(trends.count)
        for key in trends.keys.sorted() {
            writer.writeString(key)
            trends[key]?.encode(into: &writer)
        }
        return writer.bytes
    }

    /// Restores a ``checkpoint()``.
    public func restore(_ bytes: [UInt8]) throws(BinaryReader.Error) {
        var reader = BinaryReader(bytes)
        try reader.expectVersion(WindowMerger.formatVersion, of: "merge checkpoint")
        stalePartials = try reader.readSigned()
        finalizedThrough = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 10)) { finalizedThrough[try reader.readInt()] = try reader.readSigned() }
        windows = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 20)) {
            let key = WindowKey(windowIndex: try reader.readCount(limit: config.windows.count - 1), start: try reader.readSigned())
            let window = PendingWindow()
            for _ in 0..<(try reader.readCount(limit: 1 << 16)) { window.closedBy.insert(Int32(truncatingIfNeeded: try reader.readSigned())) }
            for _ in 0..<(try reader.readCount(limit: 1 << 24)) {
                let segment = try reader.readString(limit: 1 << 16)
                var contributions: [Int32: Contribution] = [:]
                for _ in 0..<(try reader.readCount(limit: 1 << 16)) {
                    let partition = Int32(truncatingIfNeeded: try reader.readSigned())
                    let offset = try reader.readSigned()
                    let overflow = try reader.readSigned()
                    contributions[partition] = Contribution(offset: offset, aggregate: try SegmentAggregate.decode(from: &reader), overflowedEvents: overflow)
                }
                window.segments[segment] = contributions
            }
            windows[key] = window
        }
        trends = [:]
        for _ in 0..<(try reader.readCount(limit: 1 << 24)) { trends[try reader.readString(limit: 1 << 16)] = try TrendState.decode(from: &reader) }
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes in merge checkpoint") }
    }
}
