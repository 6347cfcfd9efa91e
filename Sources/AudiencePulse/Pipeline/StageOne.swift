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
    }

    let configuration: PulseConfiguration
    let metrics: PipelineMetrics
    /// Which of the process's stage-1 workers this is (0 …).
    let worker: Int
    /// Joined the group and restored what it was assigned (the first assignment, empty
    /// or not, was handled); false again while it rewinds after an error.
    let ready = Atomic<Bool>(false)
    private let logger: Logger
    private let instanceID: String
    private let stopping = Atomic<Bool>(false)
    private var consumer: KafkaConsumer?
    private var producer: KafkaProducer?
    private var partitions: [Int32: PartitionState] = [:]
    /// Shared by the process's workers: pauses partitions far ahead in event time.
    private let alignment: WatermarkAlignment
    /// Input partitions this worker paused for ``alignment`` (their count is a gauge).
    private var paused: Set<Int32> = [] {
        didSet { metrics.pausedPartitions.withLock { $0[worker] = paused.count } }
    }
    private var unrestored = StageLoop.PendingRestores()
    private var inputPartitionCount: Int32 = 0
    private var partialsPartitionCount = 0
    private var committer: StageCommitter?
    private let decoders: DecodeAhead
    private let assigner: SegmentAssigner
    private let checkpoints: CheckpointStore
    private let clock = ContinuousClock()
    private var lastUpdate: ContinuousClock.Instant
    private var lastProgress: ContinuousClock.Instant
    private var lastCycle: ContinuousClock.Instant
    private var brokerConfirmedAt: ContinuousClock.Instant?
    private var lastBrokerProbe: ContinuousClock.Instant?
    /// A broker probe failed: idleness starts to be measured again (as after a stall).
    private var brokerWasUnreachable = false
    /// Records this worker consumed (the process-wide count is in ``metrics``).
    private var consumed = 0
    private var consumedAtLastProgress = 0
    /// Where the loop's time went since the last progress log (for that log).
    private var spent = TimeSpent()
    private let smallestAdvance: Int64

    init(configuration: PulseConfiguration, instanceID: String, worker: Int, alignment: WatermarkAlignment, metrics: PipelineMetrics, logger: Logger) {
        self.configuration = configuration
        self.instanceID = instanceID
        self.worker = worker
        self.alignment = alignment
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
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                common: kafka,
                transactionalID: configuration.guarantee == .exactlyOnce ? transactionalID : nil,
                linger: StageCommitter.producerLinger),
            logger: logger)
        self.producer = producer
        if configuration.guarantee == .exactlyOnce { try producer.initTransactions() }
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: configuration.stageKafkaConfiguration, groupID: configuration.app, enablePartitionEOF: true),
            logger: logger,
            rebalanceHandler: { [unowned self] event in self.rebalance(event) })
        self.consumer = consumer
        committer = StageCommitter(guarantee: configuration.guarantee, producer: producer, consumer: consumer)
        try StageLoop.start(
            consumer, topic: configuration.inputTopic,
            share: configuration.assignment.stageOnePartitions(worker: worker, workers: configuration.stageOneWorkers, of: Int(inputPartitionCount)),
            stage: "stage 1", logger: logger, assigned: { rebalance(.assigned($0)) })
        logger.info("stage 1 started", metadata: ["input": "\(configuration.inputTopic)", "partitions": "\(inputPartitionCount)"])
        defer {
            _ = alignment.publish(worker: worker, slowest: nil)
            try? consumer.close()
            producer.close(timeout: .seconds(5))
        }
        try StageLoop.run(
            name: "stage 1", logger: logger, metrics: metrics, ready: ready, producer: producer,
            isStopping: { stopping.load(ordering: .acquiring) }, abort: { committer?.abort() },
            rewind: {
                resumeAll(consumer)
                try StageLoop.rewind(Array(partitions.keys) + unrestored.partitions, topic: configuration.inputTopic, consumer: consumer, restore: restore)
                unrestored.removeAll()
            },
            cycle: { try cycle(consumer: consumer, producer: producer) })
        // Drain: checkpoint what was processed, commit, leave the group.
        try checkpoint(force: true)
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
                guard var state = partitions[partition] else { continue }
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
            if stalled {
                state.lastEventAt = now
                if state.end == .reached { state.end = .toConfirm }
            }
            if touched.contains(partition) { state.lastEventAt = now }  // once per batch, not per event
            // A paused partition is not idle: records may wait for it on the broker.
            let quiet = !paused.contains(partition) && now - state.lastEventAt >= .milliseconds(configuration.idleTimeout)
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
        }
        try spent.perform(committer?.due(at: now, checkpointInterval: configuration.checkpointInterval, commitInterval: configuration.commitInterval),
                          clock: clock, checkpoint: { try checkpoint(force: false) }, commit: commitProgress)
        if now - lastProgress >= .seconds(10) { logProgress(now) }
        // Measured from here to the next cycle's idle check: the poll and the batch's
        // processing, not this cycle's checkpoint or broker probe.
        lastCycle = clock.now
    }

    /// Whether the broker answers for the input topic, asking it (at most once a second,
    /// waiting up to 2 s) unless it answered within the last second. A partition with no
    /// new records is idle only if the broker can say so: during a network outage nothing
    /// arrives either, and advancing the watermark then would close windows too early. A
    /// failed probe restarts idleness everywhere, so after an outage every partition needs
    /// a whole idle timeout and a fresh end (an end-of-partition event, or for one that was
    /// at its end ``readToEnd(_:partition:lastOffset:)``) before its watermark moves (time
    /// for producers to deliver what they buffered meanwhile).
    private func brokerAnswers(_ consumer: KafkaConsumer, partition: Int32, now: ContinuousClock.Instant) -> Bool {
        if let confirmed = brokerConfirmedAt, now - confirmed < .seconds(1) { return true }
        if let last = lastBrokerProbe, now - last < .seconds(1) { return false }
        lastBrokerProbe = now
        return probe(consumer, partition: partition) != nil
    }

    /// Whether the consumer has read all of `partition`, asked of the broker (its end
    /// offset against the consumer's position, or the last offset handled when the client
    /// does not know its position). False when the broker does not answer.
    private func readToEnd(_ consumer: KafkaConsumer, partition: Int32, lastOffset: Int64) -> Bool {
        guard let end = probe(consumer, partition: partition)?.high else { return false }
        let position = (try? consumer.position([KafkaTopicPartition(topic: configuration.inputTopic, partition: partition)]))?.first?.offset ?? -1
        return max(position, lastOffset + 1) >= end
    }

    /// Asks the broker for `partition`'s offsets, waiting up to 2 s. When it does not
    /// answer: nil, and idleness starts over for every partition (`brokerWasUnreachable`).
    private func probe(_ consumer: KafkaConsumer, partition: Int32) -> KafkaWatermarks? {
        do {
            let watermarks = try consumer.watermarks(topic: configuration.inputTopic, partition: partition, timeout: .seconds(2))
            brokerConfirmedAt = clock.now
            return watermarks
        } catch {
            logger.debug("partition \(partition) looks idle but the broker does not answer (\(error)); keeping its watermark")
            brokerConfirmedAt = nil
            brokerWasUnreachable = true
            return nil
        }
    }

    /// Pauses partitions too far ahead of the process's slowest one in event time and
    /// resumes those that are close enough again (``WatermarkAlignment``). A paused
    /// partition is held (``KafkaConsumer/hold(_:)``): what the client fetched for it
    /// waits, and fetching stops once that fills its queue.
    private func align(_ consumer: KafkaConsumer) {
        guard alignment.isEnabled else { return }
        let reading = partitions.values.lazy.filter { $0.end != .reached }.map(\.aggregator.watermark).filter { $0 != .min }
        let slowest = alignment.publish(worker: worker, slowest: reading.min())
        var pause: [Int32] = []
        var resume: [Int32] = []
        for (partition, state) in partitions {
            switch alignment.decide(watermark: state.aggregator.watermark, slowest: slowest, paused: paused.contains(partition)) {
            case .pause: pause.append(partition)
            case .resume: resume.append(partition)
            case .keep: break
            }
        }
        if !pause.isEmpty {
            consumer.hold(inputPartitions(pause))
            paused.formUnion(pause)
            metrics.alignmentPauses.add(pause.count, ordering: .relaxed)
        }
        if !resume.isEmpty {
            consumer.release(inputPartitions(resume))
            paused.subtract(resume)
            // Idleness starts to be measured again: records that waited meanwhile arrive
            // well within the idle timeout.
            let now = clock.now
            for partition in resume { partitions[partition]?.lastEventAt = now }
        }
    }

    /// Resumes every partition paused for alignment (before a rewind rebuilds their state).
    private func resumeAll(_ consumer: KafkaConsumer) {
        guard !paused.isEmpty else { return }
        consumer.release(inputPartitions(paused))
        paused.removeAll()
    }

    private func inputPartitions(_ ids: some Sequence<Int32>) -> [KafkaTopicPartition] {
        ids.map { KafkaTopicPartition(topic: configuration.inputTopic, partition: $0) }
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
            "commits": "\(spent.commits)",
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

    static func wallMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Valid and duplicate records of a run, added to the shared counters once per run
    /// (every worker adds to them).
    private struct RunCounts {
        var valid = 0
        var duplicates = 0
    }

    /// Handles one message, which `decoder` has decoded (or rejected for `rejected`).
    private func handle(_ message: KafkaMessageView, decoder: EventDecoder, rejected: RejectReason?, state: inout PartitionState,
                        counts: inout RunCounts, producer: KafkaProducer) throws {
        state.lastOffset = message.offset
        if state.pendingSince == nil { state.pendingSince = message.timestamp }
        state.changedSinceCheckpoint = true
        if let reason = rejected {
            state.aggregator.recordInvalid()
            metrics.invalid.add(1, ordering: .relaxed)
            try deadLetter(message, reason: reason, producer: producer)
            return
        }
        switch state.aggregator.process(decoder) {
        case .accepted: counts.valid += 1
        case .duplicate: counts.duplicates += 1
        case .late:
            metrics.late.add(1, ordering: .relaxed)
            try deadLetter(message, reason: .late, producer: producer)
        }
    }

    private func deadLetter(_ message: KafkaMessageView, reason: RejectReason, producer: KafkaProducer) throws {
        try committer?.prepareToProduce()
        let headers = [
            KafkaHeader(name: "pulse.reason", string: reason.code),
            KafkaHeader(name: "pulse.source.topic", string: configuration.inputTopic),
            KafkaHeader(name: "pulse.source.partition", string: String(message.partition)),
            KafkaHeader(name: "pulse.source.offset", string: String(message.offset)),
            KafkaHeader(name: "pulse.time", string: String(Self.wallMilliseconds())),
        ]
        try producer.produce(topic: configuration.deadLetterTopic, key: message.key, value: message.value, headers: headers, blockIfQueueFull: true)
        metrics.deadLettered.add(1, ordering: .relaxed)
    }

    /// Whether a partition sends a watermark marker now: after windows closed (their
    /// finals must be announced), for its first, or once the watermark moved by the
    /// smallest window advance since the last (smaller moves close nothing).
    static func isMarkerDue(watermark: Int64, lastMarker: Int64, closedAny: Bool, smallestAdvance: Int64) -> Bool {
        watermark != .min && (closedAny || lastMarker == .min || watermark - lastMarker >= smallestAdvance)
    }

    /// Closes the partition's ready windows and sends their final partials and a
    /// watermark marker; returns whether a window closed.
    private func closeWindows(partition: Int32, state: inout PartitionState, producer: KafkaProducer) throws -> Bool {
        let closed = state.aggregator.closeReadyWindows()
        try emit(closed, partition: partition, state: &state, producer: producer)
        let watermark = state.aggregator.watermark
        guard Self.isMarkerDue(watermark: watermark, lastMarker: state.lastMarker, closedAny: !closed.isEmpty, smallestAdvance: smallestAdvance)
        else { return !closed.isEmpty }
        state.lastMarker = watermark
        state.changedSinceCheckpoint = true
        try committer?.prepareToProduce()
        let finals = StageMessage.closing(closed, partitions: partialsPartitionCount)
        let handle = try producer.topic(configuration.partialsTopic)
        for target in 0..<partialsPartitionCount {
            let marker = StageMessage(watermark: .init(inputPartition: partition, inputPartitions: inputPartitionCount, inputOffset: state.lastOffset,
                                                       time: watermark, closing: finals[target])).encoded
            try marker.withUnsafeBytes { bytes in
                try producer.produce(to: handle, partition: Int32(target), key: nil, value: bytes, blockIfQueueFull: true)
            }
        }
        if !closed.isEmpty { metrics.windowsClosed.add(closed.count, ordering: .relaxed) }
        return !closed.isEmpty
    }

    /// Produces `partials` (each segment's); returns whether there were any.
    @discardableResult
    private func emit(_ partials: [WindowPartial], partition: Int32, state: inout PartitionState, producer: KafkaProducer) throws -> Bool {
        guard !partials.isEmpty else { return false }
        try committer?.prepareToProduce()
        let handle = try producer.topic(configuration.partialsTopic)
        let offset = state.lastOffset
        let headers = state.pendingSince.map { [KafkaHeader(name: "pulse.since", string: String($0))] } ?? []
        state.pendingSince = nil
        for window in partials {
            for (segment, aggregate) in window.segments {
                let message = StageMessage.partial(of: window, segment: segment, aggregate: aggregate, inputPartition: partition,
                                                   inputPartitions: inputPartitionCount, inputOffset: offset).encoded
                let target = StageMessage.partition(ofSegment: segment, partitions: partialsPartitionCount)
                try message.withUnsafeBytes { value in
                    try Array(segment.utf8).withUnsafeBytes { key in
                        try producer.produce(to: handle, partition: target, key: key, value: value, headers: headers, blockIfQueueFull: true)
                    }
                }
            }
        }
        metrics.partialsProduced.add(partials.reduce(0) { $0 + $1.segments.count }, ordering: .relaxed)
        return true
    }

    /// Commits what was produced since the last commit, without a checkpoint.
    private func commitProgress() throws {
        if try committer?.commitProgress(partitions, topic: configuration.inputTopic, now: clock.now) == true {
            metrics.transactionCommits.add(1, ordering: .relaxed)
        }
    }

    /// Writes checkpoints of changed partitions (all with `force`) and commits the consumed
    /// offsets (in the transaction with `exactly_once`).
    private func checkpoint(force: Bool) throws {
        guard let producer else { return }
        let result = try committer?.checkpoint(&partitions, topic: configuration.inputTopic, force: force, now: clock.now) { partition, state throws(KafkaError) in
            let piece = try checkpoints.writeNext(
                partition: partition, nextOffset: state.lastOffset + 1, after: state.checkpoint, now: clock.now, producer: producer,
                increment: { _ in state.aggregator.checkpointIncrement() }, whole: state.aggregator.checkpoint)
            state.checkpoint = piece.checkpoint
            metrics.checkpointed(stage: 1, bytes: piece.bytes, incremental: piece.incremental)
        }
        guard let result else { return }
        if result.committed { metrics.transactionCommits.add(1, ordering: .relaxed) }
    }

    // MARK: Assignment

    private func rebalance(_ event: KafkaRebalanceEvent) -> [KafkaTopicPartition]? {
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
            return offsets
        case .revoked(let revoked):
            // Still ours: checkpoint and commit before they move.
            do { try checkpoint(force: false) } catch { logger.warning("checkpoint on revocation failed: \(error)") }
            for partition in revoked { partitions[partition.partition] = nil }
            paused.subtract(revoked.map(\.partition))
            unrestored.remove(revoked.map(\.partition))
            committer?.reset()
            logger.info("stage 1 revoked \(revoked.map(\.partition).sorted())")
            return nil
        case .lost(let lost):
            committer?.abort()
            for partition in lost { partitions[partition.partition] = nil }
            paused.subtract(lost.map(\.partition))
            unrestored.remove(lost.map(\.partition))
            logger.warning("stage 1 lost \(lost.map(\.partition).sorted()); another member owns them now")
            return nil
        }
    }

    /// Restores partitions' states from their newest checkpoints (one read of the
    /// changelog for all of them); returns where each resumes reading.
    private func restore(_ ids: [Int32]) throws -> StageLoop.Restored {
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
            partitions[partition] = state
            logger.info("restored input partition \(partition)", metadata: [
                "next_offset": "\(checkpoint?.nextOffset ?? -1)", "increments": "\(checkpoint?.increments.count ?? 0)", "users": "\(aggregator.trackedUsers)",
                "restore_ms": "\((clock.now - started).milliseconds)",
            ])
        }
    }
}

extension StageOne.PartitionState: StagePartition {}

/// Wall time of the stage loop by activity: waiting in polls, processing records, closing
/// windows, emitting updates, committing transactions, writing checkpoints.
struct TimeSpent {
    var poll = Duration.zero
    var process = Duration.zero
    var close = Duration.zero
    var updates = Duration.zero
    var commit = Duration.zero
    var checkpoint = Duration.zero
    /// Commits between checkpoints (their time is ``commit``).
    var commits = 0

    /// Does what the stage's cadence says is due (``StageCommitter/due(at:checkpointInterval:commitInterval:)``),
    /// a checkpoint or a commit, and adds the time it took.
    mutating func perform(_ step: StageCommitter.Step?, clock: ContinuousClock, checkpoint: () throws -> Void, commit: () throws -> Void) throws {
        let started = clock.now
        switch step {
        case .checkpoint:
            try checkpoint()
            self.checkpoint += clock.now - started
        case .commit:
            try commit()
            self.commit += clock.now - started
            commits += 1
        case nil:
            break
        }
    }
}
