import Foundation
import Kafka
import Logging
import Synchronization

/// The loop both stages run: cycles until asked to stop; a non-fatal Kafka error aborts
/// the open transaction and rewinds every assigned partition to its newest checkpoint
/// before the next cycle — the same path a restart takes.
enum StageLoop {
    static func run(
        name: String, logger: Logger, metrics: PipelineMetrics, ready: borrowing Atomic<Bool>,
        isStopping: () -> Bool, abort: () -> Void, rewind: () throws -> Void, cycle: () throws -> Void
    ) throws {
        var needsRewind = false
        while !isStopping() {
            do {
                if needsRewind {
                    try rewind()
                    needsRewind = false
                    ready.store(true, ordering: .relaxed)
                }
                try cycle()
            } catch let error as KafkaError where !error.isFatal {
                logger.warning("\(name) cycle failed, rewinding to the last checkpoint: \(error)")
                metrics.transactionAborts.add(1, ordering: .relaxed)
                abort()
                needsRewind = true
                ready.store(false, ordering: .relaxed)
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        ready.store(false, ordering: .relaxed)
    }

    /// Where each partition of a restore starts reading, or why it could not be restored.
    typealias Restored = [Int32: Result<Int64, any Error>]

    /// Restores `assigned` (one read of the changelog for all of them) and returns the
    /// positions to start them at, for the rebalance answer. A partition that could not be
    /// restored starts at its committed offset without state: the stage skips its records
    /// and reports it in `unrestored`, and ``retry(_:topic:consumer:stage:logger:restore:)``
    /// tries again while the loop keeps polling (so the member stays in its group).
    static func assign(
        _ assigned: [KafkaTopicPartition], stage: String, logger: Logger, restore: ([Int32]) throws -> Restored
    ) -> (offsets: [KafkaTopicPartition], unrestored: Set<Int32>) {
        let ids = assigned.map(\.partition)
        var restored: Restored
        do {
            restored = try restore(ids)
        } catch {
            restored = Dictionary(uniqueKeysWithValues: ids.map { ($0, .failure(error)) })
        }
        var offsets: [KafkaTopicPartition] = []
        var unrestored = Set<Int32>()
        for partition in assigned {
            switch restored[partition.partition] {
            case .success(let offset):
                offsets.append(KafkaTopicPartition(topic: partition.topic, partition: partition.partition, offset: offset))
            case .failure(let error):
                logger.error("\(stage): cannot restore partition \(partition.partition): \(error); retrying before it is processed")
                unrestored.insert(partition.partition)
                offsets.append(partition)
            case nil:
                unrestored.insert(partition.partition)
                offsets.append(partition)
            }
        }
        return (offsets, unrestored)
    }

    /// Among `partitions` (which have no readable checkpoint), those whose group committed
    /// an offset past the start of the partition, with that offset. Offsets are committed
    /// only together with checkpoints, so for these the state exists but its checkpoint
    /// cannot be read yet (the changelog is readable only up to a transaction the broker
    /// still reports open); starting them without state would silently drop what that
    /// state holds, so their restore fails and is retried instead.
    static func committedWithoutCheckpoint(_ partitions: [Int32], topic: String, consumer: KafkaConsumer) throws(KafkaError) -> [Int32: Int64] {
        guard !partitions.isEmpty else { return [:] }
        let committed = try consumer.committed(partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.invalid) })
        var result: [Int32: Int64] = [:]
        for entry in committed where entry.offset >= 0 {
            let low = try consumer.watermarks(topic: topic, partition: entry.partition, timeout: .seconds(5)).low
            if entry.offset > low { result[entry.partition] = entry.offset }
        }
        return result
    }

    static func missingCheckpointError(partition: Int32, committed: Int64, changelog: String) -> KafkaError {
        KafkaError(code: .state, message: "partition \(partition) has committed offset \(committed) but no checkpoint is readable in \(changelog) "
            + "(a transaction on it is still open?); not starting it without its state. If the changelog was deleted on purpose, "
            + "delete the consumer groups too (see Resetting state)")
    }

    /// Retries the restore of `unrestored` and seeks each partition restored now to where
    /// it resumes; returns those still unrestored. The caller limits how often.
    static func retry(
        _ unrestored: Set<Int32>, topic: String, consumer: KafkaConsumer, stage: String, logger: Logger, restore: ([Int32]) throws -> Restored
    ) -> Set<Int32> {
        let (offsets, failed) = assign(unrestored.sorted().map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.stored) },
                                       stage: stage, logger: logger, restore: restore)
        let seeks = offsets.filter { !failed.contains($0.partition) }.map {
            KafkaTopicPartition(topic: topic, partition: $0.partition, offset: $0.offset == KafkaTopicPartition.stored ? KafkaTopicPartition.beginning : $0.offset)
        }
        guard !seeks.isEmpty else { return failed }
        do {
            try consumer.seek(seeks)
            logger.info("\(stage): restored partitions \(seeks.map(\.partition).sorted()) on retry")
            return failed
        } catch {
            logger.warning("\(stage): restored partitions \(seeks.map(\.partition).sorted()) but cannot seek them: \(error); retrying")
            return unrestored
        }
    }

    /// Restores `partitions` with `restore` and seeks the consumer to where each resumes.
    static func rewind(_ partitions: [Int32], topic: String, consumer: KafkaConsumer, restore: ([Int32]) throws -> Restored) throws {
        let sorted = partitions.sorted()
        let restored = try restore(sorted)
        var seeks: [KafkaTopicPartition] = []
        for partition in sorted {
            let offset: Int64
            do {
                guard let result = restored[partition] else { throw KafkaError(code: .state, message: "partition \(partition) was not restored") }
                offset = try result.get()
            } catch let error as KafkaError {
                throw error
            } catch {
                throw KafkaError(code: .state, message: "cannot restore partition \(partition): \(error)")
            }
            seeks.append(KafkaTopicPartition(topic: topic, partition: partition, offset: offset == KafkaTopicPartition.stored ? KafkaTopicPartition.beginning : offset))
        }
        if !seeks.isEmpty { try consumer.seek(seeks) }
    }
}
