import Kafka
import Logging

/// Checks the input topic and creates the service's own topics where missing:
/// `<app>.partials`, both changelogs (compacted; sized like the partitions they
/// checkpoint), the metrics topic (compacted) and the dead-letter topic.
public enum TopicSetup {
    /// The configured input topic is missing: a configuration error (exit code 2).
    public struct MissingInput: Error, CustomStringConvertible {
        public var topic: String
        public var cause: KafkaError
        public var description: String {
            "the input topic \(topic) does not exist or cannot be read (\(cause.name)): create it with as many partitions as stage 1 should scale to, keyed by user_id, or set topics.input"
        }
    }

    public static func ensure(_ configuration: PulseConfiguration, admin: KafkaAdmin, logger: Logger) throws {
        let inputPartitions: Int
        do {
            inputPartitions = try admin.partitionIDs(of: configuration.inputTopic).count
        } catch {
            throw MissingInput(topic: configuration.inputTopic, cause: error)
        }
        let replication = Int32(configuration.replicationFactor)
        let compacted = ["cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"]
        let wanted = [
            KafkaTopicSpecification(name: configuration.partialsTopic, partitions: Int32(configuration.partialsPartitions), replicationFactor: replication,
                                    configs: ["retention.ms": "86400000"]),
            KafkaTopicSpecification(name: configuration.stageOneChangelog, partitions: Int32(inputPartitions), replicationFactor: replication, configs: compacted),
            KafkaTopicSpecification(name: configuration.stageTwoChangelog, partitions: Int32(configuration.partialsPartitions), replicationFactor: replication, configs: compacted),
            KafkaTopicSpecification(name: configuration.metricsTopic, partitions: Int32(configuration.metricsPartitions), replicationFactor: replication,
                                    configs: ["cleanup.policy": "compact"]),
            KafkaTopicSpecification(name: configuration.deadLetterTopic, partitions: Int32(inputPartitions), replicationFactor: replication),
        ]
        let existing = Set(try admin.listTopics())
        let missing = wanted.filter { !existing.contains($0.name) }
        if !missing.isEmpty {
            try admin.createTopics(missing, ifNotExists: true)
            logger.info("created topics \(missing.map(\.name))")
        }
        for topic in wanted { try admin.waitForTopic(topic.name, partitions: 1) }
        let changelogPartitions = try admin.partitionIDs(of: configuration.stageOneChangelog).count
        guard changelogPartitions >= inputPartitions else {
            throw KafkaError(code: .invalidArgument, message: "\(configuration.stageOneChangelog) has \(changelogPartitions) partitions but \(configuration.inputTopic) has \(inputPartitions); add partitions to the changelog")
        }
    }
}
