/// The event types the metrics know by name. Other types are counted under their own name.
public enum KnownEventType: Int, Sendable, CaseIterable {
    case pageView, click, like, share, comment, conversion, sessionStart, sessionEnd

    /// The contract's spelling, e.g. `page_view`.
    public var name: String {
        switch self {
        case .pageView: "page_view"
        case .click: "click"
        case .like: "like"
        case .share: "share"
        case .comment: "comment"
        case .conversion: "conversion"
        case .sessionStart: "session_start"
        case .sessionEnd: "session_end"
        }
    }

    public init?(name: String) {
        guard let match = KnownEventType.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }
}

/// Sets of event types, as a bit mask over ``KnownEventType`` (for engagement and
/// conversion definitions, which are configurable).
public struct EventTypeSet: Sendable, Hashable {
    public var mask: UInt16

    public init(_ types: [KnownEventType]) {
        mask = types.reduce(0) { $0 | (1 << UInt16($1.rawValue)) }
    }

    @inline(__always)
    public func contains(_ code: Int) -> Bool { code >= 0 && mask & (1 << UInt16(code)) != 0 }

    /// likes, shares and comments.
    public static let defaultEngagement = EventTypeSet([.like, .share, .comment])
    /// conversions.
    public static let defaultConversion = EventTypeSet([.conversion])
}
