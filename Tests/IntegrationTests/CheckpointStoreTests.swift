@testable import AudiencePulse
import Kafka
import Logging
import Testing

@Suite("Checkpoint chains in a changelog on the broker")
struct CheckpointStoreTests {
    static func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    /// A new compacted changelog topic of `partitions` partitions, and a producer.
    static func changelog(partitions: Int32) async throws -> (topic: String, producer: KafkaProducer) {
        let topic = TestBroker.uniqueName("changelog")
        try await TestBroker.createTopic(topic, partitions: partitions, configs: ["cleanup.policy": "compact"])
        return (topic, try TestBroker.producer())
    }

    /// A store on `topic`, as one process has it (a writer id of its own).
    static func store(_ topic: String) throws -> CheckpointStore {
        CheckpointStore(topic: topic, kafka: try TestBroker.common(), logger: Logger(label: "test"))
    }

    /// Checks what compaction of `partition` of `topic` keeps (the newest value per key,
    /// unless a tombstone), reading its `count` records: the manifest and the chunks of
    /// checkpoint `sequence` only.
    static func expectOnlyLive(_ topic: String, partition: Int32, count: Int, sequence: Int) async throws {
        let reader = try TestBroker.consumer(group: TestBroker.uniqueName("changelog-reader"))
        try reader.assign([KafkaTopicPartition(topic: topic, partition: partition, offset: KafkaTopicPartition.beginning)])
        let messages = try await TestBroker.consume(reader, count: count)
        #expect(messages.count == count)
        var newest: [String: [UInt8]] = [:]
        for message in messages { newest[String(decoding: message.key ?? [], as: UTF8.self)] = message.value }
        let live = newest.filter { !$0.value.isEmpty }.keys.sorted()
        let manifest = "m/\(partition)"
        #expect(live.count == 2 && live.contains(manifest) && live.allSatisfy { $0 == manifest || $0.hasPrefix("c/\(partition)/\(sequence).") },
                "live keys: \(live)")
    }

    @Test("a whole checkpoint and its increments are restored in order; the next whole one deletes them; only the process that wrote a chain extends it, and only while it is recent")
    func chain() async throws {
        let (topic, producer) = try await Self.changelog(partitions: 2)
        let store = try Self.store(topic)
        #expect(throws: KafkaError.self, "an increment needs the checkpoint it extends") {
            try store.write(partition: 1, sequence: 1, nextOffset: 1, state: [1], incremental: true, previous: nil, producer: producer)
        }
        // Two chunks, then one each.
        let whole = Self.bytes(CheckpointStore.chunkBytes + 1_000, seed: 1)
        let increments = [Self.bytes(2_000, seed: 2), Self.bytes(3_000, seed: 3)]
        var checkpoint = try store.write(partition: 1, sequence: 1, nextOffset: 10, state: whole, previous: nil, producer: producer)
        for (index, increment) in increments.enumerated() {
            #expect(store.canExtend(checkpoint, now: .now))
            checkpoint = try store.write(
                partition: 1, sequence: UInt64(index + 2), nextOffset: Int64(index + 2) * 10, state: increment, incremental: true,
                previous: checkpoint, producer: producer)
        }
        try await producer.flush()
        #expect(checkpoint.pieces.count == 3 && checkpoint.incrementBytes == 5_000)

        let restored = try store.restore(partitions: [0, 1], input: topic, consumer: nil)
        let chain = try #require(try restored.checkpoints[1]?.get())
        #expect(chain.nextOffset == 30 && chain.sequence == 3)
        #expect(chain.state == whole && Array(chain.increments) == increments)
        #expect(try #require(restored.checkpoints[0]).get() == nil, "partition 0 has no checkpoint")
        #expect(!store.canExtend(chain, now: .now), "a restored chain is extended by a whole checkpoint")
        let other = try Self.store(topic)
        #expect(!other.canExtend(checkpoint, now: .now), "another process's chain")
        #expect(!store.canExtend(checkpoint, now: .now + .seconds(46)), "past the session timeout (librdkafka's default: 45 s)")

        let next = Self.bytes(4_000, seed: 4)
        checkpoint = try store.write(partition: 1, sequence: 4, nextOffset: 40, state: next, previous: chain.withoutState, producer: producer)
        try await producer.flush()
        let again = try #require(try store.restore(partitions: [1], input: topic, consumer: nil).checkpoints[1]?.get())
        #expect(again.nextOffset == 40 && again.state == next && again.increments.isEmpty)

        // What compaction keeps: the newest value per key. Every chunk of the old chain is
        // deleted (a tombstone), the new one's are not.
        // 3 + 2 + 2 records of the chain, 2 of the whole checkpoint, 4 tombstones.
        try await Self.expectOnlyLive(topic, partition: 1, count: 13, sequence: 4)
    }

    @Test("a process that goes on adding increments after another took its partition over and deleted its chain: the restore falls back to the newest complete checkpoint, and the next whole one deletes the stray increment")
    func brokenChainFallsBack() async throws {
        let (topic, producer) = try await Self.changelog(partitions: 1)
        let (old, new) = (try Self.store(topic), try Self.store(topic))
        var chain = try old.write(partition: 0, sequence: 1, nextOffset: 10, state: Self.bytes(5_000, seed: 1), previous: nil, producer: producer)
        chain = try old.write(partition: 0, sequence: 2, nextOffset: 20, state: Self.bytes(100, seed: 2), incremental: true, previous: chain, producer: producer)
        // The new owner restores that chain and writes a whole checkpoint, deleting it …
        let taken = Self.bytes(6_000, seed: 3)
        _ = try new.write(partition: 0, sequence: 3, nextOffset: 30, state: taken, previous: chain, producer: producer)
        // … while the old one, not yet aware, adds an increment to the deleted chain.
        #expect(old.canExtend(chain, now: .now))
        _ = try old.write(partition: 0, sequence: 3, nextOffset: 35, state: Self.bytes(100, seed: 4), incremental: true, previous: chain, producer: producer)
        try await producer.flush()

        let restored = try #require(try new.restore(partitions: [0], input: topic, consumer: nil).checkpoints[0]?.get())
        #expect(restored.nextOffset == 30 && restored.state == taken && restored.increments.isEmpty)
        // The broken chain's increment is live but listed by no usable manifest: the next
        // whole checkpoint deletes it with the chain it replaces.
        let stray = new.strayChunks(of: 0)
        #expect(stray.count == 1 && stray.allSatisfy { $0.hasPrefix("c/0/3.") }, "\(stray)")
        let next = Self.bytes(7_000, seed: 5)
        _ = try new.write(partition: 0, sequence: 4, nextOffset: 40, state: next, previous: restored.withoutState, producer: producer)
        try await producer.flush()
        let again = try #require(try new.restore(partitions: [0], input: topic, consumer: nil).checkpoints[0]?.get())
        #expect(again.nextOffset == 40 && again.state == next && new.strayChunks(of: 0).isEmpty)

        // 2 + 2 records of the old chain, 2 + 2 tombstones of the takeover, 2 of the broken
        // increment, 2 + 2 tombstones (the takeover's chunk, the stray one) now.
        try await Self.expectOnlyLive(topic, partition: 0, count: 14, sequence: 4)
    }

    @Test("chunks whose manifest was never written are deleted by the next whole checkpoint, also where the partition has no checkpoint at all, but not the one that reuses a key: the same process's failed attempt at that sequence")
    func chunksWithoutManifest() async throws {
        let (topic, producer) = try await Self.changelog(partitions: 2)
        let store = try Self.store(topic)
        func chunk(partition: Int32, sequence: UInt64, writer: UInt64) async throws -> String {
            let key = CheckpointStore.chunkKey(partition: partition, sequence: sequence, writer: writer, index: 0)
            _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: partition, key: Array(key.utf8), value: [1] + Self.bytes(300, seed: 9)))
            return key
        }
        _ = try store.write(partition: 0, sequence: 1, nextOffset: 10, state: Self.bytes(1_000, seed: 1), previous: nil, producer: producer)
        // This process's attempt at checkpoint 2 stopped after its chunk (its cycle failed
        // and rewound), and another process stopped during its first checkpoint of
        // partition 1, before any manifest.
        let attempt = try await chunk(partition: 0, sequence: 2, writer: store.writer)
        let orphans = [try await chunk(partition: 0, sequence: 7, writer: 0xABC), try await chunk(partition: 1, sequence: 1, writer: 0xABC)]
        try await producer.flush()

        let restored = try store.restore(partitions: [0, 1], input: topic, consumer: nil).checkpoints
        let zero = try #require(try restored[0]?.get())
        #expect(zero.nextOffset == 10 && zero.pieces.map(\.sequence) == [1])
        #expect(try #require(restored[1]).get() == nil)
        #expect(store.strayChunks(of: 0) == [attempt, orphans[0]].sorted())
        #expect(store.strayChunks(of: 1) == [orphans[1]])

        let second = Self.bytes(2_000, seed: 2)
        _ = try store.write(partition: 0, sequence: 2, nextOffset: 20, state: second, previous: zero.withoutState, producer: producer)
        let one = Self.bytes(500, seed: 3)
        _ = try store.write(partition: 1, sequence: 1, nextOffset: 5, state: one, previous: nil, producer: producer)
        try await producer.flush()
        #expect(store.strayChunks(of: 0).isEmpty && store.strayChunks(of: 1).isEmpty)
        let again = try store.restore(partitions: [0, 1], input: topic, consumer: nil).checkpoints
        let newZero = try #require(try again[0]?.get())
        #expect(newZero.nextOffset == 20 && newZero.state == second)
        let newOne = try #require(try again[1]?.get())
        #expect(newOne.nextOffset == 5 && newOne.state == one)
        #expect(store.strayChunks(of: 0).isEmpty && store.strayChunks(of: 1).isEmpty)

        // Partition 0: checkpoint 1 (2), the attempt, the orphan, checkpoint 2 (2), the
        // tombstones of checkpoint 1's chunk and the orphan. Partition 1: the orphan,
        // checkpoint 1 (2), the orphan's tombstone.
        try await Self.expectOnlyLive(topic, partition: 0, count: 8, sequence: 2)
        try await Self.expectOnlyLive(topic, partition: 1, count: 4, sequence: 1)
    }
}
