import CRdKafka

/// A Kafka record header. Header names may repeat; values may be absent (null).
public struct KafkaHeader: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// A header whose value is the UTF-8 bytes of `value`.
    public init(name: String, string value: String) {
        self.init(name: name, value: Array(value.utf8))
    }

    /// The value decoded as UTF-8, if present.
    public var stringValue: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// A record to produce.
public struct KafkaProducerMessage: Sendable, Hashable {
    public var topic: String
    /// The target partition; `nil` lets the partitioner choose from the key
    /// (librdkafka's default `consistent_random`, murmur2 with `partitioner=murmur2_random`).
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// Record timestamp in milliseconds since the Unix epoch; `nil` means "now".
    public var timestamp: Int64?

    public init(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8],
        headers: [KafkaHeader] = [],
        timestamp: Int64? = nil
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    /// A record whose key and value are the UTF-8 bytes of the given strings.
    public init(topic: String, key: String?, value: String, headers: [KafkaHeader] = []) {
        self.init(topic: topic, key: key.map { Array($0.utf8) }, value: Array(value.utf8), headers: headers)
    }
}

/// Where a produced record was written.
public struct KafkaDeliveryReport: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    /// The record's timestamp (ms since the epoch) as stored, if the broker reported it.
    public var timestamp: Int64?
}

/// A consumed record, copied out of librdkafka's buffers.
public struct KafkaConsumerMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// Milliseconds since the epoch (create or log-append time), if available.
    public var timestamp: Int64?

    /// The first header named `name`, decoded as UTF-8.
    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.stringValue
    }

    /// The key decoded as UTF-8.
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    /// The value decoded as UTF-8.
    public var valueString: String { String(decoding: value, as: UTF8.self) }
}

/// A consumed record read in place from librdkafka's buffer, without copying.
///
/// Valid only inside the `poll` closure that produced it: the memory behind `key`,
/// `value` and headers is released when that closure returns. Call ``copy()`` to keep it.
public struct KafkaMessageView {
    let message: UnsafeMutablePointer<rd_kafka_message_t>

    public var partition: Int32 { message.pointee.partition }
    public var offset: Int64 { message.pointee.offset }

    /// The topic name (allocates a `String`; compare partitions where you can).
    public var topic: String { String(cString: rd_kafka_topic_name(message.pointee.rkt)) }

    /// The payload bytes (empty for a null value).
    public var value: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: message.pointee.payload, count: message.pointee.len)
    }

    /// The key bytes, or `nil` for a null key.
    public var key: UnsafeRawBufferPointer? {
        guard let key = message.pointee.key else { return nil }
        return UnsafeRawBufferPointer(start: key, count: message.pointee.key_len)
    }

    /// Milliseconds since the epoch, if the record carries a timestamp.
    public var timestamp: Int64? {
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let value = rd_kafka_message_timestamp(message, &type)
        return type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : value
    }

    /// The value of the last header named `name`, in place; `nil` if absent or null.
    public func header(_ name: String) -> UnsafeRawBufferPointer? {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return nil }
        var value: UnsafeRawPointer?
        var size = 0
        guard rd_kafka_header_get_last(headers, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR, let value else {
            return nil
        }
        return UnsafeRawBufferPointer(start: value, count: size)
    }

    /// All headers, copied.
    public var headers: [KafkaHeader] {
        var headers: OpaquePointer?
        guard rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers else { return [] }
        var result: [KafkaHeader] = []
        var index = 0
        var name: UnsafePointer<CChar>?
        var value: UnsafeRawPointer?
        var size = 0
        while rd_kafka_header_get_all(headers, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
            result.append(KafkaHeader(name: name.map { String(cString: $0) } ?? "", value: bytes))
            index += 1
        }
        return result
    }

    /// An owned copy that outlives the poll.
    public func copy() -> KafkaConsumerMessage {
        KafkaConsumerMessage(
            topic: topic, partition: partition, offset: offset,
            key: key.map { Array($0) }, value: Array(value), headers: headers, timestamp: timestamp)
    }
}

/// The records returned by one poll, read in place. Iterate it inside the poll closure.
public struct KafkaMessageBatch: RandomAccessCollection {
    let messages: UnsafeBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>>

    /// Partitions whose end was reached during this poll (with `enable.partition.eof`);
    /// the offset is the partition's end offset.
    public let partitionEOFs: [KafkaTopicPartition]
    /// Consumer errors reported during this poll (unknown topic, authorization, ...).
    /// Transient network errors are retried by librdkafka and not reported here.
    public let errors: [KafkaError]

    public var startIndex: Int { messages.startIndex }
    public var endIndex: Int { messages.endIndex }
    public subscript(position: Int) -> KafkaMessageView { KafkaMessageView(message: messages[position]) }
}
