import AudienceMetrics

/// What stage 1 writes to `<app>.partials` for stage 2 (binary, versioned).
///
/// - a **partial**: the full state of one segment in one window as of an input offset
///   (key: the segment name; partition chosen from the segment name, so every partial of
///   a segment meets in one stage-2 partition);
///   Kind 4 carries what of the window it is: its own part or a slice (stage 2 adds
///   a window's slices to its own parts); kind 1 is a whole window.
/// - a **watermark**: an input partition's watermark after it reached an input offset,
///   sent to every partials partition after the final partials it covers, with the
///   windows and slices it closes and how many final partials each sent to that
///   partials partition (kind 5; kind 3, without slices, and kind 2, without any, are
///   still read).
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
        /// A whole window, a window's own part or a slice (kind 4; kind 1 is a whole window).
        var part: WindowPartial.Part = .window
    }

    /// The partial of one segment of `window`, as input partition `inputPartition` (of
    /// `inputPartitions`) sends it after reading up to `inputOffset`.
    static func partial(of window: WindowPartial, segment: String, aggregate: SegmentAggregate,
                        inputPartition: Int32, inputPartitions: Int32, inputOffset: Int64) -> StageMessage {
        .partial(Partial(inputPartition: inputPartition, inputPartitions: inputPartitions, inputOffset: inputOffset, windowIndex: window.windowIndex,
                         start: window.start, isFinal: window.isFinal, overflowedEvents: window.overflowedEvents, segment: segment, aggregate: aggregate,
                         part: window.part))
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
            writer.write(partial.part == .window ? 1 : 4)
            writer.writeSigned(Int64(partial.inputPartition))
            writer.writeSigned(Int64(partial.inputPartitions))
            writer.writeSigned(partial.inputOffset)
            writer.writeVarint(partial.windowIndex)
            writer.writeSigned(partial.start)
            writer.write(partial.isFinal ? 1 : 0)
            writer.writeSigned(partial.overflowedEvents)
            writer.writeString(partial.segment)
            if partial.part != .window { writer.write(partial.part.rawValue) }
            partial.aggregate.encode(into: &writer)
        case .watermark(let watermark):
            writer.write(5)
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
        case let kind where kind == 1 || kind == 4:
            let partition = Int32(truncatingIfNeeded: try reader.readSigned())
            let partitions = Int32(truncatingIfNeeded: try reader.readSigned())
            let offset = try reader.readSigned()
            let windowIndex = try reader.readCount(limit: 1_000)
            let start = try reader.readSigned()
            let isFinal = try reader.read() == 1
            let overflow = try reader.readSigned()
            let segment = try reader.readString(limit: 1 << 16)
            var part = WindowPartial.Part.window
            if kind == 4 {
                guard let read = WindowPartial.Part(rawValue: try reader.read()), read != .window else {
                    throw BinaryReader.Error(message: "unknown partial part")
                }
                part = read
            }
            let aggregate = try SegmentAggregate.decode(from: &reader)
            self = .partial(Partial(inputPartition: partition, inputPartitions: partitions, inputOffset: offset, windowIndex: windowIndex,
                                    start: start, isFinal: isFinal, overflowedEvents: overflow, segment: segment, aggregate: aggregate, part: part))
        case let kind where kind == 2 || kind == 3 || kind == 5:
            var watermark = Watermark(inputPartition: Int32(truncatingIfNeeded: try reader.readSigned()),
                                      inputPartitions: Int32(truncatingIfNeeded: try reader.readSigned()),
                                      inputOffset: try reader.readSigned(), time: try reader.readSigned())
            if kind >= 3 { watermark.closing = try WindowMerger.ClosedWindow.decode(from: &reader, maxWindowIndex: 1_000, withSlices: kind == 5) }
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
        for window in closed where window.isFinal {
            var counts = Array(repeating: 0, count: partitions)
            for (segment, _) in window.segments { counts[Int(partition(ofSegment: segment, partitions: partitions))] += 1 }
            for (target, count) in counts.enumerated() where count > 0 {
                closing[target].append(.init(windowIndex: window.windowIndex, start: window.start, finals: count, isSlice: window.part == .slice))
            }
        }
        return closing
    }

    /// The partials partition of a segment: stable across processes and versions.
    static func partition(ofSegment segment: String, partitions: Int) -> Int32 {
        Int32(Hash64.hash(segment) % UInt64(max(1, partitions)))
    }
}
