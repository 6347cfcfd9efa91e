import Kafka

/// The output discipline both stages follow between two checkpoints: with
/// `exactly_once`, a transaction opened before the first record and committed together
/// with the consumed offsets; with `at_least_once`, a flush and a plain offset commit.
/// It also keeps the stage's cadence: a checkpoint every `processing.checkpoint_interval`,
/// commits in between (``due(at:checkpointInterval:commitInterval:)``). Used only by its
/// stage's thread.
struct StageCommitter {
    /// Least time between two commits made early because updates or finals are waiting
    /// (instead of waiting for `processing.commit_interval`).
    static let promptCommitSpacing = Duration.milliseconds(100)

    /// A prompt commit also waits this many times as long as the last commit took, so
    /// that prompt commits keep a stage inside commits at most a tenth of its time. A
    /// commit blocks the stage's thread (the transaction's records flushed, then the
    /// broker's answers to the offsets and to the commit itself): reading a backlog on a
    /// loaded machine, a stage-1 worker committing every 100 ms spent 1.3–1.5 s in
    /// commits while it read for about 4 s. On a stream the stage keeps up with, a
    /// transaction's commit is short (medians of 4–12 ms, and about 2 ms to send the
    /// offsets, at 10,000 events/s) and the spacing stays at or near ``promptCommitSpacing``.
    static let promptSpacingPerCommitTime = 9

    /// Least time between two prompt commits after a commit that took `commitTime`.
    static func promptSpacing(after commitTime: Duration) -> Duration {
        max(promptCommitSpacing, commitTime * promptSpacingPerCommitTime)
    }

    /// How long the stages' producers wait to fill a batch (`linger.ms`). Every commit sends
    /// what waits at once (a transaction's commit, or the flush without transactions), so
    /// records are not held past the commit interval; fewer, larger produce requests cost
    /// the broker and the client library less (the broker's CPU per million events a
    /// quarter lower for the lean job and a sixth for the full one than with 5 ms,
    /// alternating builds; docs/operations.md). `kafka.linger.ms` overrides it.
    static let producerLinger = Duration.milliseconds(50)

    /// Whether a stage should commit now: the commit interval passed, or updates or finals
    /// produced since the last commit are waiting and that commit is at least
    /// `promptSpacing` old (``promptSpacing(after:)``). They are committed without waiting
    /// for the interval, since the next stage (or a `read_committed` subscriber) sees them
    /// only then. Each stage-1 worker sends updates at most once per
    /// `processing.update_interval` (and finals when windows close), and stage 2 forwards
    /// what arrives at most every 100 ms (in a bounded run every `update_interval`), so this
    /// adds a few commits a second at most.
    static func isDue(lastCommit: ContinuousClock.Instant, now: ContinuousClock.Instant, interval milliseconds: Int64, awaitedOutputs: Bool,
                      promptSpacing: Duration) -> Bool {
        let elapsed = now - lastCommit
        return elapsed >= .milliseconds(milliseconds) || (awaitedOutputs && elapsed >= promptSpacing)
    }

    let guarantee: PulseConfiguration.Guarantee
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    private(set) var inTransaction = false
    /// With `exactly_once`: records sent since the last commit, produced when it begins
    /// (``send(to:partition:key:value:headers:timestamp:)``).
    var held: [HeldRecord] = []
    /// Key and value bytes of ``held``.
    var heldBytes = 0
    /// Failed deliveries (without a handler) that ``deliverOutputs()`` has reported.
    private var reportedFailures = 0
    private(set) var lastCheckpoint: ContinuousClock.Instant
    private(set) var lastCommit: ContinuousClock.Instant
    /// Updates or finals were produced since the last commit: they are committed without
    /// waiting for the commit interval (``isDue(lastCommit:now:interval:awaitedOutputs:promptSpacing:)``).
    var awaitedOutputs = false
    /// How long the last commit between checkpoints took (``commitProgress(_:topic:now:)``).
    private(set) var lastCommitTime = Duration.zero

    init(guarantee: PulseConfiguration.Guarantee, producer: KafkaProducer, consumer: KafkaConsumer, now: ContinuousClock.Instant = .now) {
        self.guarantee = guarantee
        self.producer = producer
        self.consumer = consumer
        lastCheckpoint = now
        lastCommit = now
    }

    /// What the stage's cycle should do at `now`: a checkpoint once the checkpoint interval
    /// passed since the last, else a commit when one ``isDue(lastCommit:now:interval:awaitedOutputs:promptSpacing:)``
    /// (intervals in milliseconds). At a bounded run's end (`atEndOfInput`: the stage has
    /// nothing left to read) whatever waits is committed at once: spacing commits no longer
    /// protects reading, and the run ends only once it is committed.
    func due(at now: ContinuousClock.Instant, checkpointInterval: Int64, commitInterval: Int64, atEndOfInput: Bool = false) -> Step? {
        if now - lastCheckpoint >= .milliseconds(checkpointInterval) { return .checkpoint }
        if atEndOfInput && owesCommit { return .commit }
        return Self.isDue(lastCommit: lastCommit, now: now, interval: commitInterval, awaitedOutputs: awaitedOutputs,
                          promptSpacing: Self.promptSpacing(after: lastCommitTime)) ? .commit : nil
    }

    enum Step {
        /// Checkpoint the changed partitions and commit (``checkpoint(_:topic:now:write:)``).
        case checkpoint
        /// Commit what was produced, without checkpoints (``commitProgress(_:topic:now:)``).
        case commit
    }

    /// Opens the transaction if one is needed and none is open. Call before producing.
    mutating func prepareToProduce() throws(KafkaError) {
        guard guarantee == .exactlyOnce, !inTransaction else { return }
        try producer.beginTransaction()
        inTransaction = true
    }

    /// Makes everything produced since the last commit durable together with `offsets`
    /// (the next offsets to read). Returns true if a transaction was committed.
    @discardableResult
    mutating func commit(_ offsets: [KafkaTopicPartition]) throws(KafkaError) -> Bool {
        if guarantee == .exactlyOnce {
            try releaseHeld()
            guard inTransaction else { return false }
            if !offsets.isEmpty { try producer.sendOffsetsToTransaction(offsets, groupMetadata: try consumer.groupMetadata()) }
            try producer.commitTransaction()
            inTransaction = false
            return true
        }
        try deliverOutputs()
        try consumer.commit(offsets)
        return false
    }

    /// Waits until every record produced so far is on the broker; call before producing
    /// a checkpoint. A checkpoint must never reach the broker ahead of the outputs it
    /// follows (partials, markers, metric records): the client sends each partition's
    /// records on its own, so a process killed at the wrong moment could leave a complete
    /// checkpoint while some of those outputs were still in its memory. Without
    /// transactions that checkpoint is read back on restore; with them too, on a broker
    /// that shows the records of aborted transactions (the local test broker does). A
    /// restore from it then never produces the lost outputs again.
    ///
    /// Throws the last delivery error if records failed since the last call. Each failure
    /// fails one call: the stage then rewinds to its checkpoint and produces those outputs
    /// again, so a failure before the rewind must not fail the checkpoints after it.
    mutating func deliverOutputs() throws(KafkaError) {
        try producer.flush(timeout: .seconds(60))
        let failures = producer.unhandledDeliveryFailures
        guard failures > reportedFailures else { return }
        reportedFailures = failures
        throw producer.lastUnhandledDeliveryError ?? KafkaError(code: .state, message: "\(failures) records were not delivered")
    }

    /// Drops the open transaction and the held records (after a failure, or when
    /// partitions were lost), and forgets the failed deliveries so far: the stage rewinds
    /// and produces what they held again (an abort's purged records report failures of
    /// their own).
    mutating func abort() {
        if inTransaction { try? producer.abortTransaction() }
        inTransaction = false
        dropHeld()
        reportedFailures = producer.unhandledDeliveryFailures
    }

    /// Forgets the transaction state without aborting (the revocation checkpoint committed it).
    mutating func reset() { inTransaction = false }
}

/// What both stages keep per assigned partition that checkpoints, commits and lag need.
protocol StagePartition {
    /// Offset of the last record processed (-1: none yet).
    var lastOffset: Int64 { get }
    var checkpoint: CheckpointStore.Checkpoint? { get }
    /// Records were processed since the last checkpoint.
    var changedSinceCheckpoint: Bool { get set }
}

extension StageCommitter {
    /// Commits what was produced since the last commit with the offsets it reflects,
    /// without a checkpoint. Offsets are committed only for partitions that have a
    /// checkpoint: a restart resumes from the checkpoint, never from a committed offset
    /// ahead of it (a partition without one would resume from the committed offset).
    /// Returns true if a transaction was committed.
    mutating func commitProgress(_ partitions: [Int32: some StagePartition], topic: String, now: ContinuousClock.Instant) throws(KafkaError) -> Bool {
        lastCommit = now
        awaitedOutputs = false
        let offsets = partitions.keys.sorted().compactMap { partition -> KafkaTopicPartition? in
            guard let state = partitions[partition], state.checkpoint != nil, state.lastOffset >= 0 else { return nil }
            return KafkaTopicPartition(topic: topic, partition: partition, offset: state.lastOffset + 1)
        }
        if guarantee == .atLeastOnce && offsets.isEmpty { return false }
        let started = ContinuousClock.now
        defer { lastCommitTime = ContinuousClock.now - started }
        return try commit(offsets)
    }

    /// Checkpoints each partition with records processed since its checkpoint and commits
    /// them with the offsets after them: outputs delivered first (``deliverOutputs()``; the
    /// commit would wait for them anyway), then `write` produces a partition's checkpoint
    /// and sets it in its state (in the transaction, with `exactly_once`). A partition with
    /// nothing new keeps the checkpoint it has, also when the stage stops, so an instance
    /// restarted on a state it leaves unchanged writes none (the first checkpoint after a
    /// restore is a whole one). Returns how many partitions were checkpointed and whether a
    /// transaction was committed.
    mutating func checkpoint<Partition: StagePartition>(
        _ partitions: inout [Int32: Partition], topic: String, now: ContinuousClock.Instant,
        write: (Int32, inout Partition) throws(KafkaError) -> Void
    ) throws(KafkaError) -> (checkpointed: Int, committed: Bool) {
        lastCheckpoint = now
        lastCommit = now
        awaitedOutputs = false
        try releaseHeld()
        try deliverOutputs()
        var offsets: [KafkaTopicPartition] = []
        for partition in partitions.keys.sorted() {
            guard var state = partitions[partition], state.changedSinceCheckpoint, state.lastOffset >= 0 else { continue }
            try prepareToProduce()
            try write(partition, &state)
            state.changedSinceCheckpoint = false
            partitions[partition] = state
            offsets.append(KafkaTopicPartition(topic: topic, partition: partition, offset: state.lastOffset + 1))
        }
        return (offsets.count, try commit(offsets))
    }

    /// Records not read yet per assigned partition, from the high watermarks of the last
    /// fetches (-1 before the first).
    static func lag(of partitions: [Int32: some StagePartition], topic: String, consumer: KafkaConsumer) -> [Int32: Int64] {
        var lag: [Int32: Int64] = [:]
        for (partition, state) in partitions {
            lag[partition] = consumer.cachedWatermarks(topic: topic, partition: partition).map { max(0, $0.high - state.lastOffset - 1) } ?? -1
        }
        return lag
    }
}
