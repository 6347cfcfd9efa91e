import AudienceMetrics
import Logging
import Synchronization

// Stage 1 in a bounded run (`processing.until_end`): each partition is read until the
// consumer reaches its end; there its windows close and its markers report the input's end.

extension StageOne {
    /// Finishes `partition`, which the consumer has read to its end (an end-of-partition
    /// event after its last record): every window holding an event closes
    /// (``PartitionAggregator/advanceWatermarkPastEveryWindow()``) and its markers say the
    /// input ended.
    func finish(_ partition: Int32, state: inout PartitionState) {
        state.finished = true
        state.changedSinceCheckpoint = true
        state.aggregator.advanceWatermarkPastEveryWindow()
        logger.info("bounded run: input partition \(partition) read to its end (offset \(state.lastOffset + 1)); its windows close")
    }

    /// Tells the bounded run whether this worker is done: it has its partitions, every one
    /// is finished, and what finishing them produced is committed.
    func reportBounded(_ bounded: BoundedRun) {
        let finished = ready.load(ordering: .relaxed) && partitions.values.allSatisfy(\.finished)
            && committer?.inTransaction != true && committer?.awaitedOutputs != true
        if bounded.report(worker: worker, finished: finished) {
            logger.info("bounded run complete: every input partition was read to its end and every window is final; stopping")
        }
    }
}
