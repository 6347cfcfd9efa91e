import ArgumentParser
import AudiencePulse
import Foundation
import Kafka
import Logging

struct Topics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the topics of a configuration: the input topic (if missing) and the service's own.",
        discussion: """
            Idempotent: existing topics are left as they are. Run it once before the first `pulse serve` (the demo \
            and the compose file's topic-init service do), or let an operator create the input topic with the \
            partition count stage 1 should scale to.
            """)

    @Option(name: .shortAndLong, help: "The YAML configuration file.") var config: String
    @Option(help: "Partitions of the input topic if it has to be created (the most stage-1 instances that can share the work).")
    var inputPartitions: Int32 = 8

    func run() throws {
        let configuration = try ConfigurationFile.load(config)
        let logger = Logging.bootstrapped(configuration)
        let admin = try KafkaAdmin(configuration: configuration.kafkaConfiguration, logger: logger)
        let existing = Set(try admin.listTopics())
        if !existing.contains(configuration.inputTopic) {
            try admin.createTopics(
                [KafkaTopicSpecification(name: configuration.inputTopic, partitions: inputPartitions, replicationFactor: Int32(configuration.replicationFactor))],
                ifNotExists: true)
            try admin.waitForTopic(configuration.inputTopic, partitions: inputPartitions)
            print("created \(configuration.inputTopic) (\(inputPartitions) partitions)")
        }
        try TopicSetup.ensure(configuration, admin: admin, logger: logger)
        print("ok: \(configuration.inputTopic), \(configuration.metricsTopic), \(configuration.deadLetterTopic), \(configuration.partialsTopic) and the changelogs exist")
    }
}
