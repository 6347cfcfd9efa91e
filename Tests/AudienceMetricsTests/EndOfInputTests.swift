import AudienceMetrics
import Testing

/// A bounded run's end (`processing.until_end`): stage 1 closes every window of a
/// partition at its end and reports the end; stage 2 finalizes what the partitions at
/// their end no longer hold back.
@Suite("The input's end in a bounded run")
struct EndOfInputTests {
    @Test("each input partition closing its windows at its own end and reporting it gives the records of a watermark past everything, however the events split",
          arguments: [1, 2, 3, 5])
    func sameRecords(partitions: Int) {
        let audience = RandomAudience(seed: 90 + UInt64(partitions), count: 3_000, users: 150)
        let expected = MergePropertyTests.partitionedRecords(audience, partitions: 1, seed: 3)
        let got = MergePropertyTests.partitionedRecords(audience, partitions: partitions, seed: 17, endOfInput: true)
        #expect(!expected.isEmpty)
        MergePropertyTests.expectSameRecords(got, expected, "\(partitions) partitions ending one after the other")
    }

    @Test("restored, input partitions that reported their end hold back the windows after the last final one until they report again: a later run's markers or a repeated end marker")
    func reopenAfterRestore() throws {
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000)], maxOutOfOrderness: 1_000, segments: SegmentSpec(dimensions: [[]]))
        let pipelines = [Pipeline(config), Pipeline(config)]
        var offset: Int64 = 0
        func send(_ partition: Int, to merger: WindowMerger, end: Bool = false) -> [MetricRecord] {
            let aggregator = pipelines[partition].aggregator
            if end { aggregator.advanceWatermarkPastEveryWindow() }
            let closed = aggregator.closeReadyWindows()
            for partial in closed {
                for (name, aggregate) in partial.segments {
                    offset += 1
                    merger.apply(partial: aggregate, segment: name, windowIndex: partial.windowIndex, start: partial.start,
                                 inputPartition: Int32(partition), offset: offset, isFinal: partial.isFinal, part: partial.part)
                }
            }
            return merger.applyWatermark(end ? WindowMerger.endOfInput : aggregator.watermark, inputPartition: Int32(partition),
                                         closing: MergePropertyTests.closing(closed))
        }
        func summary(_ records: [MetricRecord]) -> [String] { records.map { "\(($0.start - Events.origin) / 60_000):\($0.events)" } }

        // First run: partition 0 has minute 0, partition 1 minutes 0 and 1.
        let merger = WindowMerger(config: config, inputPartitions: 2)
        pipelines[0].feed(Events.json("a", "click", user: "u0", at: 10_000))
        pipelines[1].feed(Events.json("b", "click", user: "u1", at: 20_000))
        pipelines[1].feed(Events.json("c", "click", user: "u1", at: 70_000))
        #expect(send(0, to: merger).isEmpty, "partition 0's watermark (9 s) closes nothing")
        #expect(send(1, to: merger, end: true).isEmpty, "partition 1 at its end no longer holds back, partition 0 still does")
        #expect(!merger.isAtEndOfInput)
        #expect(summary(send(0, to: merger, end: true)) == ["0:2", "1:1"], "both at their end: every window final")
        #expect(merger.isAtEndOfInput)

        // Second run, restored: minute 5 on both partitions, minute 7 on partition 0.
        let restored = WindowMerger(config: config, inputPartitions: 2)
        try restored.restore(merger.checkpoint())
        #expect(restored.isAtEndOfInput, "the checkpoint holds what the merger held")
        restored.reopenEndedInputs()
        #expect(!restored.isAtEndOfInput)
        pipelines[0].feed(Events.json("d", "click", user: "u0", at: 300_000))
        pipelines[0].feed(Events.json("e", "click", user: "u0", at: 430_000))
        #expect(send(0, to: restored).isEmpty, "partition 1 holds minute 5 back: it has not reported since the restore")
        pipelines[1].feed(Events.json("f", "click", user: "u1", at: 310_000))
        #expect(summary(send(1, to: restored, end: true)) == ["5:2"], "partition 1 at its end again; partition 0's watermark (429 s) passed minute 5")
        #expect(restored.applyWatermark(WindowMerger.endOfInput, inputPartition: 1).isEmpty, "a repeated end marker changes nothing")
        #expect(summary(send(0, to: restored, end: true)) == ["7:1"])
        #expect(restored.isAtEndOfInput)
    }

    @Test("a partition's end closes every window holding an event, of every size, and nothing before its first event")
    func watermarkPastEveryWindow() {
        let config = AggregationConfig(windows: [WindowSpec(size: 60_000), WindowSpec(size: 600_000, advance: 60_000)], maxOutOfOrderness: 5_000,
                                       allowedLateness: 30_000, segments: SegmentSpec(dimensions: [[]]))
        let pipeline = Pipeline(config)
        pipeline.aggregator.advanceWatermarkPastEveryWindow()
        #expect(pipeline.aggregator.watermark == .min, "no event: nothing moves")
        pipeline.feed(Events.json("a", "click", user: "u0", at: 125_000))
        pipeline.aggregator.advanceWatermarkPastEveryWindow()
        // The newest window holding the event: the 10-minute one starting at minute 2, ending at minute 12, open 30 s longer.
        #expect(pipeline.aggregator.watermark == Events.origin + 720_000 + 30_000)
        let closed = pipeline.aggregator.closeReadyWindows()
        #expect(closed.filter { $0.windowIndex == 0 }.count == 1)
        #expect(pipeline.aggregator.openWindowCount == 0)
    }
}
