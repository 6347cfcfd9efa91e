import AudienceMetrics
import Kafka
import Logging
import Synchronization

// Stage 1: partitions assigned, revoked or lost, and restoring their state.

extension StageOne {
    func rebalance(_ event: KafkaRebalanceEvent) -> [KafkaTopicPartition]? {
        switch event {
        case .assigned(let assigned):
            // A partition held here before it moved away would stay held when it comes
            // back (the client leaves a partition's delivery to the application once it
            // was set): whatever is assigned now is delivered.
            if alignment.isEnabled { consumer?.release(assigned) }
            let (offsets, failed) = StageLoop.assign(assigned, stage: "stage 1", logger: logger, restore: restore)
            unrestored.add(failed)
            logger.info("stage 1 assigned \(assigned.map(\.partition).sorted())")
            metrics.rebalances.add(1, ordering: .relaxed)
            ready.store(unrestored.isEmpty, ordering: .relaxed)
            publishTrackedUsers()
            return offsets
        case .revoked(let revoked):
            // Still ours: checkpoint and commit before they move.
            do { try checkpoint() } catch { logger.warning("checkpoint on revocation failed: \(error)") }
            for partition in revoked { partitions[partition.partition] = nil }
            paused.subtract(revoked.map(\.partition))
            unrestored.remove(revoked.map(\.partition))
            committer?.reset()
            publishTrackedUsers()
            logger.info("stage 1 revoked \(revoked.map(\.partition).sorted())")
            return nil
        case .lost(let lost):
            committer?.abort()
            for partition in lost { partitions[partition.partition] = nil }
            paused.subtract(lost.map(\.partition))
            unrestored.remove(lost.map(\.partition))
            publishTrackedUsers()
            logger.warning("stage 1 lost \(lost.map(\.partition).sorted()); another member owns them now")
            return nil
        }
    }

    /// Restores partitions' states from their newest checkpoints (one read of the
    /// changelog for all of them); returns where each resumes reading.
    func restore(_ ids: [Int32]) throws -> StageLoop.Restored {
        let started = clock.now
        let checkpoints = try checkpoints.restore(partitions: ids, input: configuration.inputTopic, consumer: consumer)
        return StageLoop.restored(ids, from: checkpoints) { partition, checkpoint in
            let aggregator = PartitionAggregator(config: configuration.aggregation, assigner: assigner)
            if let checkpoint {
                try aggregator.restore(checkpoint.state)
                for increment in checkpoint.increments { try aggregator.applyIncrement(increment) }
            }
            var state = PartitionState(aggregator: aggregator, lastOffset: (checkpoint?.nextOffset ?? 0) - 1, lastEventAt: clock.now)
            state.checkpoint = checkpoint?.withoutState
            // The restored watermark counts as announced: stage 2 holds the markers sent
            // before the checkpoint, at most one advance behind it, as between any two
            // markers. Announcing it again would change a state nothing else changed
            // (a checkpoint at the next stop, records for stage 2).
            state.lastMarker = aggregator.watermark
            partitions[partition] = state
            logger.info("restored input partition \(partition)", metadata: [
                "next_offset": "\(checkpoint?.nextOffset ?? -1)", "increments": "\(checkpoint?.increments.count ?? 0)", "users": "\(aggregator.trackedUsers)",
                "restore_ms": "\((clock.now - started).milliseconds)",
            ])
        }
    }
}
