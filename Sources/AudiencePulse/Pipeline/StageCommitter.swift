import Kafka

/// The output discipline both stages follow between two checkpoints: with
/// `exactly_once`, a transaction opened before the first record and committed together
/// with the consumed offsets; with `at_least_once`, a flush and a plain offset commit.
/// Used only by its stage's thread.
struct StageCommitter {
    let guarantee: PulseConfiguration.Guarantee
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    private(set) var inTransaction = false

    init(guarantee: PulseConfiguration.Guarantee, producer: KafkaProducer, consumer: KafkaConsumer) {
        self.guarantee = guarantee
        self.producer = producer
        self.consumer = consumer
    }

    /// Opens the transaction if one is needed and none is open. Call before producing.
    mutating func prepareToProduce() throws(KafkaError) {
        guard guarantee == .exactlyOnce, !inTransaction else { return }
        try producer.beginTransaction()
        inTransaction = true
    }

    /// Makes everything produced since the last commit durable together with `offsets`
    /// (the next offsets to read). Returns true if a transaction was committed.
    @discardableResult
    mutating func commit(_ offsets: [KafkaTopicPartition]) throws(KafkaError) -> Bool {
        if guarantee == .exactlyOnce {
            guard inTransaction else { return false }
            if !offsets.isEmpty { try producer.sendOffsetsToTransaction(offsets, groupMetadata: try consumer.groupMetadata()) }
            try producer.commitTransaction()
            inTransaction = false
            return true
        }
        try producer.flush(timeout: .seconds(60))
        if producer.unhandledDeliveryFailures > 0, let error = producer.lastUnhandledDeliveryError { throw error }
        try consumer.commit(offsets)
        return false
    }

    /// Drops the open transaction (after a failure, or when partitions were lost).
    mutating func abort() {
        if inTransaction { try? producer.abortTransaction() }
        inTransaction = false
    }

    /// Forgets the transaction state without aborting (the revocation checkpoint committed it).
    mutating func reset() { inTransaction = false }
}
