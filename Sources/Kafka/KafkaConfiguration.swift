/// Settings shared by every Kafka client: where the cluster is, who we are, and any
/// librdkafka property passed through verbatim.
///
/// Typed properties are applied first, then ``properties``, so a verbatim property always
/// wins. Every name and value is checked by librdkafka when a client is created; an
/// invalid one fails construction with librdkafka's own message. See librdkafka's
/// CONFIGURATION.md for the property names (SASL/SSL, timeouts, client.id, ...).
public struct KafkaConfiguration: Sendable, Hashable {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    public var bootstrapServers: String
    /// `client.id`, shown in broker logs and metrics. Default: librdkafka's (`rdkafka`).
    public var clientID: String?
    /// `statistics.interval.ms`: how often librdkafka emits its statistics JSON to the
    /// client's statistics handler. `nil` (default) disables statistics.
    public var statisticsInterval: Duration?
    /// Any librdkafka property, verbatim (`"security.protocol": "SASL_SSL"`, ...).
    public var properties: [String: String]

    public init(
        bootstrapServers: String,
        clientID: String? = nil,
        statisticsInterval: Duration? = nil,
        properties: [String: String] = [:]
    ) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.statisticsInterval = statisticsInterval
        self.properties = properties
    }

    /// The typed settings as librdkafka properties, in application order.
    var typedProperties: [(String, String)] {
        var result: [(String, String)] = [("bootstrap.servers", bootstrapServers)]
        if let clientID { result.append(("client.id", clientID)) }
        if let statisticsInterval { result.append(("statistics.interval.ms", String(statisticsInterval.milliseconds))) }
        return result
    }
}

/// Configuration of a ``KafkaProducer``.
public struct KafkaProducerConfiguration: Sendable, Hashable {
    /// Cluster address, client id and verbatim properties.
    public var common: KafkaConfiguration
    /// `enable.idempotence`: exactly-once, in-order delivery per partition from this
    /// producer (implies `acks=all`). Default `true`.
    public var enableIdempotence: Bool
    /// `transactional.id`: enables the transactions API. Must be stable across restarts
    /// of the same logical producer so a restarted instance fences its predecessor.
    public var transactionalID: String?
    /// `linger.ms`: how long to wait for more messages before sending a batch. Default 5 ms.
    public var linger: Duration
    /// `message.timeout.ms` (`delivery.timeout.ms`): how long librdkafka keeps trying to
    /// deliver a message before reporting `_MSG_TIMED_OUT`. `nil` (default) keeps
    /// librdkafka's default: 300 s, or `transaction.timeout.ms` for a transactional
    /// producer (it must not exceed that).
    public var deliveryTimeout: Duration?
    /// `compression.codec`: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    public var compression: String

    public init(
        common: KafkaConfiguration,
        enableIdempotence: Bool = true,
        transactionalID: String? = nil,
        linger: Duration = .milliseconds(5),
        deliveryTimeout: Duration? = nil,
        compression: String = "lz4"
    ) {
        self.common = common
        self.enableIdempotence = enableIdempotence
        self.transactionalID = transactionalID
        self.linger = linger
        self.deliveryTimeout = deliveryTimeout
        self.compression = compression
    }

    var librdkafkaProperties: [(String, String)] {
        var result = common.typedProperties
        result.append(("enable.idempotence", enableIdempotence ? "true" : "false"))
        if let transactionalID { result.append(("transactional.id", transactionalID)) }
        result.append(("linger.ms", String(linger.milliseconds)))
        if let deliveryTimeout { result.append(("message.timeout.ms", String(deliveryTimeout.milliseconds))) }
        result.append(("compression.codec", compression))
        result.append(contentsOf: common.properties.sorted { $0.key < $1.key })
        return result
    }
}

/// Configuration of a ``KafkaConsumer``.
public struct KafkaConsumerConfiguration: Sendable, Hashable {
    /// Where to start when the group has no committed offset for a partition.
    public enum OffsetReset: String, Sendable, Hashable {
        case earliest, latest, error
    }

    /// Which transactional records a consumer returns.
    public enum IsolationLevel: String, Sendable, Hashable {
        /// Only committed transactional records (and all non-transactional ones).
        case readCommitted = "read_committed"
        /// Everything, including records of open or aborted transactions.
        case readUncommitted = "read_uncommitted"
    }

    /// Cluster address, client id and verbatim properties.
    public var common: KafkaConfiguration
    /// `group.id`: the consumer group (librdkafka's consumer needs one even when it only
    /// uses ``KafkaConsumer/assign(_:)``; it joins the group only on ``KafkaConsumer/subscribe(topics:)``).
    public var groupID: String
    /// `auto.offset.reset`. Default `.earliest`.
    public var autoOffsetReset: OffsetReset
    /// `isolation.level`. Default `.readCommitted`.
    public var isolationLevel: IsolationLevel
    /// `enable.auto.commit`: let librdkafka commit stored offsets periodically.
    /// Default `false`: callers commit explicitly (or through a transaction).
    public var enableAutoCommit: Bool
    /// `enable.auto.offset.store`: store each returned message's offset automatically.
    /// Default `false`: callers store offsets of what they have processed.
    public var enableAutoOffsetStore: Bool
    /// `enable.partition.eof`: report reaching the end of a partition. Default `false`.
    public var enablePartitionEOF: Bool
    /// `fetch.queue.backoff.ms`: how long a partition's fetching pauses once its local
    /// queue holds more than `queued.min.messages`. Default 10 ms (librdkafka: 1000 ms):
    /// brokers that answer a fetch with more than `max.partition.fetch.bytes` overflow the
    /// queue with one response, and a 1 s pause then caps throughput at a few hundred
    /// thousand records per second.
    public var fetchQueueBackoff: Duration

    public init(
        common: KafkaConfiguration,
        groupID: String,
        autoOffsetReset: OffsetReset = .earliest,
        isolationLevel: IsolationLevel = .readCommitted,
        enableAutoCommit: Bool = false,
        enableAutoOffsetStore: Bool = false,
        enablePartitionEOF: Bool = false,
        fetchQueueBackoff: Duration = .milliseconds(10)
    ) {
        self.common = common
        self.groupID = groupID
        self.autoOffsetReset = autoOffsetReset
        self.isolationLevel = isolationLevel
        self.enableAutoCommit = enableAutoCommit
        self.enableAutoOffsetStore = enableAutoOffsetStore
        self.enablePartitionEOF = enablePartitionEOF
        self.fetchQueueBackoff = fetchQueueBackoff
    }

    var librdkafkaProperties: [(String, String)] {
        var result = common.typedProperties
        result.append(("group.id", groupID))
        result.append(("auto.offset.reset", autoOffsetReset.rawValue))
        result.append(("isolation.level", isolationLevel.rawValue))
        result.append(("enable.auto.commit", enableAutoCommit ? "true" : "false"))
        result.append(("enable.auto.offset.store", enableAutoOffsetStore ? "true" : "false"))
        result.append(("enable.partition.eof", enablePartitionEOF ? "true" : "false"))
        result.append(("fetch.queue.backoff.ms", String(fetchQueueBackoff.milliseconds)))
        result.append(contentsOf: common.properties.sorted { $0.key < $1.key })
        return result
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// ``milliseconds`` clamped to `Int32` (librdkafka's timeout type).
    var timeoutMilliseconds: Int32 { Int32(clamping: milliseconds) }
}
