import AudienceMetrics
import Testing

@testable import AudiencePulse

@Suite("Stage messages: partials and close markers on <app>.partials")
struct StageMessageTests {
    static func partial(_ part: WindowPartial.Part) -> StageMessage.Partial {
        var aggregate = SegmentAggregate()
        aggregate.events = 7
        aggregate.users.insert(42)
        return StageMessage.Partial(inputPartition: 3, inputPartitions: 4, inputOffset: 1_234, windowIndex: 1, start: 60_000, isFinal: true,
                                    overflowedEvents: 2, segment: "country=DE", aggregate: aggregate, part: part)
    }

    @Test("a partial of each part round-trips; a whole window keeps kind 1, the form written before parts")
    func partials() throws {
        for part in [WindowPartial.Part.window, .own, .slice] {
            let bytes = StageMessage(partial: Self.partial(part)).encoded
            #expect(bytes[1] == (part == .window ? 1 : 4))
            #expect(try StageMessage(decoding: bytes) == StageMessage(partial: Self.partial(part)))
        }
        // Kind 4 names its part; "whole window" or an unknown part there is refused.
        var bytes = StageMessage(partial: Self.partial(.slice)).encoded
        let segmentEnd = bytes.indices.first { Array(bytes[$0...].prefix(10)) == Array("country=DE".utf8) }.map { $0 + 10 }
        let partOffset = try #require(segmentEnd)
        #expect(bytes[partOffset] == WindowPartial.Part.slice.rawValue)
        for value: UInt8 in [0, 3] {
            bytes[partOffset] = value
            #expect(throws: BinaryReader.Error.self) { try StageMessage(decoding: bytes) }
        }
    }

    @Test("a close marker carries which closed entries are slices; the marker without slices (kind 3) still reads")
    func markers() throws {
        let closing = [WindowMerger.ClosedWindow(windowIndex: 0, start: 60_000, finals: 3),
                       WindowMerger.ClosedWindow(windowIndex: 1, start: 60_000, finals: 5, isSlice: true)]
        let marker = StageMessage(watermark: .init(inputPartition: 1, inputPartitions: 4, inputOffset: 99, time: 125_000, closing: closing))
        let bytes = marker.encoded
        #expect(bytes[1] == 5)
        #expect(try StageMessage(decoding: bytes) == marker)
        // Kind 3, as written before slices: the same entries without their flags.
        var old = BinaryWriter()
        for byte: UInt8 in [StageMessage.formatVersion, 3] { old.write(byte) }
        for value: Int64 in [1, 4, 99, 125_000] { old.writeSigned(value) }
        old.writeVarint(1)
        old.writeVarint(0)
        old.writeSigned(60_000)
        old.writeVarint(3)
        #expect(try StageMessage(decoding: old.bytes) == StageMessage(watermark: .init(
            inputPartition: 1, inputPartitions: 4, inputOffset: 99, time: 125_000, closing: [closing[0]])))
    }

    @Test("closing partials count each window's and each slice's final segments per partials partition, and nothing not final")
    func closingCounts() {
        let segments = (0..<20).map { (name: "s\($0)", aggregate: SegmentAggregate()) }
        let closed = [WindowPartial(windowIndex: 1, start: 0, end: 60_000, segments: segments, overflowedEvents: 0, isFinal: true, part: .slice),
                      WindowPartial(windowIndex: 1, start: 0, end: 120_000, segments: Array(segments.prefix(3)), overflowedEvents: 0, isFinal: true, part: .own),
                      // Not final (a part sent again in full after a restore): not counted.
                      WindowPartial(windowIndex: 1, start: 60_000, end: 180_000, segments: segments, overflowedEvents: 0, isFinal: false, part: .own)]
        let closing = StageMessage.closing(closed, partitions: 4)
        #expect(closing.joined().filter(\.isSlice).reduce(0) { $0 + $1.finals } == 20)
        #expect(closing.joined().filter { !$0.isSlice }.reduce(0) { $0 + $1.finals } == 3)
        for (target, entries) in closing.enumerated() {
            let expected = segments.filter { StageMessage.partition(ofSegment: $0.name, partitions: 4) == target }.count
            #expect(entries.first { $0.isSlice }?.finals ?? 0 == expected)
        }
    }
}
