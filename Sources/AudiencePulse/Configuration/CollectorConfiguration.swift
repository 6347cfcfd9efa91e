/// The HTTP collector's settings (`collector.*`).
public struct CollectorConfiguration: Sendable {
    /// Whether `pulse serve` answers `/v1/events`.
    public var enabled: Bool
    /// Topic accepted events are produced to (default: the input topic).
    public var topic: String
    /// API key name → key. A request names its key with `Authorization: Bearer …`.
    public var apiKeys: [String: String]
    /// Accept requests without a key (for loopback demos).
    public var allowAnonymous: Bool
    public var maxBodyBytes: Int
    public var maxEventsPerRequest: Int
    /// How long a request waits for the broker to acknowledge its events before 503.
    public var deliveryTimeout: Int64
    /// Give events without `event_id` a generated one.
    public var generateEventIDs: Bool
    /// Stamp events without `timestamp` with the time they were received.
    public var defaultTimestamp: Bool
    /// Origins allowed to call the collector from a browser (`*` for any).
    public var allowedOrigins: [String]
    /// Signed webhook sources by name (`/v1/webhooks/{name}`).
    public var webhooks: [String: WebhookSource]
}

extension PulseConfiguration {
    static func readCollector(_ r: inout ConfigurationReader, inputTopic: String) throws(ConfigurationError) -> CollectorConfiguration {
        let enabled = try r.boolean("collector.enabled", default: true, "Serve `POST /v1/events` (the HTTP collector) in `pulse serve`.")
        let topic = try r.string("collector.topic", default: "", "Topic the collector writes to; empty: `topics.input`.")
        var keys: [String: String] = [:]
        for (name, key) in try r.stringMap("collector.api_keys", "API keys by name, e.g. `web: …`; clients send `Authorization: Bearer <key>`. Set them from the environment (`PULSE_COLLECTOR__API_KEYS__WEB=…`); they are never logged.") {
            guard key.utf8.count >= 16 else {
                throw ConfigurationError(key: "collector.api_keys.\(name)", message: "an API key needs at least 16 characters")
            }
            keys[name] = key
        }
        return CollectorConfiguration(
            enabled: enabled,
            topic: topic.isEmpty ? inputTopic : topic,
            apiKeys: keys,
            allowAnonymous: try r.boolean("collector.allow_anonymous", default: false, "Accept requests without an API key (only for demos on loopback)."),
            maxBodyBytes: try r.integer("collector.max_body_bytes", default: 1_048_576, range: 1_024...104_857_600, "Largest request body, bytes; larger requests get 413."),
            maxEventsPerRequest: try r.integer("collector.max_events_per_request", default: 1_000, range: 1...100_000, "Most events in one request; more get 413."),
            deliveryTimeout: try r.duration("collector.delivery_timeout", default: "5s", minimum: 100, "How long a request waits for the broker to acknowledge its events; then 503 with Retry-After (nothing is acknowledged that was not written)."),
            generateEventIDs: try r.boolean("collector.generate_event_ids", default: false, "Give events without `event_id` a generated one (a client retry then counts twice)."),
            defaultTimestamp: try r.boolean("collector.default_timestamp", default: false, "Stamp events without `timestamp` with the time they were received."),
            allowedOrigins: try r.stringList("collector.cors.allowed_origins", default: [], "Origins allowed to send events from a browser (`*`: any)."),
            webhooks: try readWebhooks(&r))
    }
}
