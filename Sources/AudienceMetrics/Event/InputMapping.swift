/// Where the contract's fields come from in the source's JSON.
///
/// Each field lists candidate paths (dot-separated, e.g. `properties.content_id`) tried
/// in order: the first candidate present (non-null, non-empty) wins, so `userID:
/// ["userId", "anonymousId"]` falls back to the anonymous id. `attributeSources` are
/// objects whose members become attributes; nested objects are flattened with dots
/// relative to the source (`context.device.type` → `device.type`). `typeAliases`
/// rename type values (`"page"` → `"page_view"`). The mapping is compiled once into the
/// ``EventDecoder``; the per-event cost does not depend on how it was written.
public struct InputMapping: Sendable, Hashable {
    public var eventID: [String]
    public var type: [String]
    public var userID: [String]
    public var timestamp: [String]
    public var contentID: [String]
    public var dwellMs: [String]
    public var value: [String]
    public var sessionID: [String]
    public var attributeSources: [String]
    public var typeAliases: [String: String]

    public init(
        eventID: [String] = ["event_id"],
        type: [String] = ["type"],
        userID: [String] = ["user_id"],
        timestamp: [String] = ["timestamp"],
        contentID: [String] = ["content_id"],
        dwellMs: [String] = ["dwell_ms"],
        value: [String] = ["value"],
        sessionID: [String] = ["session_id"],
        attributeSources: [String] = ["attributes"],
        typeAliases: [String: String] = [:]
    ) {
        self.eventID = eventID
        self.type = type
        self.userID = userID
        self.timestamp = timestamp
        self.contentID = contentID
        self.dwellMs = dwellMs
        self.value = value
        self.sessionID = sessionID
        self.attributeSources = attributeSources
        self.typeAliases = typeAliases
    }

    /// The Audience Pulse event contract itself (`event_id`, `type`, `user_id`, ...).
    public static let contract = InputMapping()

    /// Segment-spec events (track, page and screen calls):
    /// `messageId` → event_id; `event`, else `type` → type; `userId`, else `anonymousId` →
    /// user_id; `timestamp`; `properties.content_id`, else `properties.path` → content_id;
    /// `properties.dwell_ms`; `properties.revenue`, else `properties.value` → value;
    /// `context.session_id`; members of `properties` and `context` → attributes; type
    /// aliases `page`/`screen` → `page_view`, `Order Completed` → `conversion`,
    /// `Session Started`/`Session Ended` → `session_start`/`session_end`.
    public static let segment = InputMapping(
        eventID: ["messageId"],
        type: ["event", "type"],
        userID: ["userId", "anonymousId"],
        timestamp: ["timestamp"],
        contentID: ["properties.content_id", "properties.path"],
        dwellMs: ["properties.dwell_ms"],
        value: ["properties.revenue", "properties.value"],
        sessionID: ["context.session_id"],
        attributeSources: ["properties", "context"],
        typeAliases: [
            "page": "page_view", "screen": "page_view", "Order Completed": "conversion",
            "Session Started": "session_start", "Session Ended": "session_end",
        ]
    )

    func candidates(for field: EventField) -> [String] {
        switch field {
        case .eventID: eventID
        case .type: type
        case .userID: userID
        case .timestamp: timestamp
        case .contentID: contentID
        case .dwellMs: dwellMs
        case .value: value
        case .sessionID: sessionID
        }
    }
}
