/// Pre-rendered reference events (the event of the design notes, varied by type, user,
/// content and attributes) whose `event_id` and `timestamp` are fixed-width digit
/// fields, rewritten in place for every use: every event is new and time moves
/// forward (2 ms per event), however long the run.
public struct ReferenceCorpus: Sendable {
    public private(set) var messages: [[UInt8]]
    private let idOffsets: [Int]
    private let timeOffsets: [Int]
    static let origin: Int64 = 1_795_860_000_000

    public init(count: Int) {
        let countries = ["DE", "US", "FR", "GB", "BR", "IN", "JP"]
        let devices = ["mobile", "desktop", "tablet"]
        let sources = ["newsletter", "search", "social", "direct"]
        let plans = ["free", "pro", "team"]
        let types = ["page_view", "page_view", "page_view", "click", "like", "share", "comment", "conversion"]
        var messages: [[UInt8]] = []
        var idOffsets: [Int] = []
        var timeOffsets: [Int] = []
        for index in 0..<count {
            let head = "{\"event_id\": \"e-"
            let middle = "\", \"type\": \"\(types[index % types.count])\", \"user_id\": \"u-\(Self.user(ofMessage: index))\", \"timestamp\": "
            let tail = ", \"content_id\": \"article-\(index % 500)\", \"dwell_ms\": \(index % 9000), \"value\": 19.99, "
                + "\"attributes\": {\"country\": \"\(countries[index % 7])\", \"device\": \"\(devices[index % 3])\", "
                + "\"source\": \"\(sources[index % 4])\", \"plan\": \"\(plans[index % 3])\"}}"
            let text = head + String(repeating: "0", count: 12) + middle + String(repeating: "0", count: 13) + tail
            idOffsets.append(head.utf8.count)
            timeOffsets.append(head.utf8.count + 12 + middle.utf8.count)
            messages.append(Array(text.utf8))
        }
        self.messages = messages
        self.idOffsets = idOffsets
        self.timeOffsets = timeOffsets
    }

    /// The number in message `index`'s `user_id` ("u-<number>"): 100,003 users, each once
    /// in every 100,003 consecutive messages.
    @inline(__always)
    public static func user(ofMessage index: Int) -> Int { index &* 7919 % 100_003 }

    /// Writes sequence number `sequence` into its message and returns the message's index.
    @inline(__always)
    public mutating func prepare(_ sequence: Int) -> Int {
        let index = sequence % messages.count
        let idOffset = idOffsets[index]
        let timeOffset = timeOffsets[index]
        let time = ReferenceCorpus.origin + Int64(sequence) * 2
        messages[index].withUnsafeMutableBufferPointer { bytes in
            ReferenceCorpus.writeDigits(UInt64(sequence), into: bytes, at: idOffset, width: 12)
            ReferenceCorpus.writeDigits(UInt64(time), into: bytes, at: timeOffset, width: 13)
        }
        return index
    }

    @inline(__always)
    static func writeDigits(_ value: UInt64, into bytes: UnsafeMutableBufferPointer<UInt8>, at offset: Int, width: Int) {
        var remaining = value
        for position in stride(from: offset + width - 1, through: offset, by: -1) {
            bytes[position] = UInt8(truncatingIfNeeded: remaining % 10) + 0x30
            remaining /= 10
        }
    }
}
