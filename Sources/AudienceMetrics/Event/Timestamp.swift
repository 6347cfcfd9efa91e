/// Parsing of event timestamps: RFC 3339 strings and epoch milliseconds.
public enum Timestamp {
    /// Accepted range of event times: 2000-01-01 to 2100-01-01 (epoch ms). Anything else
    /// is almost certainly seconds-instead-of-milliseconds or garbage.
    public static let validRange: ClosedRange<Int64> = 946_684_800_000...4_102_444_800_000

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`/space accepted as the
    /// separator, `z` for UTC) to epoch milliseconds; fractions beyond milliseconds are
    /// truncated. Returns `nil` for anything else.
    public static func parseRFC3339(_ s: UnsafeRawBufferPointer) -> Int64? {
        let n = s.count
        guard n >= 20 else { return nil }
        @inline(__always) func digit(_ i: Int) -> Int? {
            let c = s[i]
            return c >= 48 && c <= 57 ? Int(c - 48) : nil
        }
        @inline(__always) func number(_ i: Int, _ width: Int) -> Int? {
            var value = 0
            for k in i..<(i + width) {
                guard let d = digit(k) else { return nil }
                value = value * 10 + d
            }
            return value
        }
        guard let year = number(0, 4), s[4] == 45, let month = number(5, 2), s[7] == 45, let day = number(8, 2),
            s[10] == 84 || s[10] == 116 || s[10] == 32,
            let hour = number(11, 2), s[13] == 58, let minute = number(14, 2), s[16] == 58, let second = number(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysInMonth(year: year, month: month),
            hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var millis = 0
        if i < n, s[i] == 46 {
            i += 1
            var digits = 0
            while i < n, let d = digit(i) {
                if digits < 3 { millis = millis * 10 + d }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<max(digits, 3) { millis *= 10 }
        }
        guard i < n else { return nil }
        var offsetMinutes = 0
        switch s[i] {
        case 90, 122:  // Z z
            i += 1
        case 43, 45:  // + -
            guard n - i == 6, let oh = number(i + 1, 2), s[i + 3] == 58, let om = number(i + 4, 2), oh < 24, om < 60 else { return nil }
            offsetMinutes = (oh * 60 + om) * (s[i] == 45 ? -1 : 1)
            i += 6
        default:
            return nil
        }
        guard i == n else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59)) - Int64(offsetMinutes * 60)
        return seconds * 1000 + Int64(millis)
    }

    /// Formats epoch milliseconds as RFC 3339 UTC with milliseconds:
    /// `2026-11-28T10:15:30.250Z`.
    public static func format(_ millis: Int64) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        write(millis, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends ``format(_:)``'s text as UTF-8 (no intermediate strings).
    public static func write(_ millis: Int64, into bytes: inout [UInt8]) {
        let seconds = millis >= 0 ? millis / 1000 : (millis - 999) / 1000
        let ms = Int(millis - seconds * 1000)
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = civilFromDays(Int(days))
        func pad(_ value: Int, _ width: Int, then separator: UInt8) {
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.appendDecimal(UInt64(value.magnitude), minimumDigits: width)
            bytes.append(separator)
        }
        pad(year, 4, then: UInt8(ascii: "-"))
        pad(month, 2, then: UInt8(ascii: "-"))
        pad(day, 2, then: UInt8(ascii: "T"))
        pad(secondOfDay / 3600, 2, then: UInt8(ascii: ":"))
        pad(secondOfDay / 60 % 60, 2, then: UInt8(ascii: ":"))
        pad(secondOfDay % 60, 2, then: UInt8(ascii: "."))
        pad(ms, 3, then: UInt8(ascii: "Z"))
    }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
