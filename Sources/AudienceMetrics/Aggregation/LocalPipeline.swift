/// Both stages in one process over one ordered stream of events: decode → aggregate →
/// merge, emitting each window's final records as the stream's watermark closes it. The
/// final records are the ones the service produces for the same events (partitioning
/// does not change them), which makes this the engine of `pulse replay` for backfills.
public final class LocalPipeline {
    public struct Counts: Sendable, Equatable {
        public var valid = 0
        public var duplicates = 0
        public var late = 0
        /// Rejected input by reason code.
        public var invalid: [String: Int] = [:]
        public var invalidTotal: Int { invalid.values.reduce(0, +) }
    }

    public private(set) var counts = Counts()
    private let decoder: EventDecoder
    private let aggregator: PartitionAggregator
    private let merger: WindowMerger
    private var offset: Int64 = 0

    public init(config: AggregationConfig, trend: TrendConfig = TrendConfig(), mapping: InputMapping = .contract, limits: EventLimits = EventLimits()) {
        let names = config.segments.attributeNames
        decoder = EventDecoder(mapping: mapping, limits: limits, attributeNames: names)
        aggregator = PartitionAggregator(config: config, assigner: SegmentAssigner(spec: config.segments, attributeNames: names))
        merger = WindowMerger(config: config, inputPartitions: 1, trendConfig: trend)
    }

    /// Processes one message; returns why it was rejected, if it was (late events count
    /// as rejected with reason `late`).
    @discardableResult
    public func feed(_ bytes: UnsafeRawBufferPointer) -> RejectReason? {
        offset += 1
        if let reason = decoder.decode(bytes) {
            aggregator.recordInvalid()
            counts.invalid[reason.code, default: 0] += 1
            return reason
        }
        switch aggregator.process(decoder) {
        case .accepted: counts.valid += 1
        case .duplicate: counts.duplicates += 1
        case .late:
            counts.late += 1
            return .late
        }
        return nil
    }

    @discardableResult
    public func feed(_ text: String) -> RejectReason? {
        var text = text
        return text.withUTF8 { feed(UnsafeRawBufferPointer($0)) }
    }

    /// Final records of the windows the watermark has closed since the last call.
    public func takeFinals() -> [MetricRecord] {
        for window in aggregator.closeReadyWindows() {
            for (segment, aggregate) in window.segments {
                merger.apply(partial: aggregate, segment: segment, windowIndex: window.windowIndex, start: window.start,
                             inputPartition: 0, offset: offset, overflowedEvents: window.overflowedEvents, isFinal: window.isFinal, part: window.part)
            }
        }
        let watermark = aggregator.watermark
        return watermark == .min ? [] : merger.applyWatermark(watermark, inputPartition: 0)
    }

    /// The end of the stream: closes every window and returns the remaining final records.
    public func finish() -> [MetricRecord] {
        aggregator.advanceWatermark(to: .max / 2)
        return takeFinals()
    }
}
