/// A position in an ``EventDecoder``'s scratch bytes: where a decoded string lives.
public struct ByteRef: Sendable, Hashable {
    public var start: Int32
    /// Length in bytes; negative when absent.
    public var count: Int32

    public static let absent = ByteRef(start: 0, count: -1)
    public var isPresent: Bool { count >= 0 }
}

/// One decoded, validated event, as the decoder's current result.
///
/// Strings are kept as ``ByteRef``s into the decoder's scratch memory and as 64-bit
/// hashes, so decoding allocates nothing; ask the decoder for a `String` only where one
/// is needed (a new segment name, a top-content entry). Valid until the next `decode`.
public struct DecodedEvent: Sendable {
    public var eventID = ByteRef.absent
    public var eventIDHash: UInt64 = 0
    public var type = ByteRef.absent
    /// ``KnownEventType`` raw value, or -1 for a type the metrics do not know by name.
    public var typeCode = -1
    public var typeHash: UInt64 = 0
    public var userID = ByteRef.absent
    public var userIDHash: UInt64 = 0
    /// Event time, epoch milliseconds.
    public var timestamp: Int64 = 0
    public var contentID = ByteRef.absent
    public var contentIDHash: UInt64 = 0
    /// Time on page in ms; -1 when absent.
    public var dwellMs: Int64 = -1
    /// Revenue in millionths (exact, so sums are associative); `nil` when absent.
    public var valueMicros: Int64?
    /// Hash of `session_id`; 0 when absent.
    public var sessionIDHash: UInt64 = 0

    public var hasContent: Bool { contentID.isPresent }
    public var knownType: KnownEventType? { KnownEventType(rawValue: typeCode) }
}
