import AudienceMetrics
import Kafka
import Synchronization

// Stage 1: each record's outcome (aggregated, or to the dead-letter topic), partials
// and watermark markers to the partials topic, commits and checkpoints.

extension StageOne {
    /// Valid and duplicate records of a run, added to the shared counters once per run
    /// (every worker adds to them).
    struct RunCounts {
        var valid = 0
        var duplicates = 0
    }

    /// Handles one message, which `decoder` has decoded (or rejected for `rejected`).
    func handle(_ message: KafkaMessageView, decoder: EventDecoder, rejected: RejectReason?, state: inout PartitionState,
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
        let headers = [
            KafkaHeader(name: "pulse.reason", string: reason.code),
            KafkaHeader(name: "pulse.source.topic", string: configuration.inputTopic),
            KafkaHeader(name: "pulse.source.partition", string: String(message.partition)),
            KafkaHeader(name: "pulse.source.offset", string: String(message.offset)),
            KafkaHeader(name: "pulse.time", string: String(Self.wallMilliseconds())),
        ]
        try committer?.send(to: producer.topic(configuration.deadLetterTopic), key: message.key.map { Array($0) }, value: Array(message.value), headers: headers)
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
    func closeWindows(partition: Int32, state: inout PartitionState, producer: KafkaProducer) throws -> Bool {
        let closed = state.aggregator.closeReadyWindows()
        try emit(closed, partition: partition, state: &state, producer: producer)
        let watermark = state.aggregator.watermark
        guard Self.isMarkerDue(watermark: watermark, lastMarker: state.lastMarker, closedAny: !closed.isEmpty, smallestAdvance: smallestAdvance)
        else { return !closed.isEmpty }
        state.lastMarker = watermark
        state.changedSinceCheckpoint = true
        let finals = StageMessage.closing(closed, partitions: partialsPartitionCount)
        let handle = try producer.topic(configuration.partialsTopic)
        for target in 0..<partialsPartitionCount {
            let marker = StageMessage(watermark: .init(inputPartition: partition, inputPartitions: inputPartitionCount, inputOffset: state.lastOffset,
                                                       time: watermark, closing: finals[target])).encoded
            try committer?.send(to: handle, partition: Int32(target), key: nil, value: marker)
        }
        if !closed.isEmpty { metrics.windowsClosed.add(closed.count, ordering: .relaxed) }
        return !closed.isEmpty
    }

    /// Produces `partials` (each segment's); returns whether there were any.
    @discardableResult
    func emit(_ partials: [WindowPartial], partition: Int32, state: inout PartitionState, producer: KafkaProducer) throws -> Bool {
        guard !partials.isEmpty else { return false }
        let handle = try producer.topic(configuration.partialsTopic)
        let offset = state.lastOffset
        let headers = state.pendingSince.map { [KafkaHeader(name: "pulse.since", string: String($0))] } ?? []
        state.pendingSince = nil
        for window in partials {
            for (segment, aggregate) in window.segments {
                let message = StageMessage.partial(of: window, segment: segment, aggregate: aggregate, inputPartition: partition,
                                                   inputPartitions: inputPartitionCount, inputOffset: offset).encoded
                let target = StageMessage.partition(ofSegment: segment, partitions: partialsPartitionCount)
                try committer?.send(to: handle, partition: target, key: Array(segment.utf8), value: message, headers: headers)
            }
        }
        metrics.partialsProduced.add(partials.reduce(0) { $0 + $1.segments.count }, ordering: .relaxed)
        return true
    }

    /// Commits what was produced since the last commit, without a checkpoint.
    func commitProgress() throws {
        if try committer?.commitProgress(partitions, topic: configuration.inputTopic, now: clock.now) == true {
            metrics.transactionCommits.add(1, ordering: .relaxed)
        }
    }

    /// Writes checkpoints of changed partitions and commits the consumed offsets (in the
    /// transaction with `exactly_once`).
    func checkpoint() throws {
        guard let producer else { return }
        let result = try committer?.checkpoint(&partitions, topic: configuration.inputTopic, now: clock.now) { partition, state throws(KafkaError) in
            let piece = try checkpoints.writeNext(
                partition: partition, nextOffset: state.lastOffset + 1, after: state.checkpoint, now: clock.now, producer: producer,
                increment: { _ in state.aggregator.checkpointIncrement() }, whole: state.aggregator.checkpoint)
            state.checkpoint = piece.checkpoint
            metrics.checkpointed(stage: 1, bytes: piece.bytes, incremental: piece.incremental)
        }
        guard let result else { return }
        if result.committed { metrics.transactionCommits.add(1, ordering: .relaxed) }
    }
}
