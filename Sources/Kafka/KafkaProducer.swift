import CRdKafka
import Synchronization
import Logging

/// A Kafka producer: idempotent by default, with awaitable delivery results, a
/// non-awaiting fast path for batches, and the transactions API.
///
/// Thread-safety: all methods may be called from any thread. Synchronous methods that
/// wait (``flush(timeout:)``, the transaction calls, ``produce(_:blockIfQueueFull:onDelivery:)``
/// with `blockIfQueueFull`) block the calling thread: call them from a dedicated thread,
/// or call their `async` overloads, which run them on this producer's own thread.
/// Delivery reports are served by a dedicated thread the producer owns.
public final class KafkaProducer: Sendable {
    let client: RDKafkaClient
    private let deliveryLoop: KafkaLoopThread
    private let blocking: KafkaThread
    private let topics = Mutex<[String: KafkaProducerTopic]>([:])
    /// The configuration the producer was created with.
    public let configuration: KafkaProducerConfiguration

    /// Creates a producer and starts its delivery-report thread.
    ///
    /// - Parameters:
    ///   - logger: receives librdkafka's log lines (metadata `kafka.facility`, `kafka.client`).
    ///   - statisticsHandler: receives librdkafka's statistics JSON every
    ///     `statistics.interval.ms`, on the delivery-report thread.
    ///   - errorHandler: receives client-level errors (all brokers down, fatal errors), on
    ///     librdkafka's or the delivery-report thread. Most are transient; see
    ///     ``KafkaError/isFatal``.
    /// - Throws: ``KafkaError`` naming the property when a configuration value is invalid,
    ///   or when librdkafka is too old.
    public init(
        configuration: KafkaProducerConfiguration,
        logger: Logger = Logger(label: "kafka.producer"),
        statisticsHandler: (@Sendable (String) -> Void)? = nil,
        errorHandler: (@Sendable (KafkaError) -> Void)? = nil
    ) throws(KafkaError) {
        let callbacks = RDKafkaCallbacks(logger: logger, statisticsHandler: statisticsHandler, errorHandler: errorHandler)
        let client = try RDKafkaClient(kind: RD_KAFKA_PRODUCER, properties: configuration.librdkafkaProperties, callbacks: callbacks)
        self.client = client
        self.configuration = configuration
        let name = client.name
        self.deliveryLoop = KafkaLoopThread(name: "\(name)-dr") { _ = rd_kafka_poll(client.handle, 100) }
        self.blocking = KafkaThread(name: "\(name)-calls")
    }

    deinit {
        blocking.stop()
        purgeAndDrain()
        deliveryLoop.stop()
    }

    /// librdkafka's name of this client, e.g. `rdkafka#producer-1`.
    public var name: String { client.name }

    /// The error that made this producer unusable (fenced by a newer instance with the same
    /// `transactional.id`, say), or nil while it is usable. Once set, every later call
    /// fails, often with a secondary error that does not say why (a delivery report of
    /// `_PURGE_QUEUE`): check this before retrying.
    public var fatalError: KafkaError? {
        var text = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(client.handle, &text, text.count)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return KafkaError(code: KafkaError.Code(rawValue: err.rawValue), message: text.decodedCString, isFatal: true)
    }

    // MARK: Sending

    /// Sends one record and waits until the broker acknowledged it (or delivery failed).
    ///
    /// Never blocks a thread: when librdkafka's local queue is full, the task waits and
    /// retries until the configured delivery timeout.
    public func send(_ message: KafkaProducerMessage) async throws(KafkaError) -> KafkaDeliveryReport {
        let deadline = ContinuousClock.now + (configuration.deliveryTimeout ?? .seconds(300))
        while true {
            let result: Result<KafkaDeliveryReport, KafkaError> = await withCheckedContinuation { continuation in
                do throws(KafkaError) {
                    try produce(message) { continuation.resume(returning: $0) }
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            switch result {
            case .success(let report):
                return report
            case .failure(let error) where error.code == .queueFull && ContinuousClock.now < deadline:
                try? await Task.sleep(for: .milliseconds(2))
            case .failure(let error):
                throw error
            }
        }
    }

    /// Enqueues one record and returns at once (the fast path for batches).
    ///
    /// - Parameters:
    ///   - blockIfQueueFull: wait while the local queue is full instead of throwing
    ///     `_QUEUE_FULL`. Blocks the calling thread: only on a dedicated thread.
    ///   - onDelivery: called once with the outcome, on the delivery-report thread. Keep it
    ///     short. Without it, failed deliveries are counted in ``unhandledDeliveryFailures``.
    /// - Throws: ``KafkaError`` when the record cannot be enqueued (queue full, unknown
    ///   partition, message too large, fatal producer state).
    public func produce(
        _ message: KafkaProducerMessage,
        blockIfQueueFull: Bool = false,
        onDelivery: (@Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void)? = nil
    ) throws(KafkaError) {
        try produce(
            to: topic(message.topic), partition: message.partition, key: message.key, value: message.value,
            headers: message.headers, timestamp: message.timestamp, blockIfQueueFull: blockIfQueueFull, onDelivery: onDelivery)
    }

    /// Enqueues one record from owned bytes to a topic handle from ``topic(_:)``. See
    /// ``produce(_:blockIfQueueFull:onDelivery:)`` for the parameters.
    public func produce(
        to topic: KafkaProducerTopic,
        partition: Int32? = nil,
        key: [UInt8]?,
        value: [UInt8],
        headers: [KafkaHeader] = [],
        timestamp: Int64? = nil,
        blockIfQueueFull: Bool = false,
        onDelivery: (@Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void)? = nil
    ) throws(KafkaError) {
        let result: Result<Void, KafkaError> = value.withUnsafeBytes { value in
            guard let key else {
                return Result { () throws(KafkaError) in
                    try produce(
                        to: topic, partition: partition, key: nil, value: value, headers: headers, timestamp: timestamp,
                        blockIfQueueFull: blockIfQueueFull, onDelivery: onDelivery)
                }
            }
            return key.withUnsafeBytes { key in
                Result { () throws(KafkaError) in
                    try produce(
                        to: topic, partition: partition, key: key, value: value, headers: headers, timestamp: timestamp,
                        blockIfQueueFull: blockIfQueueFull, onDelivery: onDelivery)
                }
            }
        }
        try result.get()
    }

    /// Enqueues one record from borrowed bytes, which librdkafka copies before returning.
    /// See ``produce(_:blockIfQueueFull:onDelivery:)`` for the parameters.
    public func produce(
        topic: String,
        partition: Int32? = nil,
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer,
        headers: [KafkaHeader] = [],
        timestamp: Int64? = nil,
        blockIfQueueFull: Bool = false,
        onDelivery: (@Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void)? = nil
    ) throws(KafkaError) {
        try produce(
            to: self.topic(topic), partition: partition, key: key, value: value, headers: headers,
            timestamp: timestamp, blockIfQueueFull: blockIfQueueFull, onDelivery: onDelivery)
    }

    /// Enqueues one record to a topic handle from ``topic(_:)``: the fastest path, with no
    /// lookup by name. See ``produce(_:blockIfQueueFull:onDelivery:)`` for the parameters.
    public func produce(
        to topic: KafkaProducerTopic,
        partition: Int32? = nil,
        key: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer,
        headers: [KafkaHeader] = [],
        timestamp: Int64? = nil,
        blockIfQueueFull: Bool = false,
        onDelivery: (@Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void)? = nil
    ) throws(KafkaError) {
        let completion = onDelivery.map { Unmanaged.passRetained(KafkaDeliveryCompletion($0)) }
        let cHeaders = KafkaProducer.makeHeaders(headers)
        let err = pulse_produce(
            client.handle, topic.handle, partition ?? pulse_partition_unassigned,
            value.baseAddress, value.count, key?.baseAddress, key?.count ?? 0,
            cHeaders, timestamp ?? 0, completion?.toOpaque(), blockIfQueueFull ? 1 : 0)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            completion?.release()
            if let cHeaders { rd_kafka_headers_destroy(cHeaders) }
            throw KafkaError(err, context: "cannot enqueue a record for \(topic.name)")
        }
    }

    /// The handle of topic `name` for this producer, created on first use and kept.
    public func topic(_ name: String) throws(KafkaError) -> KafkaProducerTopic {
        let result: Result<KafkaProducerTopic, KafkaError> = topics.withLock { topics in
            if let existing = topics[name] { return .success(existing) }
            guard let handle = rd_kafka_topic_new(client.handle, name, nil) else {
                return .failure(KafkaError(rd_kafka_last_error(), context: "topic handle for \(name)"))
            }
            let topic = KafkaProducerTopic(name: name, handle: handle, client: client)
            topics[name] = topic
            return .success(topic)
        }
        return try result.get()
    }

    private static func makeHeaders(_ headers: [KafkaHeader]) -> OpaquePointer? {
        guard !headers.isEmpty, let list = rd_kafka_headers_new(headers.count) else { return nil }
        for header in headers {
            if let value = header.value {
                value.withUnsafeBytes { bytes in
                    _ = rd_kafka_header_add(list, header.name, -1, bytes.baseAddress, bytes.count)
                }
            } else {
                _ = rd_kafka_header_add(list, header.name, -1, nil, 0)
            }
        }
        return list
    }

    /// Deliveries that failed since the producer started without a delivery handler to
    /// tell (fast-path ``produce`` calls with `onDelivery: nil`).
    public var unhandledDeliveryFailures: Int {
        client.callbacks.unhandledDeliveryFailures.load(ordering: .relaxed)
    }

    /// The most recent such failure.
    public var lastUnhandledDeliveryError: KafkaError? {
        client.callbacks.lastUnhandledDeliveryError.withLock { $0 }
    }

    /// Records enqueued or in flight, not yet acknowledged or failed.
    public var outstandingCount: Int { Int(rd_kafka_outq_len(client.handle)) }

    // MARK: Flushing

    /// Waits until every enqueued record was delivered or failed. Blocks the caller.
    /// - Throws: `_TIMED_OUT` if records are still outstanding after `timeout`.
    public func flush(timeout: Duration = .seconds(30)) throws(KafkaError) {
        let err = rd_kafka_flush(client.handle, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, context: "flush: \(outstandingCount) records still outstanding after \(timeout)")
        }
    }

    /// Waits until every enqueued record was delivered or failed, on the producer's thread.
    public func flush(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.flush(timeout: timeout) }
    }

    /// Flushes (up to `timeout`), then fails whatever is still outstanding with
    /// `_PURGE_QUEUE`/`_PURGE_INFLIGHT` so every awaiting sender gets an answer.
    /// The producer stays usable. Blocks the caller.
    public func close(timeout: Duration = .seconds(30)) {
        if (try? flush(timeout: timeout)) == nil {
            client.callbacks.logger.warning("closing producer \(name) with \(outstandingCount) undelivered records")
        }
        purgeAndDrain()
    }

    /// See ``close(timeout:)``; runs on the producer's own thread.
    public func close(timeout: Duration = .seconds(30)) async {
        try? await blocking.run { self.close(timeout: timeout) }
    }

    private func purgeAndDrain() {
        guard rd_kafka_outq_len(client.handle) > 0 else { return }
        _ = rd_kafka_purge(client.handle, Int32(RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT))
        // Purged records get their delivery reports on the next polls.
        _ = rd_kafka_flush(client.handle, 5_000)
    }

    // MARK: Transactions

    /// Registers `transactional.id` with the coordinator, fencing older instances with the
    /// same id and aborting their open transaction. Call once before the first
    /// ``beginTransaction()``. Blocks the caller.
    public func initTransactions(timeout: Duration = .seconds(30)) throws(KafkaError) {
        try check(rd_kafka_init_transactions(client.handle, timeout.timeoutMilliseconds), "init transactions")
    }

    /// See ``initTransactions(timeout:)``; runs on the producer's own thread.
    public func initTransactions(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.initTransactions(timeout: timeout) }
    }

    /// Starts a transaction: records produced from now until commit or abort belong to it.
    /// Does not block.
    public func beginTransaction() throws(KafkaError) {
        try check(rd_kafka_begin_transaction(client.handle), "begin transaction")
    }

    /// Adds consumed offsets to the current transaction: they become the consumer group's
    /// committed offsets exactly when the transaction commits. `offsets` are the next
    /// offsets to read (last processed + 1). Blocks the caller.
    public func sendOffsetsToTransaction(
        _ offsets: [KafkaTopicPartition],
        groupMetadata: KafkaConsumerGroupMetadata,
        timeout: Duration = .seconds(30)
    ) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = KafkaTopicPartition.makeList(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        try check(
            rd_kafka_send_offsets_to_transaction(client.handle, list, groupMetadata.pointer, timeout.timeoutMilliseconds),
            "send offsets to transaction")
    }

    /// See ``sendOffsetsToTransaction(_:groupMetadata:timeout:)``; runs on the producer's thread.
    public func sendOffsetsToTransaction(
        _ offsets: [KafkaTopicPartition],
        groupMetadata: KafkaConsumerGroupMetadata,
        timeout: Duration = .seconds(30)
    ) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in
            try self.sendOffsetsToTransaction(offsets, groupMetadata: groupMetadata, timeout: timeout)
        }
    }

    /// Flushes and commits the current transaction. On an error with
    /// ``KafkaError/transactionRequiresAbort`` call ``abortTransaction(timeout:)``; on a
    /// retriable one, retry the commit; on a fatal one, recreate the producer. Blocks.
    public func commitTransaction(timeout: Duration = .seconds(30)) throws(KafkaError) {
        try check(rd_kafka_commit_transaction(client.handle, timeout.timeoutMilliseconds), "commit transaction")
    }

    /// See ``commitTransaction(timeout:)``; runs on the producer's own thread.
    public func commitTransaction(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.commitTransaction(timeout: timeout) }
    }

    /// Aborts the current transaction, dropping its unsent records. Blocks the caller.
    public func abortTransaction(timeout: Duration = .seconds(30)) throws(KafkaError) {
        try check(rd_kafka_abort_transaction(client.handle, timeout.timeoutMilliseconds), "abort transaction")
    }

    /// See ``abortTransaction(timeout:)``; runs on the producer's own thread.
    public func abortTransaction(timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.abortTransaction(timeout: timeout) }
    }

    private func check(_ error: OpaquePointer?, _ what: String) throws(KafkaError) {
        if let error { throw KafkaError(consuming: error, context: what) }
    }
}

/// A producer's handle for one topic (librdkafka's `rd_kafka_topic_t`), from
/// ``KafkaProducer/topic(_:)``. Producing through it skips the lookup by name.
public final class KafkaProducerTopic: @unchecked Sendable {
    // @unchecked: topic handles are thread-safe in librdkafka; destroyed once, in deinit,
    // while the client (kept alive by this reference) still exists.
    /// The topic name.
    public let name: String
    let handle: OpaquePointer
    private let client: RDKafkaClient

    init(name: String, handle: OpaquePointer, client: RDKafkaClient) {
        self.name = name
        self.handle = handle
        self.client = client
    }

    deinit { rd_kafka_topic_destroy(handle) }
}
