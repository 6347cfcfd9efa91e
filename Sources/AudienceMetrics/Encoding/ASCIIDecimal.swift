extension [UInt8] {
    /// Appends `value` in decimal ASCII digits, with leading zeros up to `minimumDigits`
    /// (no intermediate string: record rendering writes many numbers).
    mutating func appendDecimal(_ value: UInt64, minimumDigits: Int = 1) {
        var digits = 1
        var power: UInt64 = 10
        while digits < 20, value >= power {
            digits += 1
            if digits < 20 { power &*= 10 }
        }
        for _ in digits..<Swift.max(minimumDigits, digits) { append(UInt8(ascii: "0")) }
        var divisor = digits == 20 ? power : power / 10
        for _ in 0..<digits {
            append(UInt8(value / divisor % 10) + UInt8(ascii: "0"))
            divisor /= 10
        }
    }

    /// Appends a signed `value` in decimal ASCII digits.
    mutating func appendDecimal(_ value: Int64) {
        if value < 0 { append(UInt8(ascii: "-")) }
        appendDecimal(value.magnitude)
    }
}
