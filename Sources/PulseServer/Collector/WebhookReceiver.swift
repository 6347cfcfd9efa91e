import AudienceMetrics
import AudiencePulse
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// `POST /v1/webhooks/{source}`: signed third-party payloads, verified (HMAC-SHA256 over
/// `<timestamp>.<body>`, constant-time comparison, timestamp within the tolerance, no
/// signature twice), mapped to contract events and written like `/v1/events`.
final class WebhookReceiver: Sendable {
    private let sources: [String: WebhookSource]
    private let collector: Collector
    /// Signatures accepted within their source's tolerance → when they may be forgotten.
    private let seen = Mutex<[String: Int64]>([:])

    init(sources: [String: WebhookSource], collector: Collector) {
        self.sources = sources
        self.collector = collector
    }

    func handle(_ request: Request, context: some RequestContext) async throws -> Response {
        let name = context.parameters.get("source") ?? ""
        let response = await respond(request, name: name)
        collector.metrics.request(route: "/v1/webhooks/\(sources[name] == nil ? "unknown" : name)", status: Int(response.status.code))
        return response
    }

    private func respond(_ request: Request, name: String) async -> Response {
        guard let source = sources[name] else { return Collector.json(.notFound, #"{"error":"no webhook source named \#(Collector.jsonString(name))"}"#) }
        let body: [UInt8]
        do {
            body = Array(buffer: try await request.body.collect(upTo: collector.configuration.maxBodyBytes))
        } catch {
            return Collector.json(.contentTooLarge, #"{"error":"the body is larger than \#(collector.configuration.maxBodyBytes) bytes"}"#)
        }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        guard let stamp = request.headers[HTTPField.Name(source.timestampHeader) ?? .date].flatMap({ Int64($0) }) else {
            return unauthorized("missing or non-numeric \(source.timestampHeader) header (Unix seconds)")
        }
        guard abs(now - stamp * 1000) <= source.toleranceMilliseconds else {
            return unauthorized("the timestamp is outside the tolerance of \(source.toleranceMilliseconds / 1000) s")
        }
        guard var presented = request.headers[HTTPField.Name(source.signatureHeader) ?? .date] else {
            return unauthorized("missing \(source.signatureHeader) header")
        }
        if presented.hasPrefix("sha256=") { presented.removeFirst("sha256=".count) }
        var signed = Array("\(stamp).".utf8)
        signed += body
        let expected = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: source.secret))
        let expectedHex = Array(expected.map { String(format: "%02x", $0) }.joined().utf8)
        guard Collector.constantTimeEquals(expectedHex, Array(presented.lowercased().utf8)) else {
            return unauthorized("the signature does not match")
        }
        let replayed = seen.withLock { seen -> Bool in
            seen = seen.filter { $0.value > now }
            let key = "\(name)|\(presented.lowercased())"
            if seen[key] != nil { return true }
            seen[key] = now + source.toleranceMilliseconds
            return false
        }
        if replayed { return Collector.json(.conflict, #"{"error":"this signed request was already received (replay)"}"#) }
        let events: [[UInt8]]
        do {
            events = try source.events(from: body)
        } catch {
            return Collector.json(.badRequest, #"{"error":\#(Collector.jsonString("the payload cannot be mapped: \(error)"))}"#)
        }
        // The mapped events go through the same validation and delivery as /v1/events.
        let ndjson = events.map { $0.filter { $0 != 0x0A } }.joined(separator: [0x0A])
        return await collector.accept(body: Array(ndjson), ndjson: true, source: "webhook:\(name)")
    }

    private func unauthorized(_ message: String) -> Response {
        Collector.json(.unauthorized, #"{"error":\#(Collector.jsonString(message))}"#)
    }
}
