import Kafka
import Synchronization
import Testing

@Suite("Failures surface as typed errors")
struct FailureTests {
    @Test("an unreachable broker makes delivery time out with _MSG_TIMED_OUT and reports transport errors")
    func unreachableBroker() async throws {
        let reported = Mutex<[KafkaError]>([])
        // Nothing listens on port 1 of the loopback interface.
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                common: KafkaConfiguration(bootstrapServers: "127.0.0.1:1"), deliveryTimeout: .seconds(2)),
            errorHandler: { error in reported.withLock { $0.append(error) } })
        let error = await #expect(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "nowhere", key: nil, value: "lost"))
        }
        #expect(error?.code == .messageTimedOut)
        #expect(error?.isRetriable == true)
        let codes = Set(reported.withLock { $0 }.map(\.code))
        #expect(codes.contains(.transport) || codes.contains(.allBrokersDown))
    }

    @Test("an invalid property fails construction with librdkafka's message naming it")
    func invalidProperty() throws {
        let common = KafkaConfiguration(bootstrapServers: try TestBroker.bootstrapServers(), properties: ["no.such.property": "1"])
        let unknown = #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common))
        }
        #expect(unknown?.code == .invalidArgument)
        #expect(unknown?.message.contains("no.such.property") == true)
        #expect(unknown?.message.contains("No such configuration property") == true)

        let badValue = KafkaConfiguration(bootstrapServers: try TestBroker.bootstrapServers(), properties: ["session.timeout.ms": "soon"])
        let invalid = #expect(throws: KafkaError.self) {
            _ = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: badValue, groupID: "g"))
        }
        #expect(invalid?.message.contains("session.timeout.ms") == true)
    }
}

@Suite("Admin against the broker")
struct AdminTests {
    @Test("a compacted topic is created, described with its partitions and configs, and deleted")
    func compactedTopicLifecycle() async throws {
        let admin = try KafkaAdmin(configuration: TestBroker.common())
        let name = TestBroker.uniqueName("compacted")
        try await admin.createTopics([
            KafkaTopicSpecification(name: name, partitions: 3, configs: ["cleanup.policy": "compact", "min.compaction.lag.ms": "60000"])
        ])
        try await admin.waitForTopic(name, partitions: 3)
        let description = try await admin.describeTopic(name)
        #expect(description.partitions == [0, 1, 2])
        #expect(description.configs["cleanup.policy"] == "compact")
        #expect(description.configs["min.compaction.lag.ms"] == "60000")

        let again = await #expect(throws: KafkaError.self) {
            try await admin.createTopics([KafkaTopicSpecification(name: name, partitions: 3)])
        }
        #expect(again?.code == .topicAlreadyExists)
        try await admin.createTopics([KafkaTopicSpecification(name: name, partitions: 3)], ifNotExists: true)

        try await admin.deleteTopics([name])
        #expect(try await !admin.listTopics().contains(name))
        try await admin.deleteTopics([name], ifExists: true)
    }

    @Test("statistics arrive as librdkafka's JSON at the configured interval")
    func statistics() async throws {
        let received = Mutex<[String]>([])
        var common = try TestBroker.common()
        common.statisticsInterval = .milliseconds(100)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(common: common),
            statisticsHandler: { json in received.withLock { $0.append(json) } })
        for _ in 0..<50 where received.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(100)) }
        let first = try #require(received.withLock { $0.first })
        #expect(first.contains("\"\(producer.name)\""))
        #expect(first.hasPrefix("{") && first.hasSuffix("}"))
        #expect(first.contains("\"brokers\""))
    }
}
