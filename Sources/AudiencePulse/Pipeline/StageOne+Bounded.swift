import AudienceMetrics
import Kafka
import Logging
import Synchronization

// Stage 1 in a bounded run (`processing.until_end`): each partition is read until the
// consumer reaches its end; there it counts as idle at once.

extension StageOne {
    /// Finishes `partition`, which the consumer has read to its end (an end-of-partition
    /// event after its last record): as an idle partition's, but without waiting for
    /// `time.idle_timeout`, its watermark moves to the clock less `time.max_out_of_orderness`,
    /// so every window that ended before that closes, and a marker reports it. Records
    /// that arrive later are left for the next run.
    func finish(_ partition: Int32, state: inout PartitionState) {
        state.finished = true
        state.changedSinceCheckpoint = true
        state.aggregator.advanceWatermark(to: Self.wallMilliseconds() - configuration.aggregation.maxOutOfOrderness)
        state.lastMarker = .min  // the end's marker goes out whatever the watermark moved
        bounded?.partitionEnded()
        logger.info("bounded run: input partition \(partition) read to its end (offset \(state.lastOffset + 1), watermark \(state.aggregator.watermark)); its windows close")
    }

    /// Whether the client's last fetch of `partition` ended at the record after
    /// `lastOffset` (its high watermark then): the partition is read to its end as soon as
    /// its last records are handled. The end-of-partition event says the same only after a
    /// later fetch found nothing, which the broker may hold for up to `fetch.wait.max.ms`.
    /// A partition whose end is a transaction's control record (input written in
    /// transactions) never matches and waits for that event.
    func fetchedToEnd(_ consumer: KafkaConsumer, partition: Int32, lastOffset: Int64) -> Bool {
        guard lastOffset >= 0, let high = consumer.cachedWatermarks(topic: configuration.inputTopic, partition: partition)?.high else { return false }
        return lastOffset + 1 >= high
    }

    /// Whether a bounded run finished every partition this worker holds (true when it
    /// holds none).
    var allFinished: Bool { partitions.values.allSatisfy(\.finished) }

    /// Tells the bounded run whether this worker is done: it has its partitions, every one
    /// is finished, and what finishing them produced is committed; then also the
    /// watermark each partition ended with.
    func reportBounded(_ bounded: BoundedRun) {
        let finished = ready.load(ordering: .relaxed) && allFinished
            && committer?.owesCommit != true
        let ends = finished ? partitions.mapValues(\.aggregator.watermark) : nil
        if bounded.report(worker: worker, ends: ends) {
            logger.info("bounded run complete: every input partition was read to its end and every window that closed there is final; stopping")
        }
    }
}
