import Foundation

/// A third-party platform that posts signed webhooks to `/v1/webhooks/{source}`
/// (`collector.webhooks.<source>.*`).
public struct WebhookSource: Sendable {
    /// The shared secret of the HMAC-SHA256 signature.
    public var secret: [UInt8]
    /// Header carrying the signature: lower-case hex of HMAC-SHA256(secret, "<timestamp>.<body>"),
    /// optionally prefixed `sha256=`.
    public var signatureHeader: String
    /// Header carrying the send time, Unix seconds; requests outside the tolerance are refused.
    public var timestampHeader: String
    public var toleranceMilliseconds: Int64
    /// Dotted path of the array of events in the payload; empty: the payload is one event.
    public var eventsPath: String
    /// Contract field (`event_id`, `type`, `user_id`, `timestamp`, `content_id`,
    /// `dwell_ms`, `value`, `session_id`, `attributes.<name>`) → dotted path in an event
    /// of the payload. Empty: events are already in the contract's shape.
    public var mapping: [(field: String, path: String)]

    /// The payload's events as contract JSON, in order. Throws if the payload is not
    /// JSON or the events path does not lead to an array.
    public func events(from body: [UInt8]) throws -> [[UInt8]] {
        let payload = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])
        let items: [Any]
        if eventsPath.isEmpty {
            items = [payload]
        } else {
            guard let array = Self.value(at: eventsPath, in: payload) as? [Any] else {
                throw MappingError(message: "no array of events at '\(eventsPath)'")
            }
            items = array
        }
        return try items.map { item in
            guard !mapping.isEmpty else { return Array(try JSONSerialization.data(withJSONObject: item, options: [.fragmentsAllowed])) }
            var event: [String: Any] = [:]
            var attributes: [String: Any] = [:]
            for (field, path) in mapping {
                guard let value = Self.value(at: path, in: item), !(value is NSNull) else { continue }
                if field.hasPrefix("attributes.") {
                    attributes[String(field.dropFirst("attributes.".count))] = value
                } else {
                    event[field] = value
                }
            }
            if !attributes.isEmpty { event["attributes"] = attributes }
            return Array(try JSONSerialization.data(withJSONObject: event))
        }
    }

    public struct MappingError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// The value at a dotted path (`data.items.0.id`: map keys and array indexes).
    static func value(at path: String, in root: Any) -> Any? {
        var current: Any? = root
        for component in path.split(separator: ".") {
            if let map = current as? [String: Any] {
                current = map[String(component)]
            } else if let array = current as? [Any], let index = Int(component), array.indices.contains(index) {
                current = array[index]
            } else {
                return nil
            }
        }
        return current
    }

    /// Contract fields a mapping may name.
    static let fields: Set<String> = ["event_id", "type", "user_id", "timestamp", "content_id", "dwell_ms", "value", "session_id"]
}

extension PulseConfiguration {
    static func readWebhooks(_ r: inout ConfigurationReader) throws(ConfigurationError) -> [String: WebhookSource] {
        r.describe("collector.webhooks.<source>.secret", "string", "—", "Shared secret of the source's HMAC-SHA256 signature (set it from the environment: `PULSE_COLLECTOR__WEBHOOKS__<SOURCE>__SECRET`). Required per source.")
        r.describe("collector.webhooks.<source>.signature_header", "string", "`x-pulse-signature`", "Header with the hex HMAC-SHA256 of `<timestamp>.<body>` (a `sha256=` prefix is allowed).")
        r.describe("collector.webhooks.<source>.timestamp_header", "string", "`x-pulse-timestamp`", "Header with the send time in Unix seconds.")
        r.describe("collector.webhooks.<source>.tolerance", "duration", "`5m`", "Requests whose timestamp is further from now are refused; a signature seen within it is refused as a replay.")
        r.describe("collector.webhooks.<source>.events_path", "string", "—", "Dotted path of the array of events in the payload; empty: the payload is one event.")
        r.describe("collector.webhooks.<source>.mapping", "map", "`{}`", "Contract field → dotted path in an event of the payload (e.g. `user_id: data.customer.id`, `attributes.country: data.country`); empty: events already have the contract's shape.")
        var sources: [String: WebhookSource] = [:]
        for name in try r.mapKeys("collector.webhooks") {
            let prefix = "collector.webhooks.\(name)"
            let secret = try r.string("\(prefix).secret", default: "", "")
            guard secret.utf8.count >= 16 else {
                throw ConfigurationError(key: "\(prefix).secret", message: "each webhook source needs a secret of at least 16 characters")
            }
            var mapping: [(field: String, path: String)] = []
            for (field, path) in try r.stringMap("\(prefix).mapping", "") {
                guard WebhookSource.fields.contains(field) || (field.hasPrefix("attributes.") && field.count > "attributes.".count) else {
                    throw ConfigurationError(key: "\(prefix).mapping.\(field)", message: "not a contract field (\(WebhookSource.fields.sorted().joined(separator: ", ")), attributes.<name>)")
                }
                mapping.append((field, path))
            }
            sources[name] = WebhookSource(
                secret: Array(secret.utf8),
                signatureHeader: try r.string("\(prefix).signature_header", default: "x-pulse-signature", "").lowercased(),
                timestampHeader: try r.string("\(prefix).timestamp_header", default: "x-pulse-timestamp", "").lowercased(),
                toleranceMilliseconds: try r.duration("\(prefix).tolerance", default: "5m", minimum: 1_000, ""),
                eventsPath: try r.string("\(prefix).events_path", default: "", ""),
                mapping: mapping)
        }
        return sources
    }
}
