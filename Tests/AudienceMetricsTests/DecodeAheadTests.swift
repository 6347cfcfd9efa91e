import AudienceMetrics
import Testing

@Suite("Decoding one message ahead of processing")
struct DecodeAheadTests {
    /// A synthetic stream with duplicates, malformed and out-of-order events.
    static func messages(_ count: Int) -> [String] {
        var spec = SyntheticAudience.Spec()
        spec.users = 500
        spec.duplicateShare = 0.05
        spec.malformedShare = 0.03
        var audience = SyntheticAudience(spec: spec)
        return (0..<count).map { audience.next(at: Events.origin + Int64($0) * 20).value }
    }

    @Test("every message is handled once, in order, one decode behind")
    func order() {
        let messages = Self.messages(50)
        let ahead = DecodeAhead(attributeNames: ["country"])
        var log: [String] = []
        ahead.forEach(0..<messages.count, decode: { index, decoder in
            log.append("decode \(index)")
            return decoder.decode(messages[index])
        }, prefetch: { index, _ in log.append("prefetch \(index)") }) { index, decoder, rejected in
            log.append("body \(index)")
            // The decoder still holds this message, though the next one was decoded.
            if rejected == nil { #expect(decoder.string(decoder.event.eventID) == String(messages[index].split(separator: "\"")[3])) }
        }
        var expected: [String] = []
        for index in messages.indices {
            expected.append("decode \(index)")
            if EventDecoder().decode(messages[index]) == nil { expected.append("prefetch \(index)") }
            if index > 0 { expected.append("body \(index - 1)") }
        }
        expected.append("body \(messages.count - 1)")
        #expect(log == expected)
        #expect(log.contains("prefetch 0") && log.count > 2 * messages.count)
    }

    @Test("the partials and the checkpoint are those of decoding each message just before processing it")
    func sameResults() {
        let messages = Self.messages(20_000)
        let config = AggregationConfig(
            windows: [WindowSpec(size: 60_000), WindowSpec(size: 300_000, advance: 60_000)],
            segments: SegmentSpec(dimensions: [[], ["country"], ["country", "device"]]))
        let names = config.segments.attributeNames

        let plain = Pipeline(config)
        var plainPartials: [WindowPartial] = []
        for (index, message) in messages.enumerated() {
            plain.feed(message)
            if index % 500 == 499 { plainPartials += plain.aggregator.closeReadyWindows() + plain.aggregator.takeUpdates() }
        }

        let aggregator = PartitionAggregator(config: config, assigner: SegmentAssigner(spec: config.segments, attributeNames: names))
        let ahead = DecodeAhead(attributeNames: names)
        var aheadPartials: [WindowPartial] = []
        for batch in stride(from: 0, to: messages.count, by: 500) {
            ahead.forEach(batch..<batch + 500, decode: { index, decoder in decoder.decode(messages[index]) },
                          prefetch: { _, event in aggregator.prefetch(event) }) { _, decoder, rejected in
                if rejected == nil { _ = aggregator.process(decoder) } else { aggregator.recordInvalid() }
            }
            aheadPartials += aggregator.closeReadyWindows() + aggregator.takeUpdates()
        }

        #expect(plain.invalid.count > 100)
        #expect(aggregator.duplicateCount > 100 && aggregator.duplicateCount == plain.aggregator.duplicateCount)
        #expect(aggregator.acceptedCount == plain.aggregator.acceptedCount && aggregator.invalidCount == plain.aggregator.invalidCount)
        #expect(aheadPartials.count > 50)
        #expect(aheadPartials == plainPartials)
        #expect(aggregator.checkpoint() == plain.aggregator.checkpoint())
    }
}
