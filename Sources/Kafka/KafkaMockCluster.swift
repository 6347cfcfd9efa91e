import CRdKafka
import Logging

/// librdkafka's in-process mock Kafka cluster, for fast tests of client behaviour and for
/// injecting protocol errors that a real broker will not produce on demand.
///
/// It speaks the Kafka protocol on loopback ports; point any client at
/// ``bootstrapServers``. It is not a substitute for tests against a real broker (its
/// Fetch never reports aborted transactions, for one).
public final class KafkaMockCluster: @unchecked Sendable {
    // @unchecked: the mock cluster API is thread-safe (each call is a request to the
    // cluster's own thread); the handles are destroyed once, in deinit.
    private let client: RDKafkaClient
    private let cluster: OpaquePointer

    /// The `bootstrap.servers` value for clients of this cluster.
    public let bootstrapServers: String

    /// Starts a mock cluster with `brokers` brokers.
    public init(brokers: Int32 = 1, logger: Logger = Logger(label: "kafka.mock")) throws(KafkaError) {
        let callbacks = RDKafkaCallbacks(logger: logger, statisticsHandler: nil, errorHandler: nil)
        client = try RDKafkaClient(kind: RD_KAFKA_PRODUCER, properties: [], callbacks: callbacks)
        guard let cluster = rd_kafka_mock_cluster_new(client.handle, brokers) else {
            throw KafkaError.invalidArgument("cannot start a mock cluster")
        }
        self.cluster = cluster
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit { rd_kafka_mock_cluster_destroy(cluster) }

    /// Creates a topic.
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "mock topic \(name)") }
    }

    /// Makes metadata answers for `topic` carry `error` (e.g. ``KafkaError/Code/unknownTopicOrPartition``);
    /// ``KafkaError/Code/noError`` clears it.
    public func setTopicError(_ topic: String, _ error: KafkaError.Code) {
        rd_kafka_mock_topic_set_error(cluster, topic, rd_kafka_resp_err_t(error.rawValue))
    }

    /// Fails the next requests with Kafka protocol API key `apiKey` (e.g. 0 = Produce,
    /// 26 = EndTxn) with `errors`, one per request, in order.
    public func pushRequestErrors(apiKey: Int16, _ errors: [KafkaError.Code]) {
        var codes = errors.map { rd_kafka_resp_err_t($0.rawValue) }
        rd_kafka_mock_push_request_errors_array(cluster, apiKey, codes.count, &codes)
    }

    /// Delays every answer of broker `id` (-1: all brokers) by `roundTripTime`.
    public func setBroker(_ id: Int32, roundTripTime: Duration) {
        _ = rd_kafka_mock_broker_set_rtt(cluster, id, Int32(clamping: roundTripTime.milliseconds))
    }

    /// Takes a broker down (its connections close, it refuses new ones) or back up.
    public func setBroker(_ id: Int32, up: Bool) {
        if up {
            _ = rd_kafka_mock_broker_set_up(cluster, id)
        } else {
            _ = rd_kafka_mock_broker_set_down(cluster, id)
        }
    }
}
