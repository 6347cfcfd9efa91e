import Kafka
import Synchronization
import Testing

/// Records what each consumer saw, from the polling threads.
private final class GroupLog: Sendable {
    struct Entry: Hashable { var consumer: String; var partition: Int32; var offset: Int64 }
    let entries = Mutex<[Entry]>([])
    let events = Mutex<[String: [KafkaRebalanceEvent]]>([:])

    func record(_ event: KafkaRebalanceEvent, by consumer: String) {
        events.withLock { $0[consumer, default: []].append(event) }
    }
}

/// Lets a rebalance handler reach the consumer it was created for.
private final class ConsumerBox: Sendable {
    let consumer = Mutex<KafkaConsumer?>(nil)
}

@Suite("Consumer groups against the broker")
struct ConsumerGroupTests {
    @Test("two consumers split four partitions, and a hand-over on close consumes nothing twice")
    func splitAndHandOver() async throws {
        let topic = TestBroker.uniqueName("group")
        let group = TestBroker.uniqueName("g")
        try await TestBroker.createTopic(topic, partitions: 4)
        let producer = try TestBroker.producer()
        func produce(_ range: Range<Int>) async throws {
            for index in range {
                try producer.produce(KafkaProducerMessage(topic: topic, key: "user-\(index)", value: "\(index)"), blockIfQueueFull: true)
            }
            try await producer.flush()
        }

        let log = GroupLog()
        func makeConsumer(_ name: String) throws -> KafkaConsumer {
            let box = ConsumerBox()
            let consumer = try TestBroker.consumer(group: group) { event in
                log.record(event, by: name)
                // Commit what was processed before the partitions move on.
                if case .revoked = event { try? box.consumer.withLock { $0 }?.commit() }
                return nil
            }
            box.consumer.withLock { $0 = consumer }
            return consumer
        }

        /// Polls until the group consumed `total` records, storing and committing as it goes.
        func drain(_ consumers: [(String, KafkaConsumer)], until total: Int) async throws {
            var idle = 0
            while log.entries.withLock({ $0.count }) < total && idle < 150 {
                var progressed = false
                for (name, consumer) in consumers {
                    let batch = try await consumer.poll(maxMessages: 200, timeout: .milliseconds(100))
                    guard !batch.messages.isEmpty else { continue }
                    progressed = true
                    log.entries.withLock { entries in
                        entries += batch.messages.map { .init(consumer: name, partition: $0.partition, offset: $0.offset) }
                    }
                    try consumer.storeOffsets(batch.messages.map { KafkaTopicPartition(topic: topic, partition: $0.partition, offset: $0.offset + 1) })
                    try? await consumer.commit()
                }
                idle = progressed ? 0 : idle + 1
            }
        }

        let first = try makeConsumer("a")
        let second = try makeConsumer("b")
        try first.subscribe(topics: [topic])
        try second.subscribe(topics: [topic])
        // Wait until both members hold partitions, then feed the first half.
        var assigned: (Int, Int) = (0, 0)
        for _ in 0..<150 where assigned.0 == 0 || assigned.1 == 0 || assigned.0 + assigned.1 != 4 {
            _ = try await first.poll(timeout: .milliseconds(100))
            _ = try await second.poll(timeout: .milliseconds(100))
            assigned = (try first.assignment().count, try second.assignment().count)
        }
        #expect(assigned.0 > 0 && assigned.1 > 0, "both members got partitions")
        #expect(assigned.0 + assigned.1 == 4)

        try await produce(0..<1_000)
        try await drain([("a", first), ("b", second)], until: 1_000)
        let split = Set(log.entries.withLock { $0 }.map(\.consumer))
        #expect(split == ["a", "b"], "both members consumed")

        // The first member leaves; the second takes over all four partitions.
        try await first.close()
        try await produce(1_000..<2_000)
        try await drain([("b", second)], until: 2_000)
        #expect(try second.assignment().count == 4)
        try await second.close()

        let entries = log.entries.withLock { $0 }
        let keys = entries.map { "\($0.partition):\($0.offset)" }
        #expect(entries.count == 2_000, "every record consumed")
        #expect(Set(keys).count == keys.count, "no record consumed twice across the hand-over")

        let events = log.events.withLock { $0 }
        #expect(events["a"]?.contains { if case .assigned = $0 { true } else { false } } == true)
        #expect(events["a"]?.contains { if case .revoked = $0 { true } else { false } } == true)
        #expect(events["b"]?.contains { if case .assigned(let p) = $0 { p.count == 4 } else { false } } == true)
        // Closing revokes the assignment through the handler, so state can be flushed.
        #expect(events["b"]?.last.map { if case .revoked(let p) = $0 { p.count == 4 } else { false } } == true)
    }

    @Test("committed offsets and watermarks give the lag of a group")
    func lag() async throws {
        let topic = TestBroker.uniqueName("lag")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        for index in 0..<50 { _ = try await producer.send(KafkaProducerMessage(topic: topic, key: nil, value: "\(index)")) }
        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("g"))
        try consumer.assign([KafkaTopicPartition(topic: topic, partition: 0, offset: KafkaTopicPartition.beginning)])
        let messages = try await TestBroker.consume(consumer, count: 50)
        #expect(messages.count == 50)
        try await consumer.commit([KafkaTopicPartition(topic: topic, partition: 0, offset: 20)])
        let committed = try await consumer.committed([KafkaTopicPartition(topic: topic, partition: 0)])
        #expect(committed.map(\.offset) == [20])
        let marks = try await consumer.watermarks(topic: topic, partition: 0)
        #expect(marks.low == 0)
        // The local broker reports the start of the last batch as high watermark; real
        // Kafka reports the log end (50). Either way the lag is what lies past 20.
        #expect(marks.high > 20 && marks.high <= 50)
        #expect(marks.lag(committed: 20) == marks.high - 20)
        try await consumer.close()
    }

    @Test("seek, pause and resume move and hold the fetch position")
    func seekPauseResume() async throws {
        let topic = TestBroker.uniqueName("seek")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        for index in 0..<10 { _ = try await producer.send(KafkaProducerMessage(topic: topic, key: nil, value: "\(index)")) }
        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("g"))
        let partition = KafkaTopicPartition(topic: topic, partition: 0, offset: KafkaTopicPartition.beginning)
        try consumer.assign([partition])
        #expect(try await TestBroker.consume(consumer, count: 10).count == 10)

        try consumer.seek([KafkaTopicPartition(topic: topic, partition: 0, offset: 7)])
        let afterSeek = try await TestBroker.consume(consumer, count: 3)
        #expect(afterSeek.map(\.offset) == [7, 8, 9])

        try consumer.pause([partition])
        _ = try await producer.send(KafkaProducerMessage(topic: topic, key: nil, value: "10"))
        let whilePaused = try await consumer.poll(timeout: .milliseconds(500))
        #expect(whilePaused.messages.isEmpty)
        try consumer.resume([partition])
        #expect(try await TestBroker.consume(consumer, count: 1).map(\.offset) == [10])
        try await consumer.close()
    }

    @Test("hold keeps a partition's records back while others flow; release delivers them all, in order, once")
    func holdAndRelease() async throws {
        let topic = TestBroker.uniqueName("hold")
        try await TestBroker.createTopic(topic, partitions: 2)
        let producer = try TestBroker.producer()
        for index in 0..<400 {
            try producer.produce(KafkaProducerMessage(topic: topic, partition: Int32(index % 2), value: Array("\(index)".utf8)), blockIfQueueFull: true)
        }
        try await producer.flush()
        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("g"))
        let partitions = (0..<2).map { KafkaTopicPartition(topic: topic, partition: Int32($0), offset: KafkaTopicPartition.beginning) }
        try consumer.assign(partitions)
        consumer.hold([partitions[0]])

        let first = try await TestBroker.consume(consumer, count: 200)
        #expect(first.count == 200)
        #expect(first.allSatisfy { $0.partition == 1 }, "nothing of the held partition")
        let whileHeld = try await consumer.poll(timeout: .milliseconds(1_000))
        #expect(whileHeld.messages.isEmpty)

        consumer.release([partitions[0]])
        let released = try await TestBroker.consume(consumer, count: 200)
        #expect(released.map(\.partition) == Array(repeating: 0, count: 200))
        #expect(released.map(\.offset) == Array(0..<200), "every record of the held partition, in order")
        #expect(try await consumer.poll(timeout: .milliseconds(500)).messages.isEmpty, "none twice")
        try await consumer.close()
    }
}
