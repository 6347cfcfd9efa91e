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
