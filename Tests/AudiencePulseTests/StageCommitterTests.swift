import Kafka
import Testing

@testable import AudiencePulse

@Suite("When a stage commits")
struct StageCommitterTests {
    @Test("without awaited outputs at the commit interval; with updates or finals waiting after the prompt spacing")
    func commitIsDue() {
        let last = ContinuousClock.now
        let spacing = StageCommitter.promptCommitSpacing
        let interval: Int64 = 250
        func due(after elapsed: Duration, awaited: Bool) -> Bool {
            StageCommitter.isDue(lastCommit: last, now: last.advanced(by: elapsed), interval: interval, awaitedOutputs: awaited, promptSpacing: spacing)
        }
        #expect(spacing < .milliseconds(interval))
        // Only offsets to commit: the interval decides.
        #expect(!due(after: spacing, awaited: false))
        #expect(!due(after: .milliseconds(interval - 1), awaited: false))
        #expect(due(after: .milliseconds(interval), awaited: false))
        // Updates or finals waiting: committed once the last commit is the spacing old.
        #expect(!due(after: .zero, awaited: true))
        #expect(!due(after: spacing - .milliseconds(1), awaited: true))
        #expect(due(after: spacing, awaited: true))
        #expect(due(after: .milliseconds(interval), awaited: true))
    }

    @Test("prompt commits wait nine times as long as the last commit took, up to the commit interval")
    func promptSpacingFollowsCommitTime() {
        let last = ContinuousClock.now
        let interval: Int64 = 250
        // Quick commits (a stream the stage keeps up with): the prompt spacing.
        #expect(StageCommitter.promptSpacing(after: .zero) == StageCommitter.promptCommitSpacing)
        #expect(StageCommitter.promptSpacing(after: .milliseconds(11)) == StageCommitter.promptCommitSpacing)
        // Slow commits (a backlog on a loaded machine): at most a tenth of the time in commits.
        let spacing = StageCommitter.promptSpacing(after: .milliseconds(20))
        #expect(spacing == .milliseconds(180))
        func due(after elapsed: Duration) -> Bool {
            StageCommitter.isDue(lastCommit: last, now: last.advanced(by: elapsed), interval: interval, awaitedOutputs: true, promptSpacing: spacing)
        }
        #expect(!due(after: .milliseconds(179)))
        #expect(due(after: .milliseconds(180)))
        // However long the commits, the commit interval still decides.
        let longest = StageCommitter.promptSpacing(after: .milliseconds(40))
        #expect(StageCommitter.isDue(lastCommit: last, now: last.advanced(by: .milliseconds(interval)), interval: interval, awaitedOutputs: true, promptSpacing: longest))
    }

    @Test("after a slow commit, outputs wait longer for the next one; at a bounded run's end they do not wait")
    func slowCommitSpacesPromptCommits() throws {
        let (cluster, producer, consumer) = try mockStage(topics: ["input": 1])
        let start = ContinuousClock.now
        var committer = StageCommitter(guarantee: .atLeastOnce, producer: producer, consumer: consumer, now: start)
        let partitions: [Int32: StageCommitterCheckpointTests.Partition] = [
            0: .init(lastOffset: 9, checkpoint: CheckpointStore.Checkpoint(nextOffset: 0, pieces: []), changedSinceCheckpoint: false),
        ]
        func due(after elapsed: Duration) -> StageCommitter.Step? {
            committer.due(at: start.advanced(by: elapsed), checkpointInterval: 60_000, commitInterval: 250)
        }
        // Before any commit: outputs waiting are committed after the prompt spacing. (How
        // long a quick commit takes depends on the machine's load, so nothing here expects
        // one to stay quick.)
        committer.awaitedOutputs = true
        #expect(due(after: .milliseconds(150)) == .commit)

        // Every broker answer 30 ms late: the commit takes at least that long, and the
        // next prompt one waits at least 270 ms — here, the commit interval.
        cluster.setBroker(-1, roundTripTime: .milliseconds(30))
        #expect(try committer.commitProgress(partitions, topic: "input", now: start) == false)
        #expect(committer.lastCommitTime >= .milliseconds(30))
        committer.awaitedOutputs = true
        #expect(due(after: .milliseconds(150)) == nil)
        #expect(due(after: .milliseconds(250)) == .commit)
        #expect(try consumer.committed([KafkaTopicPartition(topic: "input", partition: 0)]).first?.offset == 10)
        // At a bounded run's end nothing waits for the spacing; with nothing to commit, nothing is due.
        #expect(committer.due(at: start.advanced(by: .milliseconds(1)), checkpointInterval: 60_000, commitInterval: 250, atEndOfInput: true) == .commit)
        #expect(try committer.commitProgress(partitions, topic: "input", now: start) == false)
        #expect(committer.due(at: start.advanced(by: .milliseconds(1)), checkpointInterval: 60_000, commitInterval: 250, atEndOfInput: true) == nil)
    }
}

/// A mock cluster with `topics` (name: partitions), and a stage's producer and group consumer on it.
func mockStage(topics: [String: Int32]) throws -> (KafkaMockCluster, KafkaProducer, KafkaConsumer) {
    let cluster = try KafkaMockCluster(brokers: 1)
    for (topic, partitions) in topics.sorted(by: { $0.key < $1.key }) { try cluster.createTopic(topic, partitions: partitions) }
    let common = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
    let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, enableIdempotence: false))
    let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: common, groupID: "stage"))
    return (cluster, producer, consumer)
}

@Suite("When an output is not delivered")
struct StageCommitterDeliveryTests {
    @Test("the next checkpoint fails, once: after the rewind that follows, checkpoints go through again")
    func failedDeliveryFailsOneCheckpoint() throws {
        let (cluster, producer, consumer) = try mockStage(topics: ["outputs": 1])
        var committer = StageCommitter(guarantee: .atLeastOnce, producer: producer, consumer: consumer)
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "delivered"))
        try committer.deliverOutputs()

        cluster.pushRequestErrors(apiKey: 0, [.messageSizeTooLarge])
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "lost"))
        let error = #expect(throws: KafkaError.self) { try committer.deliverOutputs() }
        #expect(error?.code == .messageSizeTooLarge)

        // The stage rewound to its checkpoint and produces those outputs again.
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "produced again"))
        try committer.deliverOutputs()
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "next"))
        try committer.deliverOutputs()

        // A failure the stage already rewound for (a cycle that failed otherwise) is forgotten.
        cluster.pushRequestErrors(apiKey: 0, [.messageSizeTooLarge])
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "lost in a failed cycle"))
        try producer.flush(timeout: .seconds(10))
        #expect(producer.unhandledDeliveryFailures == 2)
        committer.abort()
        try committer.deliverOutputs()
    }
}

@Suite("A stage's checkpoint")
struct StageCommitterCheckpointTests {
    struct Partition: StagePartition {
        var lastOffset: Int64
        var checkpoint: CheckpointStore.Checkpoint?
        var changedSinceCheckpoint: Bool
    }

    @Test("is due at the checkpoint interval; writes only the partitions that changed since their checkpoint (none when nothing did), commits after them, and writes none when outputs were lost")
    func checkpointsChangedPartitions() throws {
        let (cluster, producer, consumer) = try mockStage(topics: ["input": 3, "outputs": 1])
        let start = ContinuousClock.now
        var committer = StageCommitter(guarantee: .atLeastOnce, producer: producer, consumer: consumer, now: start)
        func due(after elapsed: Duration) -> StageCommitter.Step? {
            committer.due(at: start.advanced(by: elapsed), checkpointInterval: 1_000, commitInterval: 250)
        }
        #expect(due(after: .milliseconds(100)) == nil)
        #expect(due(after: .milliseconds(250)) == .commit)
        committer.awaitedOutputs = true
        #expect(due(after: .milliseconds(100)) == .commit)
        #expect(due(after: .milliseconds(1_000)) == .checkpoint)

        var partitions: [Int32: Partition] = [
            0: Partition(lastOffset: 41, changedSinceCheckpoint: true),
            1: Partition(lastOffset: 9, changedSinceCheckpoint: false),
            2: Partition(lastOffset: -1, changedSinceCheckpoint: true),
        ]
        func committed() throws -> [Int64] {
            try consumer.committed((0..<3).map { KafkaTopicPartition(topic: "input", partition: $0) }).sorted { $0.partition < $1.partition }.map(\.offset)
        }
        var written: [Int32] = []
        func checkpoint(after elapsed: Duration) throws -> (checkpointed: Int, committed: Bool) {
            try committer.checkpoint(&partitions, topic: "input", now: start.advanced(by: elapsed)) { partition, _ in written.append(partition) }
        }
        let first = try checkpoint(after: .seconds(1))
        #expect(written == [0])
        #expect(first.checkpointed == 1 && !first.committed)  // no transaction without exactly_once
        #expect(partitions.values.map(\.changedSinceCheckpoint).filter { $0 }.count == 1)  // partition 2 processed nothing
        #expect(try committed()[0] == 42)
        #expect(!committer.awaitedOutputs)
        #expect(due(after: .milliseconds(1_100)) == nil)
        #expect(due(after: .milliseconds(2_000)) == .checkpoint)

        // Nothing new anywhere (a stage restored and stopped without input): no
        // checkpoint written, no offset moved.
        written = []
        #expect(try checkpoint(after: .seconds(2)).checkpointed == 0)
        #expect(written.isEmpty)
        #expect(try Array(committed()[0...1]) == [42, KafkaTopicPartition.invalid])

        partitions[1]?.changedSinceCheckpoint = true
        #expect(try checkpoint(after: .seconds(3)).checkpointed == 1)
        #expect(written == [1])
        #expect(try Array(committed()[0...1]) == [42, 10])

        // An output is lost: no checkpoint may follow it (a restore from it would never
        // produce that output again), and no offset is committed.
        cluster.pushRequestErrors(apiKey: 0, [.messageSizeTooLarge])
        try producer.produce(KafkaProducerMessage(topic: "outputs", key: nil, value: "lost"))
        partitions[0]?.lastOffset = 99
        partitions[0]?.changedSinceCheckpoint = true
        written = []
        #expect(throws: KafkaError.self) { try checkpoint(after: .seconds(4)) }
        #expect(written.isEmpty)
        #expect(partitions[0]?.changedSinceCheckpoint == true)
        #expect(try Array(committed()[0...1]) == [42, 10])
    }
}

@Suite("A stage's records with exactly-once")
struct StageCommitterOutboxTests {
    @Test("wait for the commit, which produces them in a transaction opened then; an abort drops them; past the held-bytes limit they go out in the open transaction")
    func recordsWaitForTheCommit() throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("outputs", partitions: 1)
        let common = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, transactionalID: "stage-outbox"))
        try producer.initTransactions()
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: common, groupID: "stage"))
        var committer = StageCommitter(guarantee: .exactlyOnce, producer: producer, consumer: consumer)
        let none: [Int32: StageCommitterCheckpointTests.Partition] = [:]
        let topic = try producer.topic("outputs")
        func end() throws -> Int64 {
            try producer.flush(timeout: .seconds(10))
            return try consumer.watermarks(topic: "outputs", partition: 0, timeout: .seconds(10)).high
        }

        for index in 0..<3 { try committer.send(to: topic, partition: 0, key: [UInt8(index)], value: Array("record \(index)".utf8)) }
        #expect(committer.hasUncommittedOutputs && !committer.inTransaction)
        #expect(try end() == 0)  // nothing on the broker, no transaction open
        #expect(try committer.commitProgress(none, topic: "input", now: .now))
        #expect(!committer.hasUncommittedOutputs)
        let afterCommit = try end()
        #expect(afterCommit >= 3)  // the three records (and a commit marker, on a broker that writes one)

        // Dropped with the transaction they were for (the stage rewinds and produces them again).
        try committer.send(to: topic, partition: 0, key: nil, value: Array("dropped".utf8))
        committer.abort()
        #expect(!committer.hasUncommittedOutputs)
        #expect(try committer.commitProgress(none, topic: "input", now: .now) == false)
        #expect(try end() == afterCommit)

        // Past the limit the transaction opens and they are produced; the rest join it.
        let value = [UInt8](repeating: 7, count: 100_000)
        let count = StageCommitter.heldBytesLimit / value.count + 2
        for _ in 0..<count { try committer.send(to: topic, partition: 0, key: nil, value: value) }
        #expect(committer.inTransaction && committer.held.isEmpty)
        #expect(try end() == afterCommit + Int64(count))
        #expect(try committer.commitProgress(none, topic: "input", now: .now))
        #expect(!committer.hasUncommittedOutputs)
    }

    @Test("with at-least-once go out at once")
    func atLeastOnceProducesAtOnce() throws {
        let (cluster, producer, consumer) = try mockStage(topics: ["outputs": 1])
        var committer = StageCommitter(guarantee: .atLeastOnce, producer: producer, consumer: consumer)
        try committer.send(to: producer.topic("outputs"), partition: 0, key: nil, value: Array("now".utf8))
        #expect(!committer.hasUncommittedOutputs)
        try producer.flush(timeout: .seconds(10))
        #expect(try consumer.watermarks(topic: "outputs", partition: 0, timeout: .seconds(10)).high == 1)
        withExtendedLifetime(cluster) {}
    }
}
