import AudienceMetrics
import Foundation
import Kafka
import Logging
import Synchronization

/// Stage 2: per assigned partials partition, merge the partials of every input
/// partition per (segment, window), finalize windows by the slowest input partition's
/// watermark, compute trends, and produce metric records keyed `segment|window_start`.
/// Checkpoints (merge state + next partials offset) go to the stage-2 changelog.
final class StageTwo: @unchecked Sendable {
    // @unchecked: mutable state is touched only by the stage's thread (see StageOne).
    struct PartitionState {
        var merger: WindowMerger
        var lastOffset: Int64
        var checkpoint: CheckpointStore.Checkpoint?
        var changedSinceCheckpoint = false
        /// Oldest `pulse.since` (input append time, ms) among partials merged since the
        /// last round of updates.
        var pendingSince: Int64?
    }

    let configuration: PulseConfiguration
    let metrics: PipelineMetrics
    /// With `processing.until_end`: where the process's bounded run stands.
    private let bounded: BoundedRun?
    private let logger: Logger
    private let instanceID: String
    private let stopping = Atomic<Bool>(false)
    private var consumer: KafkaConsumer?
    private var producer: KafkaProducer?
    private var partitions: [Int32: PartitionState] = [:]
    private var unrestored = StageLoop.PendingRestores()
    private var inputPartitionCount = 0
    private var committer: StageCommitter?
    private let checkpoints: CheckpointStore
    private let clock = ContinuousClock()
    private var lastUpdate: ContinuousClock.Instant
    private var updatesPending = false
    /// How often merged updates are forwarded (``updateSpacing(updateInterval:bounded:)``).
    private let updateSpacing: Duration
    private var missingSince: ContinuousClock.Instant?
    private var lastGapReport: ContinuousClock.Instant?
    /// Where the loop's time went since the last progress log (for that log), and what
    /// it read, produced and checkpointed meanwhile.
    private var spent = TimeSpent()
    private var lastProgress: ContinuousClock.Instant
    private var progress = Progress()

    struct Progress {
        var partials = 0
        var records = 0
        var finals = 0
        var checkpointBytes = 0
    }

    init(configuration: PulseConfiguration, instanceID: String, bounded: BoundedRun?, metrics: PipelineMetrics, logger: Logger) {
        self.configuration = configuration
        self.instanceID = instanceID
        self.bounded = bounded
        self.metrics = metrics
        var logger = logger
        logger[metadataKey: "stage"] = "2"
        self.logger = logger
        checkpoints = CheckpointStore(topic: configuration.stageTwoChangelog, kafka: configuration.kafkaConfiguration, logger: logger)
        lastUpdate = clock.now
        lastProgress = clock.now
        updateSpacing = Self.updateSpacing(updateInterval: configuration.updateInterval, bounded: bounded != nil)
    }

    /// How often stage 2 forwards the merged updates of changed segments. Stage 1 already
    /// paces each segment's partials to `processing.update_interval`, so a live stage 2
    /// forwards them as they arrive (at most every 100 ms), not on a second timer that
    /// would add up to another interval of delay. A bounded run reads a backlog instead:
    /// there windows close as fast as the input is read, each input partition's final
    /// partials arrive on their own, and forwarding the merge after each of them sent
    /// up to three non-final records per final one, each superseded moments later. It
    /// forwards every `update_interval` (at least 100 ms): progress stays visible at the
    /// configured pace, and the run ends no later (docs/benchmarks-log.md, "Late
    /// morning (2026-12-03)").
    static func updateSpacing(updateInterval: Int64, bounded: Bool) -> Duration {
        .milliseconds(bounded ? max(updateInterval, 100) : 100)
    }

    func stop() { stopping.store(true, ordering: .releasing) }

    func run() throws {
        let kafka = configuration.kafkaConfiguration
        let admin = try KafkaAdmin(configuration: kafka, logger: logger)
        inputPartitionCount = try admin.partitionIDs(of: configuration.inputTopic).count
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                common: kafka,
                transactionalID: configuration.guarantee == .exactlyOnce
                    ? configuration.assignment.stageTwoTransactionalID(app: configuration.app) ?? "\(configuration.app)-stage2-\(instanceID)" : nil,
                linger: StageCommitter.producerLinger),
            logger: logger)
        self.producer = producer
        if configuration.guarantee == .exactlyOnce { try producer.initTransactions() }
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: configuration.stageKafkaConfiguration, groupID: configuration.mergeGroup),
            logger: logger,
            rebalanceHandler: { [unowned self] event in self.rebalance(event) })
        self.consumer = consumer
        committer = StageCommitter(guarantee: configuration.guarantee, producer: producer, consumer: consumer)
        let share = configuration.assignment == .group ? nil
            : configuration.assignment.stageTwoPartitions(of: try admin.partitionIDs(of: configuration.partialsTopic).count)
        try StageLoop.start(consumer, topic: configuration.partialsTopic, share: share, stage: "stage 2", logger: logger, assigned: { rebalance(.assigned($0)) })
        logger.info("stage 2 started", metadata: ["partials": "\(configuration.partialsTopic)", "input_partitions": "\(inputPartitionCount)"])
        defer {
            try? consumer.close()
            producer.close(timeout: .seconds(5))
        }
        try StageLoop.run(
            name: "stage 2", logger: logger, metrics: metrics, ready: metrics.stageTwoReady, producer: producer,
            isStopping: { stopping.load(ordering: .acquiring) || bounded?.hasEnded == true }, abort: { committer?.abort() },
            rewind: {
                try StageLoop.rewind(Array(partitions.keys) + unrestored.partitions, topic: configuration.partialsTopic, consumer: consumer, restore: restore)
                unrestored.removeAll()
            },
            cycle: { try cycle(consumer: consumer, producer: producer) })
        try checkpoint()
        logger.info("stage 2 stopped")
    }

    private func cycle(consumer: KafkaConsumer, producer: KafkaProducer) throws {
        if !unrestored.isEmpty {
            let pending = unrestored.retryIfDue(topic: configuration.partialsTopic, consumer: consumer, stage: "stage 2", logger: logger, restore: restore)
            metrics.stageTwoReady.store(!pending, ordering: .relaxed)
        }
        var partialsRead = 0
        let polling = clock.now
        var processing = Duration.zero
        try consumer.poll(maxMessages: 5_000, timeout: .milliseconds(100)) { batch in
            let started = clock.now
            defer { processing = clock.now - started }
            for error in batch.errors { logger.warning("consume: \(error)") }
            for message in batch {
                guard var state = partitions[message.partition] else { continue }
                state.lastOffset = message.offset
                state.changedSinceCheckpoint = true
                let decoded: StageMessage
                do {
                    decoded = try StageMessage(decoding: Array(message.value))
                } catch {
                    logger.error("skipping an unreadable partials record at \(message.partition):\(message.offset): \(error)")
                    partitions[message.partition] = state
                    continue
                }
                switch decoded {
                case .partial(let partial):
                    partialsRead += 1
                    if let since = message.header("pulse.since").flatMap(Self.integer), since < state.pendingSince ?? .max {
                        state.pendingSince = since
                    }
                    state.merger.apply(partial: partial.aggregate, segment: partial.segment, windowIndex: partial.windowIndex, start: partial.start,
                                       inputPartition: partial.inputPartition, offset: partial.inputOffset, overflowedEvents: partial.overflowedEvents,
                                       isFinal: partial.isFinal, part: partial.part)
                    if partial.isFinal && state.merger.isHoldingMarkers {
                        try produceFinals(state.merger.releaseHeldMarker(of: partial.inputPartition), producer: producer)
                    }
                case .watermark(let watermark):
                    let finals = state.merger.applyWatermark(watermark.time, inputPartition: watermark.inputPartition, closing: watermark.closing)
                    try produceFinals(finals, producer: producer)
                }
                partitions[message.partition] = state
            }
            metrics.partialsConsumed.add(batch.count, ordering: .relaxed)
        }
        metrics.partialsRead.add(partialsRead, ordering: .relaxed)
        progress.partials += partialsRead
        let now = clock.now
        spent.poll += now - polling - processing
        spent.process += processing
        if partialsRead > 0 { updatesPending = true }
        if updatesPending && now - lastUpdate >= updateSpacing {
            lastUpdate = now
            updatesPending = false
            defer { spent.updates += clock.now - now }
            for partition in partitions.keys.sorted() {
                guard var state = partitions[partition] else { continue }
                let records = state.merger.takeUpdatedRecords()
                try produce(records, producer: producer)
                progress.records += records.count
                if !records.isEmpty { committer?.awaitedOutputs = true }
                if !records.isEmpty, let since = state.pendingSince {
                    metrics.eventToMetric.observe(milliseconds: StageOne.wallMilliseconds() - since)
                    state.pendingSince = nil
                    partitions[partition] = state
                }
            }
            updateLag(consumer)
        }
        reportMissingFinals(now)
        let atEnd = bounded?.endWatermarks.map { !partitions.isEmpty && holds($0) } ?? false
        if atEnd { bounded?.stageTwoHolds() }
        try spent.perform(committer?.due(at: now, checkpointInterval: configuration.checkpointInterval, commitInterval: configuration.commitInterval, atEndOfInput: atEnd),
                          clock: clock, checkpoint: { try checkpoint() }, commit: commitProgress)
        if now - lastProgress >= .seconds(10) { logProgress(now) }
        if let bounded { reportBounded(bounded) }
    }

    /// Tells the bounded run whether this stage is done: once every stage-1 worker is,
    /// each of its partitions holds, from every input partition the workers finished, a
    /// watermark at least the one that partition ended with (so every window that closed
    /// at the end is final here, and a merger restored from an earlier run does not count
    /// as done), no marker waits for finals, and the finals are committed.
    private func reportBounded(_ bounded: BoundedRun) {
        let merging: BoundedRun.Merging
        if !metrics.stageTwoReady.load(ordering: .relaxed) {
            merging = .waiting
        } else if partitions.isEmpty {
            merging = .ownsNothing
        } else if let ends = bounded.endWatermarks, holds(ends), !partitions.values.contains(where: \.merger.isHoldingMarkers),
                  committer?.owesCommit != true {
            merging = .finished(ends: ends)
        } else {
            merging = .waiting
        }
        if bounded.report(merging: merging) { logger.info("bounded run complete: every input partition was read to its end and every window is final; stopping") }
    }

    /// Whether every partition's merger holds, from each input partition in `ends`, at
    /// least the watermark it ended with.
    private func holds(_ ends: [Int32: Int64]) -> Bool {
        partitions.values.allSatisfy { state in ends.allSatisfy { (state.merger.watermark(of: $0.key) ?? .min) >= $0.value } }
    }

    /// Every 10 s: what the stage read, produced and checkpointed, and where its loop's
    /// time went (`ms_process`: merging partials and producing the finals their markers
    /// complete, `ms_updates`: assembling and producing updated records).
    private func logProgress(_ now: ContinuousClock.Instant) {
        logger.info("stage 2 progress", metadata: [
            "partials": "\(progress.partials)", "records": "\(progress.records)", "finals": "\(progress.finals)",
            "checkpoint_bytes": "\(progress.checkpointBytes)",
            "ms_poll": "\(spent.poll.milliseconds)", "ms_process": "\(spent.process.milliseconds)",
            "ms_updates": "\(spent.updates.milliseconds)", "ms_commit": "\(spent.commit.milliseconds)",
            "ms_checkpoint": "\(spent.checkpoint.milliseconds)", "commits": "\(spent.commits)",
        ])
        spent = TimeSpent()
        progress = Progress()
        lastProgress = now
    }

    private func produceFinals(_ finals: [MetricRecord], producer: KafkaProducer) throws {
        try produce(finals, producer: producer)
        if !finals.isEmpty { committer?.awaitedOutputs = true }
        metrics.finalRecords.add(finals.count, ordering: .relaxed)
        progress.finals += finals.count
        let now = StageOne.wallMilliseconds()
        for record in finals { metrics.windowCloseDelay.observe(milliseconds: now - record.end) }
    }

    /// Close markers announce how many final partials precede them; a window whose
    /// finals did not all arrive waits rather than becoming final without them. Normally
    /// they arrive in the same batch; if they stay missing (the broker did not deliver
    /// records it acknowledged), say so every 30 s and expose the count.
    private func reportMissingFinals(_ now: ContinuousClock.Instant) {
        var missing = 0
        var details: [String] = []
        for partition in partitions.keys.sorted() {
            guard let merger = partitions[partition]?.merger, merger.isHoldingMarkers else { continue }
            for (input, gaps) in merger.missingFinals.sorted(by: { $0.key < $1.key }) {
                for gap in gaps {
                    missing += gap.missing
                    details.append("partials \(partition) input \(input) window \(gap.window.windowIndex)@\(gap.window.start): \(gap.missing) of \(gap.window.finals)")
                }
            }
        }
        metrics.missingFinalPartials.store(missing, ordering: .relaxed)
        guard missing > 0 else {
            missingSince = nil
            lastGapReport = nil
            return
        }
        let since = missingSince ?? now
        missingSince = since
        guard now - since >= .seconds(5), lastGapReport.map({ now - $0 >= .seconds(30) }) ?? true else { return }
        lastGapReport = now
        logger.error("final partials announced by close markers have not arrived; their windows are not finalized", metadata: [
            "missing": "\(missing)", "windows": "\(details.prefix(10).joined(separator: "; "))",
        ])
    }

    private func updateLag(_ consumer: KafkaConsumer) {
        let lag = StageCommitter.lag(of: partitions, topic: configuration.partialsTopic, consumer: consumer)
        metrics.stageTwoLag.withLock { $0 = lag }
    }

    private static func integer(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        Int64(String(decoding: bytes, as: UTF8.self))
    }

    private func produce(_ records: [MetricRecord], producer: KafkaProducer) throws {
        guard !records.isEmpty else { return }
        let handle = try producer.topic(configuration.metricsTopic)
        let withWindowName = configuration.aggregation.windows.count > 1
        for record in records {
            try committer?.send(to: handle, key: Array(record.key(includeWindowName: withWindowName).utf8), value: record.jsonBytes, timestamp: record.end)
        }
        metrics.recordsProduced.add(records.count, ordering: .relaxed)
    }

    /// Commits what was produced since the last commit, without a checkpoint.
    private func commitProgress() throws {
        if try committer?.commitProgress(partitions, topic: configuration.partialsTopic, now: clock.now) == true {
            metrics.transactionCommits.add(1, ordering: .relaxed)
        }
    }

    /// Writes checkpoints of changed partitions and commits the consumed offsets (in the
    /// transaction with `exactly_once`).
    private func checkpoint() throws {
        guard let producer else { return }
        let result = try committer?.checkpoint(&partitions, topic: configuration.partialsTopic, now: clock.now) { partition, state throws(KafkaError) in
            let piece = try checkpoints.writeNext(
                partition: partition, nextOffset: state.lastOffset + 1, after: state.checkpoint, now: clock.now, producer: producer,
                increment: state.merger.checkpointIncrement(limit:), whole: state.merger.checkpoint)
            state.checkpoint = piece.checkpoint
            progress.checkpointBytes += piece.bytes
            metrics.checkpointed(stage: 2, bytes: piece.bytes, incremental: piece.incremental)
        }
        if result?.committed == true { metrics.transactionCommits.add(1, ordering: .relaxed) }
    }

    private func rebalance(_ event: KafkaRebalanceEvent) -> [KafkaTopicPartition]? {
        switch event {
        case .assigned(let assigned):
            let (offsets, failed) = StageLoop.assign(assigned, stage: "stage 2", logger: logger, restore: restore)
            unrestored.add(failed)
            logger.info("stage 2 assigned \(assigned.map(\.partition).sorted())")
            metrics.rebalances.add(1, ordering: .relaxed)
            metrics.stageTwoReady.store(unrestored.isEmpty, ordering: .relaxed)
            return offsets
        case .revoked(let revoked):
            do { try checkpoint() } catch { logger.warning("checkpoint on revocation failed: \(error)") }
            for partition in revoked { partitions[partition.partition] = nil }
            unrestored.remove(revoked.map(\.partition))
            committer?.reset()
            return nil
        case .lost(let lost):
            committer?.abort()
            for partition in lost { partitions[partition.partition] = nil }
            unrestored.remove(lost.map(\.partition))
            return nil
        }
    }

    /// Restores partitions' merge states from their newest checkpoints (one read of the
    /// changelog for all of them); returns where each resumes reading.
    private func restore(_ ids: [Int32]) throws -> StageLoop.Restored {
        let started = clock.now
        let checkpoints = try checkpoints.restore(partitions: ids, input: configuration.partialsTopic, consumer: consumer)
        return StageLoop.restored(ids, from: checkpoints) { partition, checkpoint in
            let merger = WindowMerger(config: configuration.aggregation, inputPartitions: inputPartitionCount, trendConfig: configuration.trend)
            if let checkpoint {
                try merger.restore(checkpoint.state)
                for increment in checkpoint.increments { try merger.applyIncrement(increment) }
            }
            var state = PartitionState(merger: merger, lastOffset: (checkpoint?.nextOffset ?? 0) - 1)
            state.checkpoint = checkpoint?.withoutState
            partitions[partition] = state
            logger.info("restored partials partition \(partition)", metadata: [
                "next_offset": "\(checkpoint?.nextOffset ?? -1)", "increments": "\(checkpoint?.increments.count ?? 0)",
                "pending_windows": "\(merger.pendingWindowCount)", "restore_ms": "\((clock.now - started).milliseconds)",
            ])
        }
    }
}

extension StageTwo.PartitionState: StagePartition {}
