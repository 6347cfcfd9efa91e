import AudienceMetrics
import AudiencePulse
import Foundation
import Hummingbird
import Kafka
import Logging
import Synchronization

/// `POST /v1/events`: validates events with the core's decoder and produces the valid
/// ones (idempotent producer, keyed by user id, `pulse.received_at` and `pulse.source`
/// headers). It answers 202 only after the broker acknowledged every accepted event;
/// when it cannot say so within `collector.delivery_timeout` (broker unreachable, local
/// queue full) it answers 503 with Retry-After — never acknowledging an event that was
/// not written.
public final class Collector: Sendable {
    let configuration: CollectorConfiguration
    private let mapping: InputMapping
    private let limits: EventLimits
    private let producer: KafkaProducer
    private let topic: KafkaProducerTopic
    let metrics = CollectorMetrics()
    private let logger: Logger

    public init(configuration: PulseConfiguration, logger: Logger) throws {
        self.configuration = configuration.collector
        mapping = configuration.mapping
        limits = configuration.limits
        var logger = logger
        logger[metadataKey: "component"] = "collector"
        self.logger = logger
        // The request waits at most collector.delivery_timeout; the producer keeps trying
        // longer (librdkafka's default message timeout), so an event answered with 503 may
        // still arrive: a client retry is then de-duplicated by its event_id.
        producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: configuration.kafkaConfiguration), logger: logger)
        topic = try producer.topic(configuration.collector.topic)
    }

    /// Flushes what is in flight (on shutdown).
    public func close() {
        try? producer.flush(timeout: .seconds(5))
        producer.close(timeout: .seconds(5))
    }

    /// The API key's name for an `Authorization` header, nil if it names no key.
    func source(forAuthorization header: String?) -> String? {
        guard let header, header.hasPrefix("Bearer ") else { return configuration.allowAnonymous ? "anonymous" : nil }
        let presented = Array(header.utf8.dropFirst("Bearer ".utf8.count))
        var match: String?
        // Compare with every key, each in constant time, so timing tells nothing.
        for (name, key) in configuration.apiKeys.sorted(by: { $0.key < $1.key }) where Self.constantTimeEquals(Array(key.utf8), presented) {
            match = name
        }
        return match ?? (configuration.allowAnonymous && configuration.apiKeys.isEmpty ? "anonymous" : nil)
    }

    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }

    func handle(_ request: Request, context: some RequestContext) async throws -> Response {
        let response = await respond(request, context: context)
        metrics.request(route: "/v1/events", status: Int(response.status.code))
        return response
    }

    private func respond(_ request: Request, context: some RequestContext) async -> Response {
        guard let source = source(forAuthorization: request.headers[.authorization]) else {
            return Self.json(.unauthorized, #"{"error":"a valid API key is required (Authorization: Bearer <key>)"}"#)
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch {
            return Self.json(.contentTooLarge, #"{"error":"the body is larger than \#(configuration.maxBodyBytes) bytes"}"#)
        }
        let ndjson = request.headers[.contentType]?.lowercased().hasPrefix("application/x-ndjson") ?? false
        return await accept(body: Array(buffer: body), ndjson: ndjson, source: source)
    }

    /// Validates and writes the events of `body`; the response says what became of each.
    func accept(body: [UInt8], ndjson: Bool, source: String) async -> Response {
        let began = ContinuousClock.now
        let received = Int64(Date().timeIntervalSince1970 * 1000)
        let batch: EventBatch
        do {
            batch = try EventBatch(
                body: body, ndjson: ndjson, decoder: EventDecoder(mapping: mapping, limits: limits),
                configuration: configuration, now: received)
        } catch {
            let status: HTTPResponse.Status = if case .tooManyEvents = error { .contentTooLarge } else { .badRequest }
            return Self.json(status, #"{"error":"\#(error.description)"}"#)
        }
        for rejected in batch.rejected { metrics.rejected(reason: rejected.reason) }
        guard !batch.accepted.isEmpty else {
            return Self.json(.badRequest, Self.results(batch, accepted: 0))
        }
        let outcome = await deliver(batch.accepted, source: source, received: received)
        metrics.deliveryLatency.observe(seconds: (ContinuousClock.now - began).secondsDouble)
        switch outcome {
        case .delivered:
            metrics.accepted.add(batch.accepted.count, ordering: .relaxed)
            return Self.json(.accepted, Self.results(batch, accepted: batch.accepted.count))
        case .failed(let error):
            logger.warning("could not write \(batch.accepted.count) events: \(error)")
            var response = Self.json(.serviceUnavailable, #"{"error":"the events could not be written to Kafka in time; retry (events with the same event_id are de-duplicated)"}"#)
            response.headers[.retryAfter] = "1"
            return response
        }
    }

    enum Outcome { case delivered, failed(KafkaError) }

    /// Produces every accepted event and waits for all delivery reports.
    private func deliver(_ events: [EventBatch.Accepted], source: String, received: Int64) async -> Outcome {
        let waiter = DeliveryWaiter(expected: events.count)
        let timeout = configuration.deliveryTimeout
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(timeout))
            waiter.expire()
        }
        defer { timer.cancel() }
        let headers = [KafkaHeader(name: "pulse.received_at", string: String(received)), KafkaHeader(name: "pulse.source", string: source)]
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            waiter.setContinuation(continuation)
            for (sent, event) in events.enumerated() {
                do {
                    try Array(event.key.utf8).withUnsafeBytes { key in
                        try event.value.withUnsafeBytes { value in
                            try producer.produce(to: topic, key: key, value: value, headers: headers) { result in
                                if case .failure(let error) = result { waiter.fail(error) }
                                waiter.done()
                            }
                        }
                    }
                } catch {
                    // Not enqueued (local queue full, producer failed): those never get a report.
                    waiter.fail(error as? KafkaError ?? KafkaError(code: .invalidArgument, message: "\(error)"))
                    waiter.abandon(events.count - sent)
                    return
                }
            }
        }
        if let error = waiter.firstError { return .failed(error) }
        if waiter.expired { return .failed(KafkaError(code: .timedOut, message: "no acknowledgement from the broker within \(timeout) ms")) }
        return .delivered
    }

    /// The per-event answer, in request order (accepted and rejected are each sorted by
    /// index, so they are merged, not sorted).
    static func results(_ batch: EventBatch, accepted: Int) -> String {
        var out = ""
        out.reserveCapacity(64 + batch.count * 64)
        out += #"{"accepted":"# + String(accepted) + #","rejected":"# + String(batch.rejected.count) + #","results":["#
        var nextAccepted = 0
        var nextRejected = 0
        while nextAccepted < batch.accepted.count || nextRejected < batch.rejected.count {
            if nextAccepted + nextRejected > 0 { out += "," }
            let takeAccepted = nextRejected == batch.rejected.count
                || (nextAccepted < batch.accepted.count && batch.accepted[nextAccepted].index < batch.rejected[nextRejected].index)
            if takeAccepted {
                let event = batch.accepted[nextAccepted]
                out += #"{"index":"# + String(event.index) + #","status":"accepted","event_id":"#
                JSONText.appendString(event.eventID, to: &out)
                nextAccepted += 1
            } else {
                let event = batch.rejected[nextRejected]
                out += #"{"index":"# + String(event.index) + #","status":"rejected","reason":"#
                JSONText.appendString(event.reason, to: &out)
                nextRejected += 1
            }
            out += "}"
        }
        return out + "]}"
    }

    static func jsonString(_ text: String) -> String {
        var out = ""
        JSONText.appendString(text, to: &out)
        return out
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Counts delivery reports of one request and resumes it when all arrived.
final class DeliveryWaiter: Sendable {
    private struct State {
        var remaining: Int
        var expired = false
        var error: KafkaError?
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state: Mutex<State>

    init(expected: Int) { state = Mutex(State(remaining: expected)) }

    var firstError: KafkaError? { state.withLock { $0.error } }
    /// The request stopped waiting before every report arrived.
    var expired: Bool { state.withLock { $0.expired } }

    /// Stops waiting (the deadline passed) unless every report is in.
    func expire() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.remaining > 0 else { return nil }
            state.expired = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    func setContinuation(_ continuation: CheckedContinuation<Void, Never>) {
        let resume = state.withLock { state -> Bool in
            if state.remaining <= 0 || state.expired { return true }
            state.continuation = continuation
            return false
        }
        if resume { continuation.resume() }
    }

    func fail(_ error: KafkaError) { state.withLock { if $0.error == nil { $0.error = error } } }

    func done() { abandon(1) }

    /// `count` reports will not come (or came): resumes the request when none is left.
    func abandon(_ count: Int) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.remaining -= count
            guard state.remaining <= 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }
}

/// The collector's Prometheus series.
final class CollectorMetrics: Sendable {
    let accepted = Atomic<Int>(0)
    let requests = Mutex<[String: Int]>([:])
    let rejectedByReason = Mutex<[String: Int]>([:])
    let deliveryLatency = LatencyHistogram()

    func request(route: String, status: Int) { requests.withLock { $0["\(route)|\(status)", default: 0] += 1 } }
    func rejected(reason: String) { rejectedByReason.withLock { $0[reason, default: 0] += 1 } }

    func write(into out: inout PrometheusWriter) {
        for (key, count) in requests.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "|")
            out.counter("pulse_collector_requests_total", help: "Collector HTTP requests by route and status.",
                        labels: [("route", String(parts.first ?? "")), ("status", String(parts.last ?? ""))], value: count)
        }
        out.counter("pulse_collector_events_accepted_total", help: "Events the collector wrote to Kafka (acknowledged by the broker).", value: accepted.load(ordering: .relaxed))
        for (reason, count) in rejectedByReason.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            out.counter("pulse_collector_events_rejected_total", help: "Events the collector refused, by reason.", labels: [("reason", reason)], value: count)
        }
        out.histogram("pulse_collector_produce_seconds", help: "From a request's receipt to the broker's acknowledgement of all its events.", deliveryLatency)
    }
}
