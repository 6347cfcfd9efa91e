import Foundation
import Kafka
import Logging
import Synchronization

/// Feeds a ``MetricsStore`` from the metrics topic: assigns every partition (no consumer
/// group, nothing committed), starts at the first record within the retention (by record
/// timestamp, which is the window's end), and follows the topic on its own thread.
public final class MetricsTopicReader: Sendable {
    public let store: MetricsStore
    private let configuration: PulseConfiguration
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let caughtUp = Atomic<Bool>(false)
    private let done = DispatchGroup()

    public init(configuration: PulseConfiguration, store: MetricsStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        var logger = logger
        logger[metadataKey: "component"] = "read-model"
        self.logger = logger
    }

    /// Whether the reader has read every partition to the end it had when it started.
    public var isCaughtUp: Bool { caughtUp.load(ordering: .relaxed) }

    /// Starts the reading thread; returns at once.
    public func start() {
        done.enter()
        let thread = Thread { [self] in
            defer { done.leave() }
            ThreadName.setCurrent("pulse-readmodel")
            while !stopping.load(ordering: .acquiring) {
                do {
                    try follow()
                } catch {
                    logger.warning("reading \(configuration.metricsTopic) failed, retrying in 2 s: \(error)")
                    for _ in 0..<20 where !stopping.load(ordering: .acquiring) { Thread.sleep(forTimeInterval: 0.1) }
                }
            }
        }
        thread.name = "pulse-read-model"
        thread.start()
    }

    /// Stops the thread and waits for it (up to 5 s); ends every subscription.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        _ = done.wait(timeout: .now() + 5)
        store.close()
    }

    private func follow() throws {
        let topic = configuration.metricsTopic
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(common: configuration.kafkaConfiguration, groupID: "\(configuration.app)-read-model",
                                                      enablePartitionEOF: true),
            logger: logger)
        defer { try? consumer.close() }
        let admin = try KafkaAdmin(configuration: configuration.kafkaConfiguration, logger: logger)
        let partitions = try admin.partitionIDs(of: topic)
        let since = Int64(Date().timeIntervalSince1970 * 1000) - store.limits.retention
        let starts: [KafkaTopicPartition]
        do {
            starts = try consumer.offsets(forTimes: partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: since) })
        } catch {
            logger.info("the broker cannot look offsets up by time (\(error)); reading \(topic) from the beginning")
            starts = partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.beginning) }
        }
        try consumer.assign(starts)
        logger.info("following \(topic)", metadata: ["partitions": "\(partitions.count)", "retention_ms": "\(store.limits.retention)"])
        var atEnd = Set<Int32>()
        var lastHeartbeat = ContinuousClock.now
        while !stopping.load(ordering: .acquiring) {
            if ContinuousClock.now - lastHeartbeat >= .seconds(15) {
                lastHeartbeat = .now
                store.heartbeat()
            }
            try consumer.poll(maxMessages: 2_000, timeout: .milliseconds(200)) { batch in
                for message in batch {
                    store.ingest(String(decoding: message.value, as: UTF8.self))
                }
                for end in batch.partitionEOFs { atEnd.insert(end.partition) }
                for error in batch.errors { logger.debug("consume: \(error)") }
            }
            if !isCaughtUp && atEnd.count >= partitions.count {
                caughtUp.store(true, ordering: .relaxed)
                logger.info("read model caught up", metadata: ["segments": "\(store.stats.segments)", "records": "\(store.stats.records)"])
            }
        }
    }
}
