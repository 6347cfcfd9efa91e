import CRdKafka
import Logging
import Synchronization

/// Everything librdkafka's C callbacks need to reach Swift, passed to librdkafka as the
/// handle's opaque pointer. It outlives the handle: ``RDKafkaClient`` releases it only
/// after `rd_kafka_destroy` returned, so no callback can see it freed.
final class RDKafkaCallbacks: Sendable {
    let logger: Logger
    let statisticsHandler: (@Sendable (String) -> Void)?
    let errorHandler: (@Sendable (KafkaError) -> Void)?
    let rebalanceHandler: (@Sendable (KafkaRebalanceEvent) -> [KafkaTopicPartition]?)?

    /// Deliveries that failed while nobody asked for their result (fast-path sends).
    let unhandledDeliveryFailures = Atomic<Int>(0)
    let lastUnhandledDeliveryError = Mutex<KafkaError?>(nil)

    init(
        logger: Logger,
        statisticsHandler: (@Sendable (String) -> Void)?,
        errorHandler: (@Sendable (KafkaError) -> Void)?,
        rebalanceHandler: (@Sendable (KafkaRebalanceEvent) -> [KafkaTopicPartition]?)? = nil
    ) {
        self.logger = logger
        self.statisticsHandler = statisticsHandler
        self.errorHandler = errorHandler
        self.rebalanceHandler = rebalanceHandler
    }

    static func from(_ rk: OpaquePointer?) -> RDKafkaCallbacks? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<RDKafkaCallbacks>.fromOpaque(opaque).takeUnretainedValue()
    }

    /// Installs the C callbacks on `conf`; `self` must stay alive as long as the handle.
    func install(on conf: OpaquePointer, kind: rd_kafka_type_t) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(conf, rdkafkaLogCallback)
        rd_kafka_conf_set_error_cb(conf, rdkafkaErrorCallback)
        if statisticsHandler != nil {
            rd_kafka_conf_set_stats_cb(conf, rdkafkaStatisticsCallback)
        }
        if kind == RD_KAFKA_PRODUCER {
            rd_kafka_conf_set_dr_msg_cb(conf, rdkafkaDeliveryCallback)
        } else {
            rd_kafka_conf_set_rebalance_cb(conf, rdkafkaRebalanceCallback)
        }
    }
}

private func rdkafkaLogCallback(_ rk: OpaquePointer?, _ level: Int32, _ facility: UnsafePointer<CChar>?, _ message: UnsafePointer<CChar>?) {
    guard let callbacks = RDKafkaCallbacks.from(rk) else { return }
    let baseLevel: Logger.Level
    switch level {
    case ...2: baseLevel = .critical
    case 3: baseLevel = .error
    case 4: baseLevel = .warning
    case 5: baseLevel = .notice
    case 6: baseLevel = .info
    default: baseLevel = .debug
    }
    var logLevel = baseLevel
    let text = message.map { String(cString: $0) } ?? ""
    let facilityText = facility.map { String(cString: $0) } ?? ""
    // One passthrough map serves producers and consumers alike, so "consumer property
    // ignored by this producer" (and vice versa) is expected, not a warning.
    if facilityText == "CONFWARN" && text.contains("will be ignored by this") { logLevel = .debug }
    guard callbacks.logger.logLevel <= logLevel else { return }
    let client = rk.map { String(cString: rd_kafka_name($0)) } ?? ""
    callbacks.logger.log(
        level: logLevel, "\(text)",
        metadata: ["kafka.facility": "\(facilityText)", "kafka.client": "\(client)"],
        source: "librdkafka")
}

private func rdkafkaErrorCallback(_ rk: OpaquePointer?, _ err: Int32, _ reason: UnsafePointer<CChar>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let callbacks = RDKafkaCallbacks.from(rk) else { return }
    let code = rd_kafka_resp_err_t(err)
    var error = KafkaError(code, context: reason.map { String(cString: $0) } ?? "")
    if code == RD_KAFKA_RESP_ERR__FATAL, let rk {
        // The real cause of a fatal error is kept separately by librdkafka.
        var buffer = [CChar](repeating: 0, count: 512)
        let original = rd_kafka_fatal_error(rk, &buffer, buffer.count)
        error = KafkaError(original, context: buffer.decodedCString)
        error.isFatal = true
    }
    callbacks.logger.debug("librdkafka reported \(error)")
    callbacks.errorHandler?(error)
}

private func rdkafkaStatisticsCallback(_ rk: OpaquePointer?, _ json: UnsafeMutablePointer<CChar>?, _ length: Int, _ opaque: UnsafeMutableRawPointer?) -> Int32 {
    guard let callbacks = RDKafkaCallbacks.from(rk), let json else { return 0 }
    let text = String(decoding: UnsafeRawBufferPointer(start: json, count: length), as: UTF8.self)
    callbacks.statisticsHandler?(text)
    return 0  // librdkafka frees the JSON
}

private func rdkafkaDeliveryCallback(_ rk: OpaquePointer?, _ message: UnsafePointer<rd_kafka_message_t>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let message else { return }
    // The common case, a delivered record nobody waits for, builds nothing: no report,
    // no topic name (a `String` on the heap for names over 15 bytes).
    if let completion = message.pointee._private {
        Unmanaged<KafkaDeliveryCompletion>.fromOpaque(completion).takeRetainedValue().handler(deliveryResult(message))
    } else if message.pointee.err != RD_KAFKA_RESP_ERR_NO_ERROR, let callbacks = RDKafkaCallbacks.from(rk) {
        let error = deliveryError(message)
        callbacks.unhandledDeliveryFailures.add(1, ordering: .relaxed)
        callbacks.lastUnhandledDeliveryError.withLock { $0 = error }
        callbacks.logger.debug("\(error)")
    }
}

private func topicName(_ message: UnsafePointer<rd_kafka_message_t>) -> String? {
    message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) }
}

private func deliveryError(_ message: UnsafePointer<rd_kafka_message_t>) -> KafkaError {
    KafkaError(message.pointee.err, context: "delivery to \(topicName(message) ?? "(no topic)") failed")
}

private func deliveryResult(_ message: UnsafePointer<rd_kafka_message_t>) -> Result<KafkaDeliveryReport, KafkaError> {
    guard message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR else { return .failure(deliveryError(message)) }
    var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
    let timestamp = rd_kafka_message_timestamp(message, &timestampType)
    return .success(
        KafkaDeliveryReport(
            topic: topicName(message) ?? "",
            partition: message.pointee.partition,
            offset: message.pointee.offset,
            timestamp: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp))
}

private func rdkafkaRebalanceCallback(_ rk: OpaquePointer?, _ err: rd_kafka_resp_err_t, _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, _ opaque: UnsafeMutableRawPointer?) {
    guard let rk else { return }
    let callbacks = RDKafkaCallbacks.from(rk)
    // NULL when the group's protocol cannot be asked for (the handle closing, as on a
    // revocation at close); then the eager calls, as for a group that never chose one (a
    // cooperative group refuses them with an error, which is logged).
    let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
    let list = partitions.map { KafkaTopicPartition.array(from: $0) } ?? []
    let logger = callbacks?.logger
    if err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
        let chosen = callbacks?.rebalanceHandler?(.assigned(list))
        let assignment = chosen.map { KafkaTopicPartition.makeList($0) } ?? partitions
        defer { if chosen != nil, let assignment { rd_kafka_topic_partition_list_destroy(assignment) } }
        if cooperative {
            if let error = rd_kafka_incremental_assign(rk, assignment) {
                logger?.warning("\(KafkaError(consuming: error, context: "incremental assign failed"))")
            }
        } else {
            let code = rd_kafka_assign(rk, assignment)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { logger?.warning("\(KafkaError(code, context: "assign failed"))") }
        }
    } else {
        let lost = rd_kafka_assignment_lost(rk) != 0
        _ = callbacks?.rebalanceHandler?(lost ? .lost(list) : .revoked(list))
        if cooperative {
            if let error = rd_kafka_incremental_unassign(rk, partitions) {
                logger?.warning("\(KafkaError(consuming: error, context: "incremental unassign failed"))")
            }
        } else {
            let code = rd_kafka_assign(rk, nil)
            if code != RD_KAFKA_RESP_ERR_NO_ERROR { logger?.warning("\(KafkaError(code, context: "unassign failed"))") }
        }
    }
}

/// The per-message box that carries an awaiting sender's completion through librdkafka
/// (as the message's opaque pointer) to the delivery-report callback.
final class KafkaDeliveryCompletion: Sendable {
    let handler: @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void
    init(_ handler: @escaping @Sendable (Result<KafkaDeliveryReport, KafkaError>) -> Void) {
        self.handler = handler
    }
}
