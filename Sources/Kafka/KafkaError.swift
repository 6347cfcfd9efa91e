import CRdKafka

/// An error reported by librdkafka or by the `Kafka` module itself.
///
/// Carries librdkafka's error code, its symbolic name (for example `_MSG_TIMED_OUT` or
/// `UNKNOWN_TOPIC_OR_PART`), a human-readable message, and the classification flags
/// that transactional producers need to decide what to do next.
public struct KafkaError: Error, Sendable, Hashable, CustomStringConvertible {
    /// librdkafka's `rd_kafka_resp_err_t` value. Negative values are local (client-side)
    /// errors, positive values come from the broker.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// librdkafka's symbolic name for this code, e.g. `_TRANSPORT`.
        public var name: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue))) }
        public var description: String { name }

        public static let noError = Code(rawValue: RD_KAFKA_RESP_ERR_NO_ERROR.rawValue)
        /// Local: message timed out before delivery (`message.timeout.ms`).
        public static let messageTimedOut = Code(rawValue: RD_KAFKA_RESP_ERR__MSG_TIMED_OUT.rawValue)
        /// Local: the producer queue is full (`queue.buffering.max.messages`).
        public static let queueFull = Code(rawValue: RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue)
        /// Local: an operation did not complete within its timeout.
        public static let timedOut = Code(rawValue: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue)
        /// Local: all brokers are down or unreachable.
        public static let allBrokersDown = Code(rawValue: RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN.rawValue)
        /// Local: transport failure (connection refused, reset, ...).
        public static let transport = Code(rawValue: RD_KAFKA_RESP_ERR__TRANSPORT.rawValue)
        /// Local: unknown topic.
        public static let unknownTopic = Code(rawValue: RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC.rawValue)
        /// Broker: unknown topic or partition.
        public static let unknownTopicOrPartition = Code(rawValue: RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART.rawValue)
        /// Broker: the record is larger than the broker or topic accepts.
        public static let messageSizeTooLarge = Code(rawValue: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue)
        /// Broker: not authorized to access the topic.
        public static let topicAuthorizationFailed = Code(rawValue: RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED.rawValue)
        /// Broker: the producer's epoch is stale; a newer instance took over.
        public static let invalidProducerEpoch = Code(rawValue: RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH.rawValue)
        /// Broker: topic already exists.
        public static let topicAlreadyExists = Code(rawValue: RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS.rawValue)
        /// Local: invalid argument or configuration.
        public static let invalidArgument = Code(rawValue: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue)
        /// Local: the instance has a fatal error and must be recreated.
        public static let fatal = Code(rawValue: RD_KAFKA_RESP_ERR__FATAL.rawValue)
        /// Local: the previous transactional state must be aborted first.
        public static let state = Code(rawValue: RD_KAFKA_RESP_ERR__STATE.rawValue)
        /// Local: the handle is being destroyed or was closed.
        public static let destroyed = Code(rawValue: RD_KAFKA_RESP_ERR__DESTROY.rawValue)
        /// Local: functionality not available with this librdkafka build or version.
        public static let notImplemented = Code(rawValue: RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED.rawValue)
        /// Broker: this producer was fenced by a newer instance with the same `transactional.id`.
        public static let producerFenced = Code(rawValue: RD_KAFKA_RESP_ERR__FENCED.rawValue)
        /// Broker: as ``producerFenced``, in the broker's own code.
        public static let brokerProducerFenced = Code(rawValue: RD_KAFKA_RESP_ERR_PRODUCER_FENCED.rawValue)
    }

    /// A newer producer with the same `transactional.id` took over: no retry can succeed,
    /// so errors built from librdkafka's with these codes are marked ``isFatal``, even
    /// where librdkafka does not mark them (an offset commit refused this way only fails
    /// its transaction there).
    static func isFencingCode(_ code: Code) -> Bool {
        code == .producerFenced || code == .brokerProducerFenced || code == .invalidProducerEpoch
    }

    /// librdkafka's error code.
    public var code: Code
    /// What went wrong, in librdkafka's words where it gave any, plus context.
    public var message: String
    /// Retrying the same operation may succeed (transient broker or network condition).
    public var isRetriable: Bool
    /// The client instance is unusable and must be closed and recreated.
    public var isFatal: Bool
    /// The current transaction cannot commit; abort it and start a new one.
    public var transactionRequiresAbort: Bool

    /// librdkafka's symbolic error name, e.g. `_MSG_TIMED_OUT`.
    public var name: String { code.name }

    public init(
        code: Code,
        message: String,
        isRetriable: Bool = false,
        isFatal: Bool = false,
        transactionRequiresAbort: Bool = false
    ) {
        self.code = code
        self.message = message
        self.isRetriable = isRetriable
        self.isFatal = isFatal
        self.transactionRequiresAbort = transactionRequiresAbort
    }

    public var description: String {
        var flags: [String] = []
        if isRetriable { flags.append("retriable") }
        if isFatal { flags.append("fatal") }
        if transactionRequiresAbort { flags.append("abort transaction") }
        let suffix = flags.isEmpty ? "" : " [\(flags.joined(separator: ", "))]"
        return "Kafka error \(name) (\(code.rawValue)): \(message)\(suffix)"
    }
}

extension KafkaError {
    /// An error from a plain librdkafka response code. `context` says what was attempted.
    init(_ err: rd_kafka_resp_err_t, context: String) {
        let text = String(cString: rd_kafka_err2str(err))
        self.init(
            code: Code(rawValue: err.rawValue),
            message: context.isEmpty ? text : "\(context): \(text)",
            isRetriable: KafkaError.isRetriableCode(err),
            isFatal: KafkaError.isFencingCode(Code(rawValue: err.rawValue))
        )
    }

    /// Takes ownership of a librdkafka `rd_kafka_error_t` (destroys it) and keeps its flags.
    init(consuming error: OpaquePointer, context: String) {
        defer { rd_kafka_error_destroy(error) }
        let text = String(cString: rd_kafka_error_string(error))
        let code = Code(rawValue: rd_kafka_error_code(error).rawValue)
        self.init(
            code: code,
            message: context.isEmpty ? text : "\(context): \(text)",
            isRetriable: rd_kafka_error_is_retriable(error) != 0,
            isFatal: rd_kafka_error_is_fatal(error) != 0 || KafkaError.isFencingCode(code),
            transactionRequiresAbort: rd_kafka_error_txn_requires_abort(error) != 0
        )
    }

    /// A configuration or usage error detected by this module, not by librdkafka.
    static func invalidArgument(_ message: String) -> KafkaError {
        KafkaError(code: .invalidArgument, message: message)
    }

    /// Transient local and broker conditions where retrying is reasonable.
    private static func isRetriableCode(_ err: rd_kafka_resp_err_t) -> Bool {
        switch err {
        case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
            RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__QUEUE_FULL,
            RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR, RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
            return true
        default:
            return false
        }
    }
}

extension Array where Element == CChar {
    /// The text up to the first NUL of a C string buffer librdkafka filled in.
    var decodedCString: String {
        let end = firstIndex(of: 0) ?? endIndex
        return String(decoding: self[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
