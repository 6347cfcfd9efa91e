import CRdKafka
import Foundation
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
    /// Destroy the handle on a thread of its own, so the last release does not wait for it
    /// (librdkafka's destroy can wait up to 1 s for the client's main thread to wake up).
    let destroysInBackground: Atomic<Bool>

    /// - Parameter destroysInBackground: known at creation (admin clients, which have
    ///   nothing left to deliver once their calls returned); a consumer may also decide
    ///   later (``KafkaConsumer/destroyInBackgroundWhenReleased()``).
    init(kind: rd_kafka_type_t, properties: [(String, String)], callbacks: RDKafkaCallbacks, destroysInBackground: Bool = false) throws(KafkaError) {
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
        self.destroysInBackground = Atomic(destroysInBackground)
    }

    deinit {
        let doomed = Doomed(
            handle: handle, callbacks: callbacks,
            flags: kind == RD_KAFKA_CONSUMER && !consumerClosed.load(ordering: .acquiring) ? Int32(RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE) : 0)
        guard destroysInBackground.load(ordering: .acquiring) else { return doomed.destroy() }
        let thread = Thread { doomed.destroy() }
        thread.name = "rdkafka-destroy"
        thread.start()
    }

    /// A handle on its way out, with the callback context librdkafka may still call while
    /// it terminates. `@unchecked Sendable`: nothing else refers to the handle any more.
    private struct Doomed: @unchecked Sendable {
        let handle: OpaquePointer
        let callbacks: RDKafkaCallbacks
        let flags: Int32

        func destroy() {
            withExtendedLifetime(callbacks) { rd_kafka_destroy_flags(handle, flags) }
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
