@testable import Kafka
import Synchronization
import Testing

/// Client behaviour against librdkafka's in-process mock cluster: no network, and
/// protocol errors on demand.
@Suite("Kafka module against the mock cluster")
struct MockClusterTests {
    let cluster: KafkaMockCluster
    let common: KafkaConfiguration

    init() throws {
        cluster = try KafkaMockCluster(brokers: 1)
        common = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
    }

    @Test("send reports consecutive offsets and the record reads back with key and headers")
    func roundTrip() async throws {
        try cluster.createTopic("events", partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common))
        let first = try await producer.send(
            KafkaProducerMessage(topic: "events", key: "u1", value: "a", headers: [KafkaHeader(name: "h", string: "1")]))
        let second = try await producer.send(KafkaProducerMessage(topic: "events", key: "u1", value: "b"))
        #expect(first.partition == 0)
        #expect(second.offset == first.offset + 1)

        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: common, groupID: "g"))
        try consumer.assign([KafkaTopicPartition(topic: "events", partition: 0, offset: KafkaTopicPartition.beginning)])
        var messages: [KafkaConsumerMessage] = []
        for _ in 0..<50 where messages.count < 2 { messages += try await consumer.poll(timeout: .milliseconds(100)).messages }
        #expect(messages.map(\.valueString) == ["a", "b"])
        #expect(messages.first?.header("h") == "1")
        #expect(messages.first?.keyString == "u1")
        try await consumer.close()
    }

    /// librdkafka's destroy can wait up to 1 s for the client's main thread to wake up; a
    /// service that creates topics with a short-lived admin client must not wait that long
    /// to start (it did, in one start of five).
    @Test("an admin client's handle is destroyed on a thread of its own once released")
    func adminDestroysInBackground() throws {
        let admin = try KafkaAdmin(configuration: common)
        let inBackground = admin.client.destroysInBackground.load(ordering: .acquiring)
        #expect(inBackground)
    }

    @Test("an unknown topic is a typed error for admin lookups and for subscribed consumers")
    func unknownTopic() async throws {
        cluster.setTopicError("missing", .unknownTopicOrPartition)
        let admin = try KafkaAdmin(configuration: common)
        let lookup = #expect(throws: KafkaError.self) { try admin.partitionIDs(of: "missing") }
        #expect(lookup?.code == .unknownTopicOrPartition)

        var consumerCommon = common
        consumerCommon.properties = ["allow.auto.create.topics": "false"]
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: consumerCommon, groupID: "g-missing"))
        try consumer.subscribe(topics: ["missing"])
        var errors: [KafkaError] = []
        for _ in 0..<50 where errors.isEmpty { errors += try await consumer.poll(timeout: .milliseconds(100)).errors }
        #expect(errors.first?.code == .unknownTopicOrPartition)
        #expect(errors.first?.message.contains("missing") == true)
        try await consumer.close()
    }

    @Test("a non-retriable produce error fails that delivery with the broker's code")
    func injectedProduceError() async throws {
        try cluster.createTopic("strict", partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, enableIdempotence: false))
        _ = try await producer.send(KafkaProducerMessage(topic: "strict", key: nil, value: "warm-up"))
        cluster.pushRequestErrors(apiKey: 0, [.messageSizeTooLarge])
        let error = await #expect(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: "strict", key: nil, value: "rejected"))
        }
        #expect(error?.code == .messageSizeTooLarge)
        #expect(error?.isRetriable == false)
        // The next record goes through.
        _ = try await producer.send(KafkaProducerMessage(topic: "strict", key: nil, value: "accepted"))
    }

    @Test("a failed delivery nobody waits for is counted with its topic and code; delivered ones are not")
    func unhandledDeliveryFailure() async throws {
        let topic = "fire-and-forget-deliveries"  // longer than a small string
        try cluster.createTopic(topic, partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, enableIdempotence: false))
        try producer.produce(KafkaProducerMessage(topic: topic, key: nil, value: "delivered"))
        try await producer.flush(timeout: .seconds(10))
        #expect(producer.unhandledDeliveryFailures == 0)
        #expect(producer.lastUnhandledDeliveryError == nil)

        cluster.pushRequestErrors(apiKey: 0, [.messageSizeTooLarge])
        try producer.produce(KafkaProducerMessage(topic: topic, key: nil, value: "rejected"))
        try await producer.flush(timeout: .seconds(10))
        #expect(producer.unhandledDeliveryFailures == 1)
        #expect(producer.lastUnhandledDeliveryError?.code == .messageSizeTooLarge)
        #expect(producer.lastUnhandledDeliveryError?.message.contains(topic) == true)

        try producer.produce(KafkaProducerMessage(topic: topic, key: nil, value: "delivered again"))
        try await producer.flush(timeout: .seconds(10))
        #expect(producer.unhandledDeliveryFailures == 1)
    }

    @Test("an abortable transaction error says so, and aborting recovers the producer")
    func abortableTransactionError() async throws {
        try cluster.createTopic("txn", partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, transactionalID: "txn-abortable"))
        try await producer.initTransactions()
        // AddPartitionsToTxn (API key 24) refused: the transaction cannot commit.
        cluster.pushRequestErrors(apiKey: 24, [.topicAuthorizationFailed])
        try producer.beginTransaction()
        try producer.produce(KafkaProducerMessage(topic: "txn", key: nil, value: "doomed"))
        let error = await #expect(throws: KafkaError.self) { try await producer.commitTransaction() }
        #expect(error?.transactionRequiresAbort == true)
        #expect(error?.isFatal == false)
        try await producer.abortTransaction()

        try producer.beginTransaction()
        try producer.produce(KafkaProducerMessage(topic: "txn", key: nil, value: "fine"))
        try await producer.commitTransaction()
    }

    @Test("a fenced transactional producer gets a fatal error")
    func fencedProducer() async throws {
        try cluster.createTopic("fenced", partitions: 1)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, transactionalID: "txn-fenced"))
        try await producer.initTransactions()
        try producer.beginTransaction()
        try producer.produce(KafkaProducerMessage(topic: "fenced", key: nil, value: "x"))
        try await producer.flush()
        // EndTxn (API key 26) answered with a stale epoch: a newer instance took over.
        cluster.pushRequestErrors(apiKey: 26, [.invalidProducerEpoch])
        #expect(producer.fatalError == nil, "usable before the refusal")
        let error = await #expect(throws: KafkaError.self) { try await producer.commitTransaction() }
        #expect(error?.isFatal == true)
        #expect(producer.fatalError?.isFatal == true, "and says why afterwards: \(String(describing: producer.fatalError))")
    }
}

@Suite("Kafka module values")
struct KafkaValueTests {
    @Test("typed settings come first and verbatim properties override them")
    func propertyOrder() throws {
        let configuration = KafkaProducerConfiguration(
            common: KafkaConfiguration(bootstrapServers: "b:9092", clientID: "pulse", properties: ["linger.ms": "50"]))
        // Creating the producer validates every property with librdkafka.
        let producer = try KafkaProducer(configuration: configuration)
        #expect(producer.configuration.enableIdempotence)
        #expect(producer.name.hasPrefix("pulse#producer"))
        // A verbatim client.id wins over the typed one.
        let overridden = try KafkaProducer(configuration: KafkaProducerConfiguration(
            common: KafkaConfiguration(bootstrapServers: "b:9092", clientID: "pulse", properties: ["client.id": "verbatim"])))
        #expect(overridden.name.hasPrefix("verbatim#producer"))
    }

    @Test("lag is the distance from the committed offset to the end of the log")
    func lag() {
        let marks = KafkaWatermarks(low: 10, high: 110)
        #expect(marks.lag(committed: 60) == 50)
        #expect(marks.lag(committed: 200) == 0)
        #expect(marks.lag(committed: KafkaTopicPartition.invalid) == 100)
    }

    @Test("the loaded librdkafka passes the version guard")
    func version() throws {
        try KafkaLibrary.checkVersion()
        #expect(KafkaLibrary.version.split(separator: ".").count >= 3)
    }

    @Test("an error describes its code name, message and flags")
    func errorDescription() {
        let error = KafkaError(code: .timedOut, message: "flush: 3 records outstanding", isRetriable: true)
        #expect(error.name == "_TIMED_OUT")
        #expect(error.description == "Kafka error _TIMED_OUT (-185): flush: 3 records outstanding [retriable]")
    }
}
