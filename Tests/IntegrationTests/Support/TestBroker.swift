import Foundation
import Kafka
import Testing

/// The broker under test and helpers to make uniquely named resources on it.
///
/// Integration tests never skip for a missing broker: without `KAFKA_BOOTSTRAP_SERVERS`
/// they fail, saying how to start one (`make test` does it).
enum TestBroker {
    struct MissingBroker: Error, CustomStringConvertible {
        var description: String {
            "KAFKA_BOOTSTRAP_SERVERS is not set: run `make test`, or start a broker with `scripts/broker.sh start` and export the address it prints"
        }
    }

    /// Points every helper at another broker (or a proxy in front of one) for one test.
    @TaskLocal static var overrideServers: String?

    static func bootstrapServers() throws -> String {
        if let overrideServers { return overrideServers }
        guard let servers = ProcessInfo.processInfo.environment["KAFKA_BOOTSTRAP_SERVERS"], !servers.isEmpty else {
            throw MissingBroker()
        }
        return servers
    }

    /// Whether the broker hides aborted transactional records from read_committed
    /// consumers (Apache Kafka does; the local test broker does not). Declared by
    /// `KAFKA_BROKER_TRANSACTIONS=full`.
    static var hidesAbortedTransactions: Bool {
        ProcessInfo.processInfo.environment["KAFKA_BROKER_TRANSACTIONS"] == "full"
    }

    /// Group timing for brokers whose group coordinator is slow with librdkafka's
    /// defaults, passed through like any librdkafka property.
    static let groupProperties: [String: String] = [
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "max.poll.interval.ms": "10000",
    ]

    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func common() throws -> KafkaConfiguration { KafkaConfiguration(bootstrapServers: try bootstrapServers()) }

    static func producer(transactionalID: String? = nil, properties: [String: String] = [:]) throws -> KafkaProducer {
        var common = try common()
        common.properties = properties
        return try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, transactionalID: transactionalID))
    }

    static func consumer(
        group: String,
        isolation: KafkaConsumerConfiguration.IsolationLevel = .readCommitted,
        partitionEOF: Bool = false,
        rebalanceHandler: (@Sendable (KafkaRebalanceEvent) -> [KafkaTopicPartition]?)? = nil
    ) throws -> KafkaConsumer {
        var common = try common()
        common.properties = groupProperties
        return try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                common: common, groupID: group, isolationLevel: isolation, enablePartitionEOF: partitionEOF),
            rebalanceHandler: rebalanceHandler)
    }

    /// Creates a topic and waits until its metadata is visible.
    static func createTopic(_ name: String, partitions: Int32, configs: [String: String] = [:]) async throws {
        let admin = try KafkaAdmin(configuration: common())
        try await admin.createTopics([KafkaTopicSpecification(name: name, partitions: partitions, configs: configs)])
        try await admin.waitForTopic(name, partitions: partitions)
    }

    /// Polls until `count` records arrived or `patience` passed without progress.
    static func consume(_ consumer: KafkaConsumer, count: Int, patience: Duration = .seconds(30)) async throws -> [KafkaConsumerMessage] {
        var messages: [KafkaConsumerMessage] = []
        var lastProgress = ContinuousClock.now
        while messages.count < count && ContinuousClock.now - lastProgress < patience {
            let batch = try await consumer.poll(timeout: .milliseconds(200))
            if !batch.messages.isEmpty { lastProgress = .now }
            messages += batch.messages
        }
        return messages
    }
}

/// A broker of the test's own (the same local broker program, memory storage) whose
/// clients all reach it through a ``TCPProxy``: it advertises the proxy's address.
final class PrivateBroker {
    let proxy: TCPProxy
    let process = Process()
    var bootstrapServers: String { "127.0.0.1:\(proxy.port)" }

    init() async throws {
        let port = ServiceProcess.freePort()
        proxy = try TCPProxy(targetPort: port)
        process.executableURL = ServiceProcess.root.appendingPathComponent(".tools/bin/tansu")
        process.arguments = [
            "broker", "--listener-url", "tcp://127.0.0.1:\(port)", "--advertised-listener-url", "tcp://127.0.0.1:\(proxy.port)",
            "--storage-engine", "memory://tansu/",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: bootstrapServers))
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if (try? await admin.listTopics()) != nil { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TCPProxy.ProxyError(message: "the private broker did not answer through the proxy within 20 s")
    }

    /// Stops the proxy and kills the broker (its memory storage goes with it).
    func stop() async throws {
        proxy.stop()
        kill(process.processIdentifier, SIGKILL)
        while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
    }
}
