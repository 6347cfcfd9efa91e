import CRdKafka
import Logging
import Synchronization

/// Owns one librdkafka handle (`rd_kafka_t`) and the callback context it points to.
///
/// `@unchecked Sendable`: the handle is thread-safe by librdkafka's contract for every
/// function this module calls on it concurrently; it is destroyed only in `deinit`, when no
/// other reference (and so no concurrent call) can exist.
final class RDKafkaClient: @unchecked Sendable {
    let handle: OpaquePointer
    let callbacks: RDKafkaCallbacks
    let kind: rd_kafka_type_t
    /// Set by a consumer that already left its group, so destruction need not close again.
    let consumerClosed = Atomic<Bool>(false)

    init(kind: rd_kafka_type_t, properties: [(String, String)], callbacks: RDKafkaCallbacks) throws(KafkaError) {
        try KafkaLibrary.checkVersion()
        let conf = try RDKafkaClient.makeConfiguration(properties)
        callbacks.install(on: conf, kind: kind)
        var errorText = [CChar](repeating: 0, count: 512)
        // On success rd_kafka_new takes ownership of conf; on failure it stays ours.
        guard let handle = rd_kafka_new(kind, conf, &errorText, errorText.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.invalidArgument("cannot create Kafka client: \(errorText.decodedCString)")
        }
        self.handle = handle
        self.callbacks = callbacks
        self.kind = kind
    }

    deinit {
        if kind == RD_KAFKA_CONSUMER && !consumerClosed.load(ordering: .acquiring) {
            rd_kafka_destroy_flags(handle, Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE))
        } else {
            rd_kafka_destroy(handle)
        }
    }

    /// Builds an `rd_kafka_conf_t`, rejecting any invalid name or value with librdkafka's
    /// own message, which names the property.
    static func makeConfiguration(_ properties: [(String, String)]) throws(KafkaError) -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw KafkaError.invalidArgument("rd_kafka_conf_new failed")
        }
        var errorText = [CChar](repeating: 0, count: 512)
        for (name, value) in properties {
            let result = rd_kafka_conf_set(conf, name, value, &errorText, errorText.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let kind = result == RD_KAFKA_CONF_UNKNOWN ? "unknown" : "invalid"
                throw KafkaError.invalidArgument(
                    "\(kind) Kafka configuration property \"\(name)\": \(errorText.decodedCString)")
            }
        }
        return conf
    }

    /// librdkafka's instance name, e.g. `rdkafka#producer-1`.
    var name: String { String(cString: rd_kafka_name(handle)) }
}
