import AudienceMetrics

/// Builds contract events as JSON text.
enum Events {
    /// Milliseconds from a fixed, minute-aligned origin (2026-11-28T10:00:00Z).
    static let origin: Int64 = 1_795_860_000_000

    static func json(
        _ id: String, _ type: String, user: String, at offset: Int64,
        country: String = "DE", device: String = "mobile", plan: String? = nil,
        content: String? = nil, dwell: Int64? = nil, value: String? = nil
    ) -> String {
        var fields = [#""event_id":"\#(id)""#, #""type":"\#(type)""#, #""user_id":"\#(user)""#, #""timestamp":\#(origin + offset)"#]
        if let content { fields.append(#""content_id":"\#(content)""#) }
        if let dwell { fields.append(#""dwell_ms":\#(dwell)"#) }
        if let value { fields.append(#""value":\#(value)"#) }
        var attributes = [#""country":"\#(country)""#, #""device":"\#(device)""#]
        if let plan { attributes.append(#""plan":"\#(plan)""#) }
        fields.append(#""attributes":{\#(attributes.joined(separator: ","))}"#)
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// Decoder, segment assigner and one partition's aggregator wired as stage 1 wires them.
final class Pipeline {
    let decoder: EventDecoder
    let assigner: SegmentAssigner
    let aggregator: PartitionAggregator
    var invalid: [String] = []

    init(_ config: AggregationConfig) {
        let names = config.segments.attributeNames
        decoder = EventDecoder(attributeNames: names)
        assigner = SegmentAssigner(spec: config.segments, attributeNames: names)
        aggregator = PartitionAggregator(config: config, assigner: assigner)
    }

    @discardableResult
    func feed(_ event: String) -> PartitionAggregator.Outcome? {
        if let reason = decoder.decode(event) {
            invalid.append(reason.code)
            aggregator.recordInvalid()
            return nil
        }
        return aggregator.process(decoder)
    }

    /// Closes every window and returns the final partials.
    func finish() -> [WindowPartial] {
        aggregator.advanceWatermark(to: .max / 2)
        return aggregator.closeReadyWindows()
    }

    /// Runs stage 2 over this single partition's finals (all closed by one watermark).
    static func records(_ partials: [WindowPartial], config: AggregationConfig) -> [MetricRecord] {
        let merger = WindowMerger(config: config, inputPartitions: 1)
        for partial in partials {
            for (name, aggregate) in partial.segments {
                merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start, inputPartition: 0, offset: 1)
            }
        }
        return merger.applyWatermark(.max / 2, inputPartition: 0)
    }
}

extension Array where Element == WindowPartial {
    /// The aggregate of `segment` in the window starting `offset` ms after the origin.
    func aggregate(_ segment: String, windowAt offset: Int64, windowIndex: Int = 0) -> SegmentAggregate? {
        first { $0.start == Events.origin + offset && $0.windowIndex == windowIndex }?.segments.first { $0.name == segment }?.aggregate
    }
}
