import AudienceMetrics
import Foundation
import Kafka
import Logging
import Synchronization

/// Stage 1: per assigned input partition, decode → validate (→ dead-letter topic) →
/// de-duplicate → segments → windows → partial aggregates; partials and watermarks to
/// `<app>.partials`; checkpoints (state + next input offset) to the stage-1 changelog.
///
/// Runs a synchronous poll → process → produce → checkpoint loop on its own thread. A
/// process runs `processing.stage1_workers` of them, each a member of the input topic's
/// consumer group with its own consumer, transactional producer and partitions.
/// With `exactly_once`, everything produced between two checkpoints, the checkpoint and
/// the consumed offsets go in one Kafka transaction; correctness after a crash rests on
/// restoring the checkpoint and replaying from its offset (outputs are deterministic and
/// tagged with the offsets they reflect), not on the broker hiding aborted records.
final class StageOne: @unchecked Sendable {
    // @unchecked: all mutable state below is touched only by the stage's own thread
    // (`run`, and the rebalance callback that runs inside its polls); other threads
    // only call `stop()`, which sets an atomic flag.
    /// Where the consumer stands against a partition's end.
    enum End {
        /// Records may follow (new ones arrived since the last end-of-partition event).
        case reading
        /// At its end: an end-of-partition event after the last record, or the broker's
        /// end offset confirmed.
        case reached
        /// It was at its end before a stall or an unanswered probe; whether it still is
        /// must be asked of the broker: the client signals a partition's end once per end
        /// offset, so a quiet partition gets no new end-of-partition event.
        case toConfirm
    }

    struct PartitionState {
        var aggregator: PartitionAggregator
        var lastOffset: Int64
        var lastEventAt: ContinuousClock.Instant
        var lastMarker: Int64 = .min
        var checkpoint: CheckpointStore.Checkpoint?
        var changedSinceCheckpoint = false
        /// Whether the consumer has read everything the partition holds: only then can
        /// the partition be idle.
        var end = End.reading
        var lastEndCheck: ContinuousClock.Instant?
        /// Append time (ms) of the oldest input record not yet reflected in an emitted
        /// partial: sent along as the `pulse.since` header for the end-to-end histogram.
        var pendingSince: Int64?
        /// A bounded run (`processing.until_end`) read the partition to its end: its
        /// watermark moved to the clock (``finish(_:state:)``), and records that arrive
        /// after it are left for a later run.
        var finished = false
    }

    let configuration: PulseConfiguration
    let metrics: PipelineMetrics
    /// Which of the process's stage-1 workers this is (0 …).
    let worker: Int
    /// Joined the group and restored what it was assigned (the first assignment, empty
    /// or not, was handled); false again while it rewinds after an error.
    let ready = Atomic<Bool>(false)
    let logger: Logger
    private let instanceID: String
    private let stopping = Atomic<Bool>(false)
    var consumer: KafkaConsumer?
    var producer: KafkaProducer?
    var partitions: [Int32: PartitionState] = [:]
    /// Shared by the process's workers: pauses partitions far ahead in event time.
    let alignment: WatermarkAlignment
    /// With `processing.until_end`: where the process's bounded run stands.
    let bounded: BoundedRun?
    /// Input partitions this worker paused for ``alignment`` (their count is a gauge).
    var paused: Set<Int32> = [] {
        didSet { metrics.pausedPartitions.withLock { $0[worker] = paused.count } }
    }
    var unrestored = StageLoop.PendingRestores()
    var inputPartitionCount: Int32 = 0
    var partialsPartitionCount = 0
    var committer: StageCommitter?
    private let decoders: DecodeAhead
    let assigner: SegmentAssigner
    let checkpoints: CheckpointStore
    let clock = ContinuousClock()
    private var lastUpdate: ContinuousClock.Instant
    private var lastProgress: ContinuousClock.Instant
    private var lastCycle: ContinuousClock.Instant
    var brokerConfirmedAt: ContinuousClock.Instant?
    var lastBrokerProbe: ContinuousClock.Instant?
    /// A broker probe failed: idleness starts to be measured again (as after a stall).
    var brokerWasUnreachable = false
    /// Records this worker consumed (the process-wide count is in ``metrics``).
    private var consumed = 0
    private var consumedAtLastProgress = 0
    /// Where the loop's time went since the last progress log (for that log).
    private var spent = TimeSpent()
    let smallestAdvance: Int64

    init(configuration: PulseConfiguration, instanceID: String, worker: Int, alignment: WatermarkAlignment, bounded: BoundedRun?,
         metrics: PipelineMetrics, logger: Logger) {
        self.configuration = configuration
        self.instanceID = instanceID
        self.worker = worker
        self.alignment = alignment
        self.bounded = bounded
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "stage"] = "1"
        if configuration.stageOneWorkers > 1 { logger[metadataKey: "worker"] = "\(worker)" }
        self.logger = logger
        let names = configuration.aggregation.segments.attributeNames
        decoders = DecodeAhead(mapping: configuration.mapping, limits: configuration.limits, attributeNames: names)
        assigner = SegmentAssigner(spec: configuration.aggregation.segments, attributeNames: names)
        checkpoints = CheckpointStore(topic: configuration.stageOneChangelog, kafka: configuration.kafkaConfiguration, logger: logger)
        lastUpdate = clock.now
        lastProgress = clock.now
        lastCycle = clock.now
        smallestAdvance = configuration.aggregation.smallestAdvance
    }

    /// The producer's transactional id: one per worker, the same after a restart (with
    /// the same instance id, or the same share of a static assignment), so a restarted
    /// worker fences its predecessor at once.
    private var transactionalID: String {
        configuration.assignment.stageOneTransactionalID(app: configuration.app, worker: worker, workers: configuration.stageOneWorkers)
            ?? (worker == 0 ? "\(configuration.app)-stage1-\(instanceID)" : "\(configuration.app)-stage1-\(instanceID)-w\(worker)")
    }

    /// Asks the loop to finish its transaction, leave the group and return.
    func stop() { stopping.store(true, ordering: .releasing) }

    /// The stage loop; returns after ``stop()`` or throws on an unrecoverable error.
    func run() throws {
        let kafka = configuration.kafkaConfiguration
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        inputPartitionCount = Int32(try admin.partitionIDs(of: configuration.inputTopic).count)
        partialsPartitionCount = try admin.partitionIDs(of: configuration.partialsTopic).count
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: configuration.stageKafkaConfiguration, groupID: configuration.app, enablePartitionEOF: true),
            logger: logger,
            rebalanceHandler: { [unowned self] event in self.rebalance(event) })
        self.consumer = consumer
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                common: kafka,
                transactionalID: configuration.guarantee == .exactlyOnce ? transactionalID : nil,
                linger: StageCommitter.producerLinger),
            logger: logger)
        self.producer = producer
        if configuration.guarantee == .exactlyOnce { try producer.initTransactions() }
        // A static share is fetched while the state is restored. Only now: a predecessor's
        // transaction that initTransactions just aborted no longer holds its offsets.
        let share = configuration.assignment.stageOnePartitions(worker: worker, workers: configuration.stageOneWorkers, of: Int(inputPartitionCount))
        let readAhead = StageLoop.readAhead(consumer, topic: configuration.inputTopic, share: share, checkpoints: checkpoints, stage: "stage 1", logger: logger)
        committer = StageCommitter(guarantee: configuration.guarantee, producer: producer, consumer: consumer)
        try StageLoop.start(consumer, topic: configuration.inputTopic, share: share, readAhead: readAhead,
                            stage: "stage 1", logger: logger, assigned: { rebalance(.assigned($0)) })
        logger.info("stage 1 started", metadata: ["input": "\(configuration.inputTopic)", "partitions": "\(inputPartitionCount)"])
        defer {
            _ = alignment.publish(worker: worker, slowest: nil)
            try? consumer.close()
            producer.close(timeout: .seconds(5))
        }
        try StageLoop.run(
            name: "stage 1", logger: logger, metrics: metrics, ready: ready, producer: producer,
            isStopping: { stopping.load(ordering: .acquiring) || bounded?.hasEnded == true }, abort: { committer?.abort() },
            rewind: {
                resumeAll(consumer)
                try StageLoop.rewind(Array(partitions.keys) + unrestored.partitions, topic: configuration.inputTopic, consumer: consumer, restore: restore)
                unrestored.removeAll()
            },
            cycle: { try cycle(consumer: consumer, producer: producer) })
        // Drain: checkpoint what was processed since the last checkpoint, commit, leave the group.
        try checkpoint()
        let committed = partitions.keys.sorted().compactMap { partition in
            partitions[partition].flatMap { $0.lastOffset >= 0 ? "\(partition):\($0.lastOffset + 1)" : nil }
        }
        logger.info("stage 1 stopped", metadata: ["committed": "\(committed.joined(separator: ","))"])
    }

    private func cycle(consumer: KafkaConsumer, producer: KafkaProducer) throws {
        if !unrestored.isEmpty {
            let pending = unrestored.retryIfDue(topic: configuration.inputTopic, consumer: consumer, stage: "stage 1", logger: logger, restore: restore)
            ready.store(!pending, ordering: .relaxed)
        }
        var touched = Set<Int32>()
        let polling = clock.now
        var processing = Duration.zero
        try consumer.poll(maxMessages: 5_000, timeout: .milliseconds(100)) { batch in
            for error in batch.errors { logger.warning("consume: \(error)") }
            let started = clock.now
            if let first = batch.first, let appended = first.timestamp {
                metrics.inputDelay.observe(milliseconds: Self.wallMilliseconds() - appended)
            }
            // Records come in runs of one partition (a fetched batch each): its state is
            // taken out and put back once per run, not per record.
            var position = batch.startIndex
            while position < batch.endIndex {
                let partition = batch[position].partition
                var end = position + 1
                while end < batch.endIndex, batch[end].partition == partition { end += 1 }
                let run = position..<end
                position = end
                // A partition a bounded run finished reads nothing more.
                guard var state = partitions[partition], !state.finished else { continue }
                var counts = RunCounts()
                defer {
                    partitions[partition] = state
                    metrics.valid.add(counts.valid, ordering: .relaxed)
                    metrics.duplicates.add(counts.duplicates, ordering: .relaxed)
                }
                try decoders.forEach(run, decode: { index, decoder in decoder.decode(batch[index].value) },
                                     prefetch: { _, event in state.aggregator.prefetch(event) }) { index, decoder, rejected in
                    try handle(batch[index], decoder: decoder, rejected: rejected, state: &state, counts: &counts, producer: producer)
                }
                state.end = .reading  // an end-of-partition event follows the new records
                touched.insert(partition)
            }
            for end in batch.partitionEOFs { partitions[end.partition]?.end = .reached }
            metrics.consumed.add(batch.count, ordering: .relaxed)
            consumed += batch.count
            processing = clock.now - started
            if batch.count > 0 { metrics.batchProcessing.observe(seconds: processing.secondsDouble) }
        }
        let now = clock.now
        spent.poll += now - polling - processing
        spent.process += processing
        // Idleness is measured only while this loop runs: after a stall (the process was
        // stopped, or starved) nothing says the partitions are quiet, and they may even
        // belong to another member by now. Start measuring again, and wait for a fresh
        // end-of-partition before calling any of them idle.
        // The same after the broker did not answer: records produced meanwhile may still
        // be on their way (producers buffer them too).
        let stalled = now - lastCycle > .milliseconds(max(configuration.idleTimeout / 2, 100)) || brokerWasUnreachable
        brokerWasUnreachable = false
        for partition in partitions.keys.sorted() {
            guard var state = partitions[partition] else { continue }
            // A bounded run ends a partition once its last fetch's end is handled, or at the
            // client's end-of-partition event, before a stall could make that end one to
            // confirm after the idle timeout.
            if bounded != nil && !state.finished
                && (state.end == .reached || fetchedToEnd(consumer, partition: partition, lastOffset: state.lastOffset)) {
                finish(partition, state: &state)
            }
            if stalled {
                state.lastEventAt = now
                if state.end == .reached { state.end = .toConfirm }
            }
            if touched.contains(partition) { state.lastEventAt = now }  // once per batch, not per event
            // A paused partition is not idle: records may wait for it on the broker. A
            // finished one closed its windows already.
            let quiet = !state.finished && !paused.contains(partition) && now - state.lastEventAt >= .milliseconds(configuration.idleTimeout)
            if quiet, state.end == .toConfirm, state.lastEndCheck.map({ now - $0 >= .seconds(1) }) ?? true {
                state.lastEndCheck = now
                if readToEnd(consumer, partition: partition, lastOffset: state.lastOffset) { state.end = .reached }
            }
            if quiet, state.end == .reached, brokerAnswers(consumer, partition: partition, now: now) {
                // Idle (read to its end, nothing new for a while): let processing time
                // move the watermark so windows still close.
                let wall = Self.wallMilliseconds()
                state.aggregator.advanceWatermark(to: wall - configuration.idleTimeout - configuration.aggregation.maxOutOfOrderness)
            }
            if try closeWindows(partition: partition, state: &state, producer: producer) { committer?.awaitedOutputs = true }
            partitions[partition] = state
        }
        align(consumer)
        let closed = clock.now
        spent.close += closed - now
        if now - lastUpdate >= .milliseconds(configuration.updateInterval) {
            lastUpdate = now
            defer { spent.updates += clock.now - closed }
            for partition in partitions.keys.sorted() {
                guard var state = partitions[partition] else { continue }
                if try emit(state.aggregator.takeUpdates(), partition: partition, state: &state, producer: producer) { committer?.awaitedOutputs = true }
                partitions[partition] = state
            }
            updateLag(consumer)
            publishTrackedUsers()
        }
        let atEnd = bounded != nil && !partitions.isEmpty && allFinished
        try spent.perform(committer?.due(at: now, checkpointInterval: configuration.checkpointInterval, commitInterval: configuration.commitInterval, atEndOfInput: atEnd),
                          clock: clock, checkpoint: { try checkpoint() }, commit: commitProgress)
        if now - lastProgress >= .seconds(10) { logProgress(now) }
        if let bounded { reportBounded(bounded) }
        // Measured from here to the next cycle's idle check: the poll and the batch's
        // processing, not this cycle's checkpoint or broker probe.
        lastCycle = clock.now
    }

    private func logProgress(_ now: ContinuousClock.Instant) {
        let seconds = (now - lastProgress).secondsDouble
        var metadata: Logger.Metadata = [
            "consumed": "\(consumed)", "events_per_second": "\(Int(Double(consumed - consumedAtLastProgress) / max(seconds, 0.001)))",
            "valid": "\(metrics.valid.load(ordering: .relaxed))", "invalid": "\(metrics.invalid.load(ordering: .relaxed))",
            "duplicates": "\(metrics.duplicates.load(ordering: .relaxed))", "late": "\(metrics.late.load(ordering: .relaxed))",
            "windows_closed": "\(metrics.windowsClosed.load(ordering: .relaxed))",
            "ms_poll": "\(spent.poll.milliseconds)", "ms_process": "\(spent.process.milliseconds)",
            "ms_close": "\(spent.close.milliseconds)", "ms_updates": "\(spent.updates.milliseconds)",
            "ms_commit": "\(spent.commit.milliseconds)", "ms_checkpoint": "\(spent.checkpoint.milliseconds)",
            "commits": "\(spent.commits)", "tracked_users": "\(publishTrackedUsers())",
        ]
        if alignment.isEnabled { metadata["paused"] = "\(paused.sorted())" }
        logger.info("stage 1 progress", metadata: metadata)
        spent = TimeSpent()
        lastProgress = now
        consumedAtLastProgress = consumed
    }

    private func updateLag(_ consumer: KafkaConsumer) {
        let lag = StageCommitter.lag(of: partitions, topic: configuration.inputTopic, consumer: consumer)
        metrics.stageOneLagByWorker.withLock { $0[worker] = lag }
    }

    /// Sets the worker's share of the tracked-users gauge; returns it.
    @discardableResult
    func publishTrackedUsers() -> Int {
        let users = partitions.values.reduce(0) { $0 + $1.aggregator.trackedUsers }
        metrics.trackedUsersByWorker.withLock { $0[worker] = users }
        return users
    }

    static func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

extension StageOne.PartitionState: StagePartition {}
