import Foundation
import Kafka
import Logging
import Synchronization

/// The loop both stages run: cycles until asked to stop; a non-fatal Kafka error aborts
/// the open transaction and rewinds every assigned partition to its newest checkpoint
/// before the next cycle — the same path a restart takes. A fatal error, or any error
/// once the stage's producer is unusable (fenced), ends the loop by throwing.
enum StageLoop {
    static func run(
        name: String, logger: Logger, metrics: PipelineMetrics, ready: borrowing Atomic<Bool>, producer: KafkaProducer,
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
                // A fenced or otherwise dead producer can show up as some other error (its
                // queued records purged); rewinding cannot help it.
                if let fatal = producer.fatalError { throw fatal }
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

    /// Starts fetching a static `share` of `topic` before its state is restored: each
    /// partition where `checkpoints` starts one without a checkpoint (its committed offset,
    /// else `auto.offset.reset`), which is also where one whose last commit was a
    /// checkpoint resumes. The client's first fetch then overlaps the
    /// restore instead of following it; ``start(_:topic:share:readAhead:stage:logger:assigned:)``
    /// moves any partition that resumes elsewhere (the client drops what it fetched for
    /// it). Returns the positions, or nil (nothing fetched ahead) for a group, an empty
    /// share, or when the committed offsets cannot be read — the restore then reports why.
    static func readAhead(
        _ consumer: KafkaConsumer, topic: String, share: [Int32]?, checkpoints: CheckpointStore, stage: String, logger: Logger
    ) -> [Int32: Int64]? {
        guard let share, !share.isEmpty else { return nil }
        do {
            let partitions = try consumer.committed(share.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.invalid) })
                .map { KafkaTopicPartition(topic: topic, partition: $0.partition, offset: checkpoints.start(committed: $0.offset)) }
            try consumer.assign(partitions)
            return Dictionary(uniqueKeysWithValues: partitions.map { ($0.partition, $0.offset) })
        } catch {
            logger.info("\(stage): not fetching \(topic) ahead of the restore: \(error)")
            return nil
        }
    }

    /// Starts reading `topic`: joins its consumer group (the rebalance handler restores what
    /// the group assigns), or, given a static `share`, restores it through `assigned` — the
    /// path a group's assignment takes — and reads it without a group. `readAhead`: the
    /// share is already assigned at these positions (``readAhead(_:topic:share:checkpoints:stage:logger:)``);
    /// a partition that resumes elsewhere is moved there.
    static func start(
        _ consumer: KafkaConsumer, topic: String, share: [Int32]?, readAhead: [Int32: Int64]? = nil, stage: String, logger: Logger,
        assigned: ([KafkaTopicPartition]) -> [KafkaTopicPartition]?
    ) throws {
        guard let share else { return try consumer.subscribe(topics: [topic]) }
        if share.isEmpty {
            logger.warning("\(stage): this static share of \(topic) is empty (more instances, or stage-1 workers, than partitions); it stays idle")
        }
        let partitions = share.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.stored) }
        let offsets = assigned(partitions) ?? partitions
        guard let readAhead else { return try consumer.assign(offsets) }
        let moved = offsets.filter { !resumes($0.offset, at: readAhead[$0.partition]) }
        guard !moved.isEmpty else { return }
        logger.info("\(stage): partitions \(moved.map(\.partition).sorted()) resume at their checkpoints, not where they were fetched ahead")
        try consumer.seek(moved)
    }

    /// Whether a partition that a restore starts at `offset` is already fetched from there
    /// (`fetched`: where it was assigned ahead of the restore). `stored` — the committed
    /// offset, else `auto.offset.reset` — is where read-ahead assigned it.
    private static func resumes(_ offset: Int64, at fetched: Int64?) -> Bool {
        guard let fetched else { return false }
        return offset == fetched || offset == KafkaTopicPartition.stored
    }

    /// Where each partition of a restore starts reading, or why it could not be restored.
    typealias Restored = [Int32: Result<Int64, any Error>]

    /// Builds each partition's state from its restored checkpoint with `build` and
    /// returns where each resumes: after its checkpoint; without one, where the restore
    /// says (its committed offset, or the beginning or end as `auto.offset.reset` says when
    /// it has none), else the committed offset as the client looks it up (a partition whose
    /// checkpoint cannot be used, or whose `build` throws, gets the error).
    static func restored(
        _ ids: [Int32], from restore: (checkpoints: [Int32: Result<CheckpointStore.Checkpoint?, KafkaError>], starts: [Int32: Int64]),
        _ build: (Int32, CheckpointStore.Checkpoint?) throws -> Void
    ) -> Restored {
        var restored: Restored = [:]
        for partition in ids {
            restored[partition] = Result {
                let checkpoint = try restore.checkpoints[partition]?.get() ?? nil
                try build(partition, checkpoint)
                return checkpoint?.nextOffset ?? restore.starts[partition] ?? KafkaTopicPartition.stored
            }
        }
        return restored
    }

    /// Restores `assigned` (one read of the changelog for all of them) and returns the
    /// positions to start them at, for the rebalance answer. A partition that could not be
    /// restored starts at its committed offset without state: the stage skips its records
    /// and reports it in `unrestored`, for ``PendingRestores`` to retry while the loop keeps
    /// polling (so the member stays in its group).
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
            if case .success(let offset) = restored[partition.partition] {
                offsets.append(KafkaTopicPartition(topic: partition.topic, partition: partition.partition, offset: offset))
            } else {
                let reason = if case .failure(let error) = restored[partition.partition] { "\(error)" } else { "not restored" }
                logger.error("\(stage): cannot restore partition \(partition.partition): \(reason); retrying before it is processed")
                unrestored.insert(partition.partition)
                offsets.append(partition)
            }
        }
        return (offsets, unrestored)
    }

    /// Assigned partitions whose restore failed: the stage skips their records until
    /// ``retryIfDue(topic:consumer:stage:logger:restore:)`` (every 5 s) restores them and
    /// seeks them to where they resume. Used by its stage's thread only.
    struct PendingRestores {
        private(set) var partitions = Set<Int32>()
        private var lastAttempt = ContinuousClock.now

        var isEmpty: Bool { partitions.isEmpty }

        /// After an assignment: these could not be restored.
        mutating func add(_ failed: Set<Int32>) {
            partitions.formUnion(failed)
            lastAttempt = .now
        }

        /// Revoked or lost.
        mutating func remove(_ done: some Sequence<Int32>) { partitions.subtract(done) }

        /// Restored by a rewind.
        mutating func removeAll() { partitions.removeAll() }

        /// Retries if 5 s passed since the last attempt; returns whether anything is still
        /// pending (the stage is not ready while it is).
        mutating func retryIfDue(
            topic: String, consumer: KafkaConsumer, stage: String, logger: Logger, restore: ([Int32]) throws -> Restored
        ) -> Bool {
            guard !partitions.isEmpty, ContinuousClock.now - lastAttempt >= .seconds(5) else { return !partitions.isEmpty }
            lastAttempt = .now
            let (offsets, failed) = assign(partitions.sorted().map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.stored) },
                                           stage: stage, logger: logger, restore: restore)
            let seeks = offsets.filter { !failed.contains($0.partition) }.map {
                KafkaTopicPartition(topic: topic, partition: $0.partition, offset: $0.offset == KafkaTopicPartition.stored ? KafkaTopicPartition.beginning : $0.offset)
            }
            guard !seeks.isEmpty else { return true }
            do {
                try consumer.seek(seeks)
                logger.info("\(stage): restored partitions \(seeks.map(\.partition).sorted()) on retry")
                partitions = failed
            } catch {
                logger.warning("\(stage): restored partitions \(seeks.map(\.partition).sorted()) but cannot seek them: \(error); retrying")
            }
            return !partitions.isEmpty
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
