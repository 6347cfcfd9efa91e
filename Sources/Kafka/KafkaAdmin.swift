import CRdKafka
import Logging

/// What a new topic should look like.
public struct KafkaTopicSpecification: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    /// Copies of each partition; `-1` (default) uses the broker's `default.replication.factor`.
    public var replicationFactor: Int32
    /// Topic configs, e.g. `["cleanup.policy": "compact", "min.compaction.lag.ms": "60000"]`.
    public var configs: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = -1, configs: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configs = configs
    }
}

/// What the cluster reports about a topic.
public struct KafkaTopicDescription: Sendable, Hashable {
    public var name: String
    /// Partition ids, ascending.
    public var partitions: [Int32]
    /// Topic configs as described by the broker (some brokers return only explicitly set ones).
    public var configs: [String: String]
}

/// Topic administration: create, describe, delete, wait for metadata.
///
/// Synchronous methods block the caller until the broker answered or `timeout` passed;
/// their `async` overloads run them on the admin client's own thread.
public final class KafkaAdmin: Sendable {
    let client: RDKafkaClient
    private let blocking: KafkaThread

    /// - Throws: ``KafkaError`` naming the property when a configuration value is invalid.
    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "kafka.admin")) throws(KafkaError) {
        let callbacks = RDKafkaCallbacks(logger: logger, statisticsHandler: nil, errorHandler: nil)
        var properties = configuration.typedProperties
        properties.append(contentsOf: configuration.properties.sorted { $0.key < $1.key })
        // Its last release must not hold the caller (a service start-up, say) for the
        // client's destroy.
        client = try RDKafkaClient(kind: RD_KAFKA_PRODUCER, properties: properties, callbacks: callbacks, destroysInBackground: true)
        blocking = KafkaThread(name: "\(client.name)-admin")
    }

    deinit { blocking.stop() }

    // MARK: Create

    /// Creates topics. With `ifNotExists`, a topic that already exists is not an error
    /// (its partition count and configs are left as they are).
    public func createTopics(_ topics: [KafkaTopicSpecification], ifNotExists: Bool = false, timeout: Duration = .seconds(30)) throws(KafkaError) {
        guard !topics.isEmpty else { return }
        var errorText = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for spec in topics {
            guard let topic = rd_kafka_NewTopic_new(spec.name, spec.partitions, spec.replicationFactor, &errorText, errorText.count) else {
                throw KafkaError.invalidArgument("topic \(spec.name): \(errorText.decodedCString)")
            }
            newTopics.append(topic)
            for (name, value) in spec.configs.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(topic, name, value)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "topic \(spec.name) config \(name)") }
            }
        }
        try runAdminOperation(RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout: timeout, what: "create topics") { options, queue in
            rd_kafka_CreateTopics(client.handle, &newTopics, newTopics.count, options, queue)
        } readResult: { event throws(KafkaError) in
            var count = 0
            let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
            try KafkaAdmin.checkTopicResults(results, count: count, what: "create topic") {
                ifNotExists && $0 == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
            }
        }
    }

    /// See ``createTopics(_:ifNotExists:timeout:)``; runs on the admin client's thread.
    public func createTopics(_ topics: [KafkaTopicSpecification], ifNotExists: Bool = false, timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.createTopics(topics, ifNotExists: ifNotExists, timeout: timeout) }
    }

    // MARK: Delete

    /// Deletes topics. With `ifExists`, a topic that does not exist is not an error.
    public func deleteTopics(_ names: [String], ifExists: Bool = false, timeout: Duration = .seconds(30)) throws(KafkaError) {
        guard !names.isEmpty else { return }
        var deletions: [OpaquePointer?] = names.map { rd_kafka_DeleteTopic_new($0) }
        defer { for deletion in deletions { rd_kafka_DeleteTopic_destroy(deletion) } }
        try runAdminOperation(RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout: timeout, what: "delete topics") { options, queue in
            rd_kafka_DeleteTopics(client.handle, &deletions, deletions.count, options, queue)
        } readResult: { event throws(KafkaError) in
            var count = 0
            let results = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &count)
            try KafkaAdmin.checkTopicResults(results, count: count, what: "delete topic") {
                ifExists && $0 == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            }
        }
    }

    /// See ``deleteTopics(_:ifExists:timeout:)``; runs on the admin client's thread.
    public func deleteTopics(_ names: [String], ifExists: Bool = false, timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.deleteTopics(names, ifExists: ifExists, timeout: timeout) }
    }

    // MARK: Describe

    /// Partitions (from metadata) and configs (from DescribeConfigs) of a topic.
    /// - Throws: `UNKNOWN_TOPIC_OR_PART` when the topic does not exist.
    public func describeTopic(_ name: String, timeout: Duration = .seconds(30)) throws(KafkaError) -> KafkaTopicDescription {
        let partitions = try partitionIDs(of: name, timeout: timeout)
        var configs: [String: String] = [:]
        guard let resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name) else {
            throw KafkaError.invalidArgument("cannot describe topic \(name)")
        }
        var resources: [OpaquePointer?] = [resource]
        defer { rd_kafka_ConfigResource_destroy(resource) }
        try runAdminOperation(RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout: timeout, what: "describe configs of \(name)") { options, queue in
            rd_kafka_DescribeConfigs(client.handle, &resources, 1, options, queue)
        } readResult: { event throws(KafkaError) in
            var count = 0
            guard let results = rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event), &count) else { return }
            for index in 0..<count {
                guard let result = results[index] else { continue }
                let err = rd_kafka_ConfigResource_error(result)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "describe configs of \(name)") }
                var entryCount = 0
                guard let entries = rd_kafka_ConfigResource_configs(result, &entryCount) else { continue }
                for entryIndex in 0..<entryCount {
                    guard let entry = entries[entryIndex], let entryName = rd_kafka_ConfigEntry_name(entry) else { continue }
                    configs[String(cString: entryName)] = rd_kafka_ConfigEntry_value(entry).map { String(cString: $0) } ?? ""
                }
            }
        }
        return KafkaTopicDescription(name: name, partitions: partitions, configs: configs)
    }

    /// See ``describeTopic(_:timeout:)``; runs on the admin client's thread.
    public func describeTopic(_ name: String, timeout: Duration = .seconds(30)) async throws(KafkaError) -> KafkaTopicDescription {
        try await blocking.run { () throws(KafkaError) in try self.describeTopic(name, timeout: timeout) }
    }

    /// The partition ids of a topic according to the cluster's metadata.
    /// - Throws: `UNKNOWN_TOPIC_OR_PART` (or the broker's error for the topic).
    public func partitionIDs(of topic: String, timeout: Duration = .seconds(10)) throws(KafkaError) -> [Int32] {
        guard let rkt = rd_kafka_topic_new(client.handle, topic, nil) else {
            throw KafkaError(rd_kafka_last_error(), context: "topic handle for \(topic)")
        }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(client.handle, 0, rkt, &metadata, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, context: "metadata of \(topic)") }
        defer { rd_kafka_metadata_destroy(metadata) }
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let entry = metadata.pointee.topics[index]
            guard String(cString: entry.topic) == topic else { continue }
            if entry.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(entry.err, context: "topic \(topic)") }
            return (0..<Int(entry.partition_cnt)).map { entry.partitions[$0].id }.sorted()
        }
        throw KafkaError(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, context: "topic \(topic) is not in the cluster metadata")
    }

    /// The names of all topics in the cluster (internal ones included), sorted.
    public func listTopics(timeout: Duration = .seconds(10)) throws(KafkaError) -> [String] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(client.handle, 1, nil, &metadata, timeout.timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, context: "list topics") }
        defer { rd_kafka_metadata_destroy(metadata) }
        return (0..<Int(metadata.pointee.topic_cnt)).map { String(cString: metadata.pointee.topics[$0].topic) }.sorted()
    }

    /// See ``listTopics(timeout:)``; runs on the admin client's thread.
    public func listTopics(timeout: Duration = .seconds(10)) async throws(KafkaError) -> [String] {
        try await blocking.run { () throws(KafkaError) in try self.listTopics(timeout: timeout) }
    }

    /// Waits until the cluster's metadata shows `topic` with at least `partitions`
    /// partitions (a freshly created topic takes a moment to propagate).
    public func waitForTopic(_ topic: String, partitions: Int32 = 1, timeout: Duration = .seconds(30)) throws(KafkaError) {
        let deadline = ContinuousClock.now + timeout
        var lastError: KafkaError?
        repeat {
            do {
                if try partitionIDs(of: topic, timeout: .seconds(5)).count >= partitions { return }
            } catch {
                lastError = error
            }
            _ = rd_kafka_poll(client.handle, 100)
        } while ContinuousClock.now < deadline
        throw lastError ?? KafkaError(code: .timedOut, message: "topic \(topic) did not reach \(partitions) partitions within \(timeout)")
    }

    /// See ``waitForTopic(_:partitions:timeout:)``; runs on the admin client's thread.
    public func waitForTopic(_ topic: String, partitions: Int32 = 1, timeout: Duration = .seconds(30)) async throws(KafkaError) {
        try await blocking.run { () throws(KafkaError) in try self.waitForTopic(topic, partitions: partitions, timeout: timeout) }
    }

    // MARK: Plumbing

    private func runAdminOperation(
        _ operation: rd_kafka_admin_op_t,
        timeout: Duration,
        what: String,
        start: (OpaquePointer?, OpaquePointer?) -> Void,
        readResult: (OpaquePointer) throws(KafkaError) -> Void
    ) throws(KafkaError) {
        guard let queue = rd_kafka_queue_new(client.handle) else { throw KafkaError.invalidArgument("\(what): no queue") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(client.handle, operation)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errorText = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeout.timeoutMilliseconds, &errorText, errorText.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeout.timeoutMilliseconds, &errorText, errorText.count)
        start(options, queue)
        guard let event = rd_kafka_queue_poll(queue, (timeout + .seconds(5)).timeoutMilliseconds) else {
            throw KafkaError(code: .timedOut, message: "\(what): no answer within \(timeout)")
        }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            let detail = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? String(cString: rd_kafka_err2str(err))
            throw KafkaError(code: .init(rawValue: err.rawValue), message: "\(what): \(detail)", isRetriable: err == RD_KAFKA_RESP_ERR__TIMED_OUT)
        }
        try readResult(event)
    }

    private static func checkTopicResults(
        _ results: UnsafeMutablePointer<OpaquePointer?>?,
        count: Int,
        what: String,
        ignoring: (rd_kafka_resp_err_t) -> Bool
    ) throws(KafkaError) {
        guard let results else { return }
        for index in 0..<count {
            guard let result = results[index] else { continue }
            let err = rd_kafka_topic_result_error(result)
            guard err != RD_KAFKA_RESP_ERR_NO_ERROR, !ignoring(err) else { continue }
            let name = String(cString: rd_kafka_topic_result_name(result))
            let detail = rd_kafka_topic_result_error_string(result).map { String(cString: $0) } ?? ""
            throw KafkaError(err, context: "\(what) \(name)\(detail.isEmpty ? "" : " (\(detail))")")
        }
    }
}
