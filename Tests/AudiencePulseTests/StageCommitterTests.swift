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
            StageCommitter.isDue(lastCommit: last, now: last.advanced(by: elapsed), interval: interval, awaitedOutputs: awaited)
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
}

@Suite("When an output is not delivered")
struct StageCommitterDeliveryTests {
    @Test("the next checkpoint fails, once: after the rewind that follows, checkpoints go through again")
    func failedDeliveryFailsOneCheckpoint() throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        try cluster.createTopic("outputs", partitions: 1)
        let common = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: common, enableIdempotence: false))
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: common, groupID: "stage"))
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
