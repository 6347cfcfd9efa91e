import CRdKafka
import Synchronization
import Logging

/// A Kafka consumer in a consumer group (or with a manual assignment), reading in batches.
///
/// The synchronous methods are meant for a dedicated thread running a poll loop: ``poll(maxMessages:timeout:fillingBatch:_:)``
/// hands the closure a whole batch read in place, with no copy and no task hop per
/// record. Rebalances are reported to the `rebalanceHandler` on that polling thread,
/// before librdkafka applies them, so the caller can flush state on revocation and
/// choose starting offsets on assignment. In async code use the `async` overloads, which
/// run the same calls on the consumer's own thread.
///
/// Thread-safety: methods may be called from any thread, but polling should happen from
/// one thread at a time.
public final class KafkaConsumer: Sendable {
    let client: RDKafkaClient
    private let queue: RDKafkaQueue
    private let blocking: KafkaThread
    /// The configuration the consumer was created with.
    public let configuration: KafkaConsumerConfiguration

    /// Creates a consumer. It joins no group until ``subscribe(topics:)``.
    ///
    /// - Parameters:
    ///   - rebalanceHandler: told of every assignment change, on the polling thread; for
    ///     ``KafkaRebalanceEvent/assigned(_:)`` it may return the partitions with chosen
    ///     starting offsets (`nil`: the group's committed offsets).
    ///   - statisticsHandler: librdkafka's statistics JSON, on the polling thread.
    ///   - errorHandler: client-level errors, on the polling thread.
    /// - Throws: ``KafkaError`` naming the property when a configuration value is invalid.
    public init(
        configuration: KafkaConsumerConfiguration,
        logger: Logger = Logger(label: "kafka.consumer"),
        rebalanceHandler: (@Sendable (KafkaRebalanceEvent) -> [KafkaTopicPartition]?)? = nil,
        statisticsHandler: (@Sendable (String) -> Void)? = nil,
        errorHandler: (@Sendable (KafkaError) -> Void)? = nil
    ) throws(KafkaError) {
        let callbacks = RDKafkaCallbacks(
            logger: logger, statisticsHandler: statisticsHandler, errorHandler: errorHandler,
            rebalanceHandler: rebalanceHandler)
        let client = try RDKafkaClient(kind: RD_KAFKA_CONSUMER, properties: configuration.librdkafkaProperties, callbacks: callbacks)
        // Serve logs, statistics, errors and rebalances from the consumer queue we poll.
        _ = rd_kafka_poll_set_consumer(client.handle)
        guard let queue = rd_kafka_queue_get_consumer(client.handle) else {
            throw KafkaError.invalidArgument("the consumer has no consumer queue; is group.id set?")
        }
        self.client = client
        self.queue = RDKafkaQueue(owner: client, handle: queue)
        self.configuration = configuration
        self.blocking = KafkaThread(name: "\(client.name)-calls")
    }

    deinit {
        blocking.stop()
    }

    /// librdkafka's name of this client, e.g. `rdkafka#consumer-2`.
    public var name: String { client.name }

    // MARK: Subscription and assignment

    /// Joins the consumer group and subscribes to `topics` (names, or regexes starting with `^`).
    public func subscribe(topics: [String]) throws(KafkaError) {
        let list = KafkaTopicPartition.makeList(topics.map { KafkaTopicPartition(topic: $0, partition: -1) })
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_subscribe(client.handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "subscribe to \(topics)") }
    }

    /// Reads exactly these partitions from their given offsets, without group management.
    ///
    /// Looks up the topics' metadata first (a few milliseconds), so fetching starts at
    /// once instead of after librdkafka's offset-query retry timer (about 500 ms).
    public func assign(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        for topic in Set(partitions.map(\.topic)) { warmMetadata(topic: topic) }
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_assign(client.handle, partitions.isEmpty ? nil : list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, context: "assign \(partitions)") }
    }

    private func warmMetadata(topic: String) {
        guard let rkt = rd_kafka_topic_new(client.handle, topic, nil) else { return }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        if rd_kafka_metadata(client.handle, 0, rkt, &metadata, 5_000) == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata {
            rd_kafka_metadata_destroy(metadata)
        }
    }

    /// The partitions currently assigned to this consumer.
    public func assignment() throws(KafkaError) -> [KafkaTopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let err = rd_kafka_assignment(client.handle, &list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { throw KafkaError(err, context: "read assignment") }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        return KafkaTopicPartition.array(from: list)
    }

    // MARK: Polling

    /// Hands `body` up to `maxMessages` of the records waiting, in place, as soon as there
    /// are any: it waits (up to `timeout`) only while there are none. Serves rebalance,
    /// log, statistics and error callbacks on this thread. Blocks the caller: use from a
    /// dedicated thread.
    ///
    /// librdkafka's batch call returns only once it holds `maxMessages` records or its
    /// timeout has passed, so a consumer reading a stream slower than `maxMessages` per
    /// timeout would hold every record until the timeout. Here it takes what is waiting
    /// without blocking; when nothing is, it waits for one record, then takes what
    /// waits behind that record.
    ///
    /// - Parameter fillingBatch: wait (up to `timeout`) until `maxMessages` records are
    ///   there instead, as librdkafka's batch call does: fewer, larger batches for a bulk
    ///   reader that does not mind holding records (reading a backlog as fast as possible,
    ///   a bare counting consumer read 4–12 % faster this way).
    /// - Returns: the number of records handed to `body`.
    @discardableResult
    public func poll(
        maxMessages: Int = 10_000,
        timeout: Duration,
        fillingBatch: Bool = false,
        _ body: (KafkaMessageBatch) throws -> Void
    ) throws -> Int {
        let buffer = UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>?>.allocate(capacity: maxMessages)
        defer { buffer.deallocate() }
        let count = try receive(into: buffer, timeout: timeout, fillingBatch: fillingBatch)
        guard count > 0 else { return 0 }
        let received = UnsafeMutableBufferPointer(rebasing: buffer[0..<count])
        defer { for message in received { rd_kafka_message_destroy(message) } }
        // Records first; end-of-partition markers and errors are rare and set aside.
        var records = 0
        var eofs: [KafkaTopicPartition] = []
        var errors: [KafkaError] = []
        for index in received.indices {
            guard let message = received[index] else { continue }
            let err = message.pointee.err
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                received.swapAt(records, index)
                records += 1
            } else if err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
                eofs.append(KafkaTopicPartition(topic: topic, partition: message.pointee.partition, offset: message.pointee.offset))
            } else {
                errors.append(KafkaError(err, context: KafkaConsumer.errorContext(message)))
            }
        }
        let batch = KafkaMessageBatch(
            messages: UnsafeBufferPointer(
                start: UnsafeRawPointer(received.baseAddress)?.assumingMemoryBound(to: UnsafeMutablePointer<rd_kafka_message_t>.self),
                count: records),
            partitionEOFs: eofs, errors: errors)
        try body(batch)
        return records
    }

    /// Fills `buffer` with what ``poll(maxMessages:timeout:fillingBatch:_:)`` hands on;
    /// returns how many it holds (the caller destroys them).
    private func receive(
        into buffer: UnsafeMutableBufferPointer<UnsafeMutablePointer<rd_kafka_message_t>?>, timeout: Duration, fillingBatch: Bool
    ) throws(KafkaError) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        /// librdkafka's batch call: up to `size` records into `start`, waiting up to `wait` ms.
        func take(_ start: UnsafeMutablePointer<UnsafeMutablePointer<rd_kafka_message_t>?>, _ size: Int, waiting wait: Int32) throws(KafkaError) -> Int {
            let count = rd_kafka_consume_batch_queue(queue.handle, wait, start, size)
            if count < 0 { throw KafkaError(rd_kafka_last_error(), context: "poll") }
            return count
        }
        if fillingBatch { return try take(base, buffer.count, waiting: timeout.timeoutMilliseconds) }
        let waiting = try take(base, buffer.count, waiting: 0)
        guard waiting == 0, timeout > .zero, try take(base, 1, waiting: timeout.timeoutMilliseconds) == 1 else { return waiting }
        do {
            return try 1 + take(base + 1, buffer.count - 1, waiting: 0)
        } catch {
            rd_kafka_message_destroy(base[0])
            throw error
        }
    }

    private static func errorContext(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> String {
        var context = "consume"
        if let rkt = message.pointee.rkt { context += " \(String(cString: rd_kafka_topic_name(rkt)))[\(message.pointee.partition)]" }
        if let text = rd_kafka_message_errstr(message) { context += ": \(String(cString: text))" }
        return context
    }

    /// An owned batch: what one poll returned, copied.
    public struct Batch: Sendable {
        public var messages: [KafkaConsumerMessage]
        public var partitionEOFs: [KafkaTopicPartition]
        public var errors: [KafkaError]
    }

    /// Polls once on the consumer's own thread and returns copies of the records.
    /// Convenient in async code and tests; hot loops should use the in-place ``poll(maxMessages:timeout:fillingBatch:_:)``.
    public func poll(maxMessages: Int = 10_000, timeout: Duration, fillingBatch: Bool = false) async throws(KafkaError) -> Batch {
        try await blocking.run { () throws(KafkaError) in
            var result = Batch(messages: [], partitionEOFs: [], errors: [])
            do {
                try self.poll(maxMessages: maxMessages, timeout: timeout, fillingBatch: fillingBatch) { batch in
                    result.messages = batch.map { $0.copy() }
                    result.partitionEOFs = batch.partitionEOFs
                    result.errors = batch.errors
                }
            } catch let error as KafkaError {
                throw error
            } catch {
                preconditionFailure("the copying closure does not throw")
            }
            return result
        }
    }

    // MARK: Offsets

    /// Stores offsets (next offset to read) for the next commit; needs
    /// `enable.auto.offset.store=false` (the default here).
    public func storeOffsets(_ offsets: [KafkaTopicPartition]) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = KafkaTopicPartition.makeList(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_store(client.handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "store offsets") }
        if let error = KafkaTopicPartition.firstError(in: list, context: "store offset") { throw error }
    }

    /// Commits `offsets` (next offset to read per partition), or all stored offsets when
    /// `nil`. Blocks until the broker answers. Committing nothing is not an error.
    public func commit(_ offsets: [KafkaTopicPartition]? = nil) throws(KafkaError) {
        let list = offsets.map { KafkaTopicPartition.makeList($0) }
        defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
        if let offsets, offsets.isEmpty { return }
        let err = rd_kafka_commit(client.handle, list, 0)
        if err == RD_KAFKA_RESP_ERR__NO_OFFSET { return }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "commit offsets") }
        if let list, let error = KafkaTopicPartition.firstError(in: list, context: "commit offset") { throw error }
    }

    /// See ``commit(_:)``; runs on the consumer's own thread.
    public func commit(_ offsets: [KafkaTopicPartition]? = nil) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.commit(offsets) }
    }

    /// The group's committed offsets for `partitions` (``KafkaTopicPartition/invalid`` if
    /// none). Blocks up to `timeout`.
    public func committed(_ partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)) throws(KafkaError) -> [KafkaTopicPartition] {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_committed(client.handle, list, timeout.timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "read committed offsets") }
        return KafkaTopicPartition.array(from: list)
    }

    /// See ``committed(_:timeout:)``; runs on the consumer's own thread.
    public func committed(_ partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)) async throws(KafkaError) -> [KafkaTopicPartition] {
        try await blocking.run { () throws(KafkaError) in try self.committed(partitions, timeout: timeout) }
    }

    /// The consumer's position (next offset it will return) for `partitions`.
    public func position(_ partitions: [KafkaTopicPartition]) throws(KafkaError) -> [KafkaTopicPartition] {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_position(client.handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "read position") }
        return KafkaTopicPartition.array(from: list)
    }

    /// For each partition, the earliest offset whose record timestamp is at or after the
    /// given time (epoch ms, passed in each element's `offset`); ``KafkaTopicPartition/end``
    /// where no record is that new. Blocks up to `timeout`.
    public func offsets(forTimes partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)) throws(KafkaError) -> [KafkaTopicPartition] {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_offsets_for_times(client.handle, list, timeout.timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "look up offsets for times") }
        if let error = KafkaTopicPartition.firstError(in: list, context: "look up offsets for times") { throw error }
        return KafkaTopicPartition.array(from: list)
    }

    /// Low (first) and high (next to be written) offsets of a partition, asked from the
    /// broker. Blocks up to `timeout`.
    public func watermarks(topic: String, partition: Int32, timeout: Duration = .seconds(10)) throws(KafkaError) -> KafkaWatermarks {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(client.handle, topic, partition, &low, &high, timeout.timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "query watermarks of \(topic)[\(partition)]") }
        return KafkaWatermarks(low: low, high: high)
    }

    /// The watermarks this consumer last saw in fetch responses, without asking the broker
    /// (never blocks); `nil` before the first fetch of that partition.
    public func cachedWatermarks(topic: String, partition: Int32) -> KafkaWatermarks? {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(client.handle, topic, partition, &low, &high)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, high >= 0 else { return nil }
        return KafkaWatermarks(low: max(low, 0), high: high)
    }

    /// See ``watermarks(topic:partition:timeout:)``; runs on the consumer's own thread.
    public func watermarks(topic: String, partition: Int32, timeout: Duration = .seconds(10)) async throws(KafkaError) -> KafkaWatermarks {
        try await blocking.run { () throws(KafkaError) in try self.watermarks(topic: topic, partition: partition, timeout: timeout) }
    }

    /// Moves the fetch position of assigned partitions to their given offsets.
    public func seek(_ partitions: [KafkaTopicPartition], timeout: Duration = .seconds(10)) throws(KafkaError) {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        if let error = rd_kafka_seek_partitions(client.handle, list, timeout.timeoutMilliseconds) {
            throw KafkaError(consuming: error, context: "seek")
        }
        if let error = KafkaTopicPartition.firstError(in: list, context: "seek") { throw error }
    }

    /// Stops fetching from `partitions` (their position is kept) until ``resume(_:)``.
    public func pause(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_pause_partitions(client.handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "pause") }
    }

    /// Resumes fetching from paused `partitions`.
    public func resume(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = KafkaTopicPartition.makeList(partitions)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_resume_partitions(client.handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "resume") }
    }

    /// Stops delivering `partitions`' records to ``poll(maxMessages:timeout:fillingBatch:_:)`` without
    /// dropping what the client already fetched (unlike ``pause(_:)``, which discards it
    /// and fetches it again on resume): each partition's fetched records stay in a queue of
    /// its own, and once that holds `queued.max.messages.kbytes` the client stops
    /// fetching the partition. ``release(_:)`` delivers them, in order, after whatever
    /// was already waiting. Once held or released, a partition's delivery is left to the
    /// application: a partition held when it was revoked stays held when it is assigned
    /// again until ``release(_:)``. Partitions not assigned to this consumer are skipped.
    public func hold(_ partitions: [KafkaTopicPartition]) {
        forward(partitions, to: nil)
    }

    /// Delivers held partitions' records again (see ``hold(_:)``).
    public func release(_ partitions: [KafkaTopicPartition]) {
        forward(partitions, to: queue.handle)
    }

    private func forward(_ partitions: [KafkaTopicPartition], to destination: OpaquePointer?) {
        for partition in partitions {
            guard let partitionQueue = rd_kafka_queue_get_partition(client.handle, partition.topic, partition.partition) else { continue }
            rd_kafka_queue_forward(partitionQueue, destination)
            rd_kafka_queue_destroy(partitionQueue)
        }
    }

    /// The group metadata a transactional producer needs to commit this consumer's
    /// offsets in a transaction (``KafkaProducer/sendOffsetsToTransaction(_:groupMetadata:timeout:)``).
    public func groupMetadata() throws(KafkaError) -> KafkaConsumerGroupMetadata {
        guard let pointer = rd_kafka_consumer_group_metadata(client.handle) else {
            throw KafkaError(code: .state, message: "no consumer group metadata (is group.id set?)")
        }
        return KafkaConsumerGroupMetadata(pointer: pointer)
    }

    // MARK: Closing

    /// Lets the consumer's last release return at once and destroys the librdkafka
    /// handle on a thread of its own. For short-lived consumers on a path that waits:
    /// librdkafka's destroy sometimes takes a full second (its main thread finishing a
    /// 1 s wait), which showed in up to half of the service start-ups measured, all in the
    /// destruction of the consumer that had just read a changelog. Nothing left over is
    /// committed (call ``close()`` first to leave a group).
    public func destroyInBackgroundWhenReleased() {
        client.destroysInBackground.store(true, ordering: .releasing)
    }

    /// Leaves the group cleanly: revokes the assignment (the rebalance handler sees
    /// ``KafkaRebalanceEvent/revoked(_:)``), commits if auto-commit is on, and stops
    /// fetching. Blocks up to the group's rebalance time. Idempotent.
    public func close() throws(KafkaError) {
        let (first, _) = client.consumerClosed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
        guard first else { return }
        let err = rd_kafka_consumer_close(client.handle)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "close consumer") }
    }

    /// See ``close()``; runs on the consumer's own thread.
    public func close() async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.close() }
    }
}

/// The offset range of a partition.
public struct KafkaWatermarks: Sendable, Hashable {
    /// The first offset still in the log.
    public var low: Int64
    /// The offset the next record will get (the end of the log).
    public var high: Int64

    public init(low: Int64, high: Int64) {
        self.low = low
        self.high = high
    }

    /// Records between a committed offset and the end of the log (consumer lag). With no
    /// committed offset, everything in the log counts.
    public func lag(committed: Int64) -> Int64 {
        committed < 0 ? high - low : max(0, high - committed)
    }
}

/// A consumer's group identity (group id, generation, member id), for transactional
/// offset commits. Immutable.
public final class KafkaConsumerGroupMetadata: @unchecked Sendable {
    // @unchecked: the pointed-to metadata is never modified after creation and is only
    // read by librdkafka; it is freed once, in deinit.
    let pointer: OpaquePointer

    init(pointer: OpaquePointer) { self.pointer = pointer }

    deinit { rd_kafka_consumer_group_metadata_destroy(pointer) }
}

/// A librdkafka queue handle, released before its client is destroyed (it holds a
/// reference to the client).
final class RDKafkaQueue: @unchecked Sendable {
    // @unchecked: librdkafka queues are thread-safe; destroyed once, in deinit.
    let handle: OpaquePointer
    private let owner: RDKafkaClient

    init(owner: RDKafkaClient, handle: OpaquePointer) {
        self.owner = owner
        self.handle = handle
    }

    deinit { rd_kafka_queue_destroy(handle) }
}
