import Kafka
import Testing

@Suite("Produce and consume against the broker")
struct ProduceConsumeTests {
    @Test("10,000 records with keys and headers make the round trip, each exactly once")
    func roundTrip() async throws {
        let topic = TestBroker.uniqueName("roundtrip")
        try await TestBroker.createTopic(topic, partitions: 3)
        let producer = try TestBroker.producer()
        let total = 10_000
        for index in 0..<total {
            try producer.produce(
                KafkaProducerMessage(
                    topic: topic, key: Array("user-\(index % 97)".utf8), value: Array("payload-\(index)".utf8),
                    headers: [KafkaHeader(name: "index", string: String(index)), KafkaHeader(name: "empty", value: nil)],
                    timestamp: 1_700_000_000_000 + Int64(index)),
                blockIfQueueFull: true)
        }
        try await producer.flush()
        #expect(producer.unhandledDeliveryFailures == 0)

        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("g"))
        try consumer.subscribe(topics: [topic])
        let messages = try await TestBroker.consume(consumer, count: total)
        try await consumer.close()

        #expect(messages.count == total)
        var seen = Set<Int>()
        for message in messages {
            let index = try #require(message.header("index").flatMap(Int.init))
            #expect(seen.insert(index).inserted, "record \(index) consumed twice")
            #expect(message.valueString == "payload-\(index)")
            #expect(message.keyString == "user-\(index % 97)")
            #expect(message.timestamp == 1_700_000_000_000 + Int64(index))
            #expect(message.headers.contains(KafkaHeader(name: "empty", value: nil)))
        }
        #expect(seen == Set(0..<total))
        // Same key, same partition: the partitioner is deterministic per key.
        let partitionsByKey = Dictionary(grouping: messages, by: { $0.keyString ?? "" }).mapValues { Set($0.map(\.partition)) }
        #expect(partitionsByKey.values.allSatisfy { $0.count == 1 })
    }

    @Test("a poll hands on the records that wait as soon as there are any; a filling poll waits for a full batch or its timeout")
    func pollReturnsWhatWaits() async throws {
        let topic = TestBroker.uniqueName("prompt")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        for index in 0..<3 { try producer.produce(KafkaProducerMessage(topic: topic, key: "k", value: "first-\(index)"), blockIfQueueFull: true) }
        try await producer.flush()

        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("g"))
        try consumer.assign([KafkaTopicPartition(topic: topic, partition: 0, offset: KafkaTopicPartition.beginning)])
        // Three records and room for a thousand: librdkafka's own batch call would hold
        // them until the timeout; each poll here returns before it, with what it holds.
        let clock = ContinuousClock()
        let timeout = Duration.seconds(20)
        var values: [String] = []
        while values.count < 3 {
            let started = clock.now
            let batch = try await consumer.poll(maxMessages: 1_000, timeout: timeout)
            #expect(!batch.messages.isEmpty, "a poll returned nothing although three records were produced")
            #expect(clock.now - started < timeout, "a poll held \(batch.messages.count) records until its timeout")
            values += batch.messages.map(\.valueString)
            if batch.messages.isEmpty { break }
        }
        #expect(values == ["first-0", "first-1", "first-2"])

        // Filling a batch: two records wait, the poll still waits its whole timeout for more.
        for index in 0..<2 { try producer.produce(KafkaProducerMessage(topic: topic, key: "k", value: "second-\(index)"), blockIfQueueFull: true) }
        try await producer.flush()
        let fillTimeout = Duration.seconds(2)
        var filled: [String] = []
        while filled.count < 2 {
            let started = clock.now
            let batch = try await consumer.poll(maxMessages: 1_000, timeout: fillTimeout, fillingBatch: true)
            #expect(clock.now - started >= fillTimeout - .milliseconds(100), "a filling poll returned \(batch.messages.count) records before its timeout")
            filled += batch.messages.map(\.valueString)
            if batch.messages.isEmpty { break }
        }
        #expect(filled == ["second-0", "second-1"])
        try await consumer.close()
    }

    @Test("an awaited send reports the partition and offset the broker assigned")
    func awaitedSend() async throws {
        let topic = TestBroker.uniqueName("send")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        let first = try await producer.send(KafkaProducerMessage(topic: topic, key: "k", value: "one"))
        let second = try await producer.send(KafkaProducerMessage(topic: topic, key: "k", value: "two"))
        #expect(first.topic == topic)
        #expect(first.partition == 0)
        #expect(second.offset == first.offset + 1)
    }
}
