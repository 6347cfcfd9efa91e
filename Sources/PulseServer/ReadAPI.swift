import AudienceMetrics
import AudiencePulse
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import NIOCore

/// The read side over the metrics topic: `GET /v1/segments`,
/// `GET /v1/segments/{id}/metrics`, `GET /v1/stream` (Server-Sent Events) and the
/// dashboard at `/` (its files are compiled into the binary). See docs/api.md.
struct ReadAPI: Sendable {
    let store: MetricsStore
    let reader: MetricsTopicReader?
    let token: String?

    /// JSON shape of one window size's newest record in `/v1/segments`.
    struct Latest: Encodable {
        var size: String
        var start_ms: Int64
        var end_ms: Int64
        var final: Bool
        var events: Int64
        var unique_users: Int64
        var engagement_rate: Double?
        var conversion_rate: Double?
        var anomaly: Bool?
    }

    struct SegmentEntry: Encodable {
        var segment: String
        var windows: [Latest]
    }

    struct SegmentsAnswer: Encodable {
        var segments: [SegmentEntry]
        var windows: [String]
        var caught_up: Bool
    }

    func add(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in Self.file(PackageResources.index_html, type: "text/html; charset=utf-8") }
        router.get("dashboard.js") { _, _ in Self.file(PackageResources.dashboard_js, type: "text/javascript; charset=utf-8") }
        router.get("dashboard.css") { _, _ in Self.file(PackageResources.dashboard_css, type: "text/css; charset=utf-8") }
        let api = router.group("v1")
        if let token { api.add(middleware: TokenCheck(token: token)) }
        api.get("segments") { request, _ in try segments(request) }
        api.get("segments/:id/metrics") { request, context in try metrics(request, context: context) }
        api.get("stream") { request, _ in stream(request) }
    }

    private func segments(_ request: Request) throws -> Response {
        let search = request.uri.queryParameters["q"].map(String.init)
        let entries = store.segments(matching: search).map { entry in
            SegmentEntry(segment: entry.segment, windows: entry.latest.map { h in
                Latest(size: h.window.size, start_ms: h.window.start_ms, end_ms: h.window.end_ms, final: h.final, events: h.events,
                       unique_users: h.users.unique, engagement_rate: h.engagement.rate, conversion_rate: h.conversion?.rate, anomaly: h.trend?.anomaly)
            })
        }
        let answer = SegmentsAnswer(segments: entries, windows: store.windowSizes, caught_up: reader?.isCaughtUp ?? true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Collector.json(.ok, String(decoding: try encoder.encode(answer), as: UTF8.self))
    }

    private func metrics(_ request: Request, context: BasicRequestContext) throws -> Response {
        // Segment names contain `=` and `,`: clients percent-encode them in the path.
        let raw = try context.parameters.require("id")
        let segment = raw.removingPercentEncoding ?? raw
        let query = request.uri.queryParameters
        let window = query["window"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        var bounds: [Int64] = []
        for (name, fallback) in [("from", Int64.min), ("to", Int64.max)] {
            guard let text = query[name[...]].map(String.init), !text.isEmpty else {
                bounds.append(fallback)
                continue
            }
            guard let time = Int64(text) ?? Array(text.utf8).withUnsafeBytes({ Timestamp.parseRFC3339($0) }) else {
                return Self.error(.badRequest, "\(name) must be epoch milliseconds or an RFC 3339 time, not '\(text)'")
            }
            bounds.append(time)
        }
        guard let answer = store.records(segment: segment, window: window, from: bounds[0], to: bounds[1]) else {
            return Self.error(.notFound, "no records for segment '\(segment)' (see /v1/segments)")
        }
        let body = #"{"segment":\#(Collector.jsonString(segment)),"window":\#(Collector.jsonString(answer.window)),"records":["#
            + answer.records.joined(separator: ",") + "]}"
        return Collector.json(.ok, body)
    }

    /// Every new or updated record as an SSE `record` event (`?segment=` filters), with a
    /// comment line every 15 s so idle connections stay open and closed ones are noticed.
    private func stream(_ request: Request) -> Response {
        let segment = request.uri.queryParameters["segment"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let records = store.subscribe(segment: segment)
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: "retry: 2000\n: connected\n\n"))
            for await json in records {
                try await writer.write(ByteBuffer(string: json.isEmpty ? ": keep-alive\n\n" : "event: record\ndata: \(json)\n\n"))
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: body)
    }

    static func file(_ bytes: [UInt8], type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Collector.json(status, #"{"error":\#(Collector.jsonString(message))}"#)
    }
}

/// Requires the read API token: `Authorization: Bearer <token>` or `?token=<token>` (for
/// EventSource, which cannot send headers). Compared in constant time.
struct TokenCheck: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var presented = request.uri.queryParameters["token"].map(String.init)
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") { presented = String(header.dropFirst("Bearer ".count)) }
        guard let presented, Collector.constantTimeEquals(Array(token.utf8), Array(presented.utf8)) else {
            var response = ReadAPI.error(.unauthorized, "a valid token is required (Authorization: Bearer <token>, or ?token=)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }
}
