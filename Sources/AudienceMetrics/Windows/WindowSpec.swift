/// An event-time window definition: tumbling (advance = size) or hopping (advance < size).
/// Windows are aligned to the Unix epoch: a 1-minute window starts on a whole minute.
public struct WindowSpec: Sendable, Hashable, CustomStringConvertible {
    /// Window length, ms.
    public let size: Int64
    /// Distance between window starts, ms (= size for tumbling windows).
    public let advance: Int64
    /// The name used in records and configuration, e.g. `1m` or `10m/1m` (size/advance).
    public let name: String

    public init(size: Int64, advance: Int64? = nil) {
        precondition(size > 0, "window size must be positive")
        let step = advance ?? size
        precondition(step > 0 && step <= size, "advance must be in 1...size")
        self.size = size
        self.advance = step
        name = step == size ? DurationText.format(size) : "\(DurationText.format(size))/\(DurationText.format(step))"
    }

    /// Parses `1m` (tumbling) or `10m/1m` (hopping: size/advance).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let size = DurationText.parse(String(parts[0])), size > 0 else { return nil }
        if parts.count == 2 {
            guard let advance = DurationText.parse(String(parts[1])), advance > 0, advance <= size else { return nil }
            self.init(size: size, advance: advance)
        } else {
            self.init(size: size)
        }
    }

    public var isTumbling: Bool { advance == size }
    public var description: String { name }

    /// Start of the last window containing `time`.
    @inline(__always)
    public func lastStart(containing time: Int64) -> Int64 {
        floorDiv(time, advance) * advance
    }

    /// Calls `body` with the start of every window containing `time`, latest first.
    @inline(__always)
    public func forEachStart(containing time: Int64, _ body: (Int64) -> Void) {
        var start = lastStart(containing: time)
        while start > time - size {
            body(start)
            start -= advance
        }
    }

    @inline(__always)
    func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }
}

/// Durations written as `250ms`, `10s`, `5m`, `1h`, `7d` (or combinations like `1h30m`).
public enum DurationText {
    /// Milliseconds, or `nil` for anything that is not a duration.
    public static func parse(_ text: String) -> Int64? {
        var total: Int64 = 0
        var number: Int64?
        var chars = Array(text.utf8)[...]
        guard !chars.isEmpty else { return nil }
        while let c = chars.first {
            if c >= 0x30 && c <= 0x39 {
                let (product, overflow) = (number ?? 0).multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                number = product + Int64(c - 0x30)
                chars = chars.dropFirst()
                continue
            }
            guard let value = number else { return nil }
            let unit: Int64
            if chars.starts(with: "ms".utf8) {
                unit = 1
                chars = chars.dropFirst(2)
            } else {
                switch c {
                case UInt8(ascii: "s"): unit = 1000
                case UInt8(ascii: "m"): unit = 60_000
                case UInt8(ascii: "h"): unit = 3_600_000
                case UInt8(ascii: "d"): unit = 86_400_000
                default: return nil
                }
                chars = chars.dropFirst()
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: unit)
            guard !overflow else { return nil }
            total += product
            number = nil
        }
        return number == nil ? total : nil
    }

    /// The shortest exact spelling: `60000` → `1m`, `90000` → `90s`, `1500` → `1500ms`.
    public static func format(_ millis: Int64) -> String {
        for (unit, suffix) in [(Int64(86_400_000), "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] where millis % unit == 0 && millis >= unit {
            return "\(millis / unit)\(suffix)"
        }
        return "\(millis)ms"
    }
}
