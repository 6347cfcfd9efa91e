import Kafka

// With `exactly_once`, a stage's records wait in memory until its next commit and are
// produced as that commit begins, so its transaction is open only while it commits rather
// than from the first record after the last commit. A `read_committed` reader sees a
// partition only up to the first record of the oldest transaction still open on it (the
// last stable offset): two stage-1 workers each writing every partials partition from
// transactions held open all the time would hold each other's records back. Measured on
// the local broker with two workers reading a backlog: stage 2 saw nothing new for up to
// a second at a time, then everything at once (docs/benchmarks.md, "Stage 2 sees partials
// as they are committed").

extension StageCommitter {
    /// A record waiting for the next commit.
    struct HeldRecord {
        var topic: KafkaProducerTopic
        var partition: Int32?
        var key: [UInt8]?
        var value: [UInt8]
        var headers: [KafkaHeader]
        var timestamp: Int64?
    }

    /// Held records are produced at once, in a transaction opened for them, once this many
    /// key and value bytes wait: however much a stage produces between two commits, what
    /// it keeps for them stays bounded (the transaction then stays open until the commit,
    /// as without holding).
    static let heldBytesLimit = 8 << 20

    /// Whether records were sent since the last commit: held, or produced in the open
    /// transaction.
    var hasUncommittedOutputs: Bool { inTransaction || !held.isEmpty }

    /// Whether a commit is still owed: records sent since the last one, or updates and
    /// finals produced since then (``awaitedOutputs``, which also covers `at_least_once`).
    var owesCommit: Bool { hasUncommittedOutputs || awaitedOutputs }

    /// Sends a record with the stage's output discipline: with `exactly_once`, in the open
    /// transaction if there is one, else held until the next commit (or until
    /// ``heldBytesLimit`` bytes wait); with `at_least_once`, produced at once.
    mutating func send(to topic: KafkaProducerTopic, partition: Int32? = nil, key: [UInt8]?, value: [UInt8],
                       headers: [KafkaHeader] = [], timestamp: Int64? = nil) throws(KafkaError) {
        guard guarantee == .exactlyOnce, !inTransaction else {
            return try Self.produce(HeldRecord(topic: topic, partition: partition, key: key, value: value, headers: headers, timestamp: timestamp),
                                    producer: producer)
        }
        held.append(HeldRecord(topic: topic, partition: partition, key: key, value: value, headers: headers, timestamp: timestamp))
        heldBytes += value.count + (key?.count ?? 0)
        if heldBytes >= Self.heldBytesLimit { try releaseHeld() }
    }

    /// Opens the transaction and produces the held records in it.
    mutating func releaseHeld() throws(KafkaError) {
        guard !held.isEmpty else { return }
        try prepareToProduce()
        for record in held { try Self.produce(record, producer: producer) }
        dropHeld()
    }

    /// Forgets the held records (the transaction they were for is dropped).
    mutating func dropHeld() {
        held.removeAll(keepingCapacity: held.count <= 4_096)
        heldBytes = 0
    }

    private static func produce(_ record: HeldRecord, producer: KafkaProducer) throws(KafkaError) {
        try producer.produce(to: record.topic, partition: record.partition, key: record.key, value: record.value, headers: record.headers,
                             timestamp: record.timestamp, blockIfQueueFull: true)
    }
}
