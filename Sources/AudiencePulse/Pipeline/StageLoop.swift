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

    /// Restores each of `partitions` with `restore` (which returns where to read from)
    /// and seeks the consumer there.
    static func rewind(_ partitions: [Int32], topic: String, consumer: KafkaConsumer, restore: (Int32) throws -> Int64) throws {
        var seeks: [KafkaTopicPartition] = []
        for partition in partitions.sorted() {
            let offset = try restore(partition)
            seeks.append(KafkaTopicPartition(topic: topic, partition: partition, offset: offset == KafkaTopicPartition.stored ? KafkaTopicPartition.beginning : offset))
        }
        if !seeks.isEmpty { try consumer.seek(seeks) }
    }
}
