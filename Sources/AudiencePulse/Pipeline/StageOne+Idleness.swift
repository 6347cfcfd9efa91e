import AudienceMetrics
import Kafka
import Logging
import Synchronization

// Stage 1: when an input partition counts as idle, and pausing partitions far ahead in
// event time.

extension StageOne {
    /// Whether the broker answers for the input topic, asking it (at most once a second,
    /// waiting up to 2 s) unless it answered within the last second. A partition with no
    /// new records is idle only if the broker can say so: during a network outage nothing
    /// arrives either, and advancing the watermark then would close windows too early. A
    /// failed probe restarts idleness everywhere, so after an outage every partition needs
    /// a whole idle timeout and a fresh end (an end-of-partition event, or for one that was
    /// at its end ``readToEnd(_:partition:lastOffset:)``) before its watermark moves (time
    /// for producers to deliver what they buffered meanwhile).
    func brokerAnswers(_ consumer: KafkaConsumer, partition: Int32, now: ContinuousClock.Instant) -> Bool {
        if let confirmed = brokerConfirmedAt, now - confirmed < .seconds(1) { return true }
        if let last = lastBrokerProbe, now - last < .seconds(1) { return false }
        lastBrokerProbe = now
        return probe(consumer, partition: partition) != nil
    }

    /// Whether the consumer has read all of `partition`, asked of the broker (its end
    /// offset against the consumer's position, or the last offset handled when the client
    /// does not know its position). False when the broker does not answer.
    func readToEnd(_ consumer: KafkaConsumer, partition: Int32, lastOffset: Int64) -> Bool {
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
    func align(_ consumer: KafkaConsumer) {
        guard alignment.isEnabled else { return }
        let reading = partitions.values.lazy.filter { $0.end != .reached && !$0.finished }.map(\.aggregator.watermark).filter { $0 != .min }
        let slowest = alignment.publish(worker: worker, slowest: reading.min())
        var pause: [Int32] = []
        var resume: [Int32] = []
        // A partition a bounded run finished reads nothing more: it neither holds back
        // others nor waits for them.
        for (partition, state) in partitions where !state.finished {
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
    func resumeAll(_ consumer: KafkaConsumer) {
        guard !paused.isEmpty else { return }
        consumer.release(inputPartitions(paused))
        paused.removeAll()
    }

    private func inputPartitions(_ ids: some Sequence<Int32>) -> [KafkaTopicPartition] {
        ids.map { KafkaTopicPartition(topic: configuration.inputTopic, partition: $0) }
    }
}
