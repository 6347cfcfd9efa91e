/// Why an input message is not a valid event: a machine-readable code such as
/// `malformed_json` or `missing_field:user_id`, put on dead-letter records as a header.
public struct RejectReason: Error, Sendable, Hashable, CustomStringConvertible {
    /// The code: a fixed word, optionally `:` and the contract field concerned.
    public let code: String

    public init(_ code: String) { self.code = code }
    public var description: String { code }

    /// Not syntactically valid JSON (or trailing bytes after the object).
    public static let malformedJSON = RejectReason("malformed_json")
    /// Valid JSON, but not an object.
    public static let notAnObject = RejectReason("not_an_object")
    /// Larger than `EventLimits.maxMessageBytes`.
    public static let tooLarge = RejectReason("too_large")
    /// Nested deeper than `EventLimits.maxDepth`.
    public static let tooDeep = RejectReason("too_deep")
    /// More attributes than `EventLimits.maxAttributes`.
    public static let tooManyAttributes = RejectReason("too_many_attributes")
    /// A string is not valid UTF-8 (or has an unpaired surrogate escape).
    public static let invalidUTF8 = RejectReason("invalid_utf8")
    /// The timestamp is neither RFC 3339 nor epoch milliseconds in 2000–2100.
    public static let badTimestamp = RejectReason("bad_timestamp")
    /// Fell behind the watermark by more than the allowed lateness.
    public static let late = RejectReason("late")

    /// A required field is absent, null or empty.
    public static func missingField(_ field: EventField) -> RejectReason { RejectReason("missing_field:\(field.name)") }
    /// A field appears twice (at the same mapping priority).
    public static func duplicateField(_ field: EventField) -> RejectReason { RejectReason("duplicate_field:\(field.name)") }
    /// A field has the wrong JSON type or an out-of-range value.
    public static func badField(_ field: EventField) -> RejectReason { RejectReason("bad_field:\(field.name)") }
    /// A string field is longer than `EventLimits.maxStringBytes`.
    public static func tooLong(_ field: EventField) -> RejectReason { RejectReason("too_long:\(field.name)") }
    /// An attribute value is an array or has the wrong type.
    public static let badAttribute = RejectReason("bad_field:attributes")
}

/// The fields of the event contract.
public enum EventField: Int, Sendable, CaseIterable {
    case eventID, type, userID, timestamp, contentID, dwellMs, value, sessionID

    /// The contract's name of the field.
    public var name: String {
        switch self {
        case .eventID: "event_id"
        case .type: "type"
        case .userID: "user_id"
        case .timestamp: "timestamp"
        case .contentID: "content_id"
        case .dwellMs: "dwell_ms"
        case .value: "value"
        case .sessionID: "session_id"
        }
    }
}

/// Size limits on input events; violations are validation errors, never crashes.
public struct EventLimits: Sendable, Hashable {
    /// Largest accepted message, in bytes. Default 64 KiB.
    public var maxMessageBytes: Int
    /// Most attributes per event (counting every attribute, referenced or not). Default 64.
    public var maxAttributes: Int
    /// Longest string value (ids, type, attribute values), in UTF-8 bytes. Default 512.
    public var maxStringBytes: Int
    /// Deepest nesting of objects and arrays. Default 16.
    public var maxDepth: Int

    public init(maxMessageBytes: Int = 65_536, maxAttributes: Int = 64, maxStringBytes: Int = 512, maxDepth: Int = 16) {
        self.maxMessageBytes = maxMessageBytes
        self.maxAttributes = maxAttributes
        self.maxStringBytes = maxStringBytes
        self.maxDepth = maxDepth
    }
}
