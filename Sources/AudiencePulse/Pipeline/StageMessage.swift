import AudienceMetrics

/// What stage 1 writes to `<app>.partials` for stage 2 (binary, versioned).
///
/// - a **partial**: the full state of one segment in one window as of an input offset
///   (key: the segment name; partition chosen from the segment name, so every partial of
///   a segment meets in one stage-2 partition);
/// - a **watermark**: an input partition's watermark after it reached an input offset,
///   sent to every partials partition after the final partials it covers, with the
///   windows it closes and how many final partials each sent to that partials partition
///   (kind 3; kind 2, without them, is still read).
enum StageMessage: Sendable, Equatable {
    case partial(Partial)
    case watermark(Watermark)

    struct Partial: Sendable, Equatable {
        var inputPartition: Int32
        var inputPartitions: Int32
        /// The last input offset this state reflects.
        var inputOffset: Int64
        var windowIndex: Int
        var start: Int64
        var isFinal: Bool
        var overflowedEvents: Int64
        var segment: String
        var aggregate: SegmentAggregate
    }

    /// The partial of one segment of `window`, as input partition `inputPartition` (of
    /// `inputPartitions`) sends it after reading up to `inputOffset`.
    static func partial(of window: WindowPartial, segment: String, aggregate: SegmentAggregate,
                        inputPartition: Int32, inputPartitions: Int32, inputOffset: Int64) -> StageMessage {
        .partial(Partial(inputPartition: inputPartition, inputPartitions: inputPartitions, inputOffset: inputOffset, windowIndex: window.windowIndex,
                         start: window.start, isFinal: window.isFinal, overflowedEvents: window.overflowedEvents, segment: segment, aggregate: aggregate))
    }

    struct Watermark: Sendable, Equatable {
        var inputPartition: Int32
        var inputPartitions: Int32
        var inputOffset: Int64
        var time: Int64
        var closing: [WindowMerger.ClosedWindow] = []
    }

    static let formatVersion: UInt8 = 1

    var encoded: [UInt8] {
        var writer = BinaryWriter(capacity: 256)
        writer.write(StageMessage.formatVersion)
        switch self {
        case .partial(let partial):
            writer.write(1)
            writer.writeSigned(Int64(partial.inputPartition))
            writer.writeSigned(Int64(partial.inputPartitions))
            writer.writeSigned(partial.inputOffset)
            writer.writeVarint(partial.windowIndex)
            writer.writeSigned(partial.start)
            writer.write(partial.isFinal ? 1 : 0)
            writer.writeSigned(partial.overflowedEvents)
            writer.writeString(partial.segment)
            partial.aggregate.encode(into: &writer)
        case .watermark(let watermark):
            writer.write(3)
            writer.writeSigned(Int64(watermark.inputPartition))
            writer.writeSigned(Int64(watermark.inputPartitions))
            writer.writeSigned(watermark.inputOffset)
            writer.writeSigned(watermark.time)
            WindowMerger.ClosedWindow.encode(watermark.closing, into: &writer)
        }
        return writer.bytes
    }

    init(partial: Partial) { self = .partial(partial) }
    init(watermark: Watermark) { self = .watermark(watermark) }

    init(decoding bytes: [UInt8]) throws(BinaryReader.Error) {
        var reader = BinaryReader(bytes)
        try reader.expectVersion(StageMessage.formatVersion, of: "stage message")
        switch try reader.read() {
        case 1:
            let partition = Int32(truncatingIfNeeded: try reader.readSigned())
            let partitions = Int32(truncatingIfNeeded: try reader.readSigned())
            let offset = try reader.readSigned()
            let windowIndex = try reader.readCount(limit: 1_000)
            let start = try reader.readSigned()
            let isFinal = try reader.read() == 1
            let overflow = try reader.readSigned()
            let segment = try reader.readString(limit: 1 << 16)
            let aggregate = try SegmentAggregate.decode(from: &reader)
            self = .partial(Partial(inputPartition: partition, inputPartitions: partitions, inputOffset: offset, windowIndex: windowIndex,
                                    start: start, isFinal: isFinal, overflowedEvents: overflow, segment: segment, aggregate: aggregate))
        case let kind where kind == 2 || kind == 3:
            var watermark = Watermark(inputPartition: Int32(truncatingIfNeeded: try reader.readSigned()),
                                      inputPartitions: Int32(truncatingIfNeeded: try reader.readSigned()),
                                      inputOffset: try reader.readSigned(), time: try reader.readSigned())
            if kind == 3 { watermark.closing = try WindowMerger.ClosedWindow.decode(from: &reader, maxWindowIndex: 1_000) }
            self = .watermark(watermark)
        default:
            throw BinaryReader.Error(message: "unknown stage message kind")
        }
        guard reader.isAtEnd else { throw BinaryReader.Error(message: "trailing bytes in stage message") }
    }

    /// Per partials partition, the windows in `closed` with how many final partials
    /// (segments) each sent there, for the watermark markers that follow them: stage 2
    /// finalizes a window only once all of them arrived.
    static func closing(_ closed: [WindowPartial], partitions: Int) -> [[WindowMerger.ClosedWindow]] {
        var closing = Array(repeating: [WindowMerger.ClosedWindow](), count: partitions)
        for window in closed {
            var counts = Array(repeating: 0, count: partitions)
            for (segment, _) in window.segments { counts[Int(partition(ofSegment: segment, partitions: partitions))] += 1 }
            for (target, count) in counts.enumerated() where count > 0 {
                closing[target].append(.init(windowIndex: window.windowIndex, start: window.start, finals: count))
            }
        }
        return closing
    }

    /// The partials partition of a segment: stable across processes and versions.
    static func partition(ofSegment segment: String, partitions: Int) -> Int32 {
        Int32(Hash64.hash(segment) % UInt64(max(1, partitions)))
    }
}
