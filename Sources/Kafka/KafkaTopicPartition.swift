import CRdKafka

/// A partition of a topic, with an offset where one applies (a position, a committed
/// offset, a starting point for an assignment).
public struct KafkaTopicPartition: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    /// An absolute offset, or one of the logical offsets ``beginning``, ``end``,
    /// ``stored`` and ``invalid``.
    public var offset: Int64

    /// The first available offset of the partition.
    public static let beginning: Int64 = Int64(RD_KAFKA_OFFSET_BEGINNING)
    /// The next offset to be written to the partition (its end).
    public static let end: Int64 = Int64(RD_KAFKA_OFFSET_END)
    /// The group's committed offset (falling back to `auto.offset.reset`).
    public static let stored: Int64 = Int64(RD_KAFKA_OFFSET_STORED)
    /// No offset: unknown, or not committed.
    public static let invalid: Int64 = Int64(RD_KAFKA_OFFSET_INVALID)

    public init(topic: String, partition: Int32, offset: Int64 = KafkaTopicPartition.invalid) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }

    public var description: String { "\(topic)[\(partition)]@\(offset)" }

    static func array(from list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [KafkaTopicPartition] {
        let count = Int(list.pointee.cnt)
        guard count > 0, let elements = list.pointee.elems else { return [] }
        return (0..<count).map { index in
            let element = elements[index]
            return KafkaTopicPartition(topic: String(cString: element.topic), partition: element.partition, offset: element.offset)
        }
    }

    /// A new list the caller must destroy with `rd_kafka_topic_partition_list_destroy`.
    static func makeList(_ partitions: [KafkaTopicPartition]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        // Both calls abort the process on allocation failure instead of returning NULL.
        let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t> =
            rd_kafka_topic_partition_list_new(Int32(max(partitions.count, 1)))
        for partition in partitions {
            let element: UnsafeMutablePointer<rd_kafka_topic_partition_t> =
                rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition)
            element.pointee.offset = partition.offset
        }
        return list
    }

    /// The first per-partition error in a list that librdkafka filled in, if any.
    static func firstError(in list: UnsafePointer<rd_kafka_topic_partition_list_t>, context: String) -> KafkaError? {
        let count = Int(list.pointee.cnt)
        guard count > 0, let elements = list.pointee.elems else { return nil }
        for index in 0..<count where elements[index].err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let element = elements[index]
            return KafkaError(element.err, context: "\(context) \(String(cString: element.topic))[\(element.partition)]")
        }
        return nil
    }
}

/// A change of a consumer's partition assignment, delivered to the consumer's rebalance
/// handler on the thread that polls, before librdkafka applies it.
public enum KafkaRebalanceEvent: Sendable, Hashable {
    /// These partitions are being assigned. The handler may return the same partitions
    /// with chosen starting offsets (for example offsets restored from a checkpoint).
    case assigned([KafkaTopicPartition])
    /// These partitions are being taken away in an orderly rebalance: flush their state
    /// and commit now; afterwards commits for them fail.
    case revoked([KafkaTopicPartition])
    /// These partitions were lost (session timeout, fencing); another member may already
    /// own them, so commits for them would be rejected. Drop their state.
    case lost([KafkaTopicPartition])

    /// The partitions concerned.
    public var partitions: [KafkaTopicPartition] {
        switch self {
        case .assigned(let p), .revoked(let p), .lost(let p): return p
        }
    }
}
