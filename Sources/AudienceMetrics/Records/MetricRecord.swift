/// One metric record (`audience-pulse.metrics/v1`): a segment's metrics for one window,
/// as produced to the metrics topic keyed `segment|window_start`. See
/// docs/metrics-schema.md for every field.
public struct MetricRecord: Sendable, Hashable {
    public static let schema = "audience-pulse.metrics/v1"

    public var segment: String
    public var window: WindowSpec
    public var start: Int64
    public var end: Int64
    public var isFinal: Bool
    public var events: Int64
    public var byType: [(String, Int64)]
    public var uniqueUsers: Int
    public var uniqueIsExact: Bool
    public var newUsers: Int
    public var returningUsers: Int
    public var retainedUsers: Int
    public var retentionRate: Double?
    public var engagementCount: Int64
    public var engagementRate: Double?
    public var engagementPerUser: Double?
    public var conversionCount: Int64
    public var convertingUsers: Int
    public var conversionRate: Double?
    public var revenueMicros: Int64
    public var dwellCount: UInt64
    public var dwellMean: Double?
    public var dwellP50: Double?
    public var dwellP90: Double?
    public var dwellP99: Double?
    public var sessionsStarted: Int64
    public var sessionsEngaged: Int64
    public var bounceRate: Double?
    public var meanSessionDurationMs: Double?
    public var sessionDurationMs: Int64
    public var topContent: [(String, Int64)]
    public var trend: TrendValues?
    public var late: Int64
    public var duplicates: Int64
    public var invalid: Int64
    public var overflowedEvents: Int64
    /// The optional families this record carries (the others' fields are left out).
    public var metrics: MetricFamilies

    /// The Kafka record key: `segment|window_start` (window start in epoch ms, and the
    /// window name when several sizes are configured: `segment|1m|start`).
    public func key(includeWindowName: Bool) -> String {
        includeWindowName ? "\(segment)|\(window.name)|\(start)" : "\(segment)|\(start)"
    }

    /// Builds a record from a merged aggregate.
    public init(
        segment: String, window: WindowSpec, start: Int64, aggregate a: SegmentAggregate, isFinal: Bool,
        previousUniqueUsers: Int?, trend: TrendValues?, overflowedEvents: Int64, config: AggregationConfig
    ) {
        self.segment = segment
        self.window = window
        self.start = start
        end = start + window.size
        self.isFinal = isFinal
        events = a.events
        var types: [(String, Int64)] = KnownEventType.allCases.compactMap { type in
            a.knownTypes[type.rawValue] > 0 ? (type.name, a.knownTypes[type.rawValue]) : nil
        }
        types += a.otherTypes.map { ($0.key, $0.value) }
        byType = types.sorted { $0.0 < $1.0 }
        uniqueUsers = a.users.count
        uniqueIsExact = a.users.isExact
        newUsers = min(a.newUsers.count, uniqueUsers)
        returningUsers = uniqueUsers - newUsers
        let retained = a.retainedUsers.count
        retainedUsers = retained
        retentionRate = previousUniqueUsers.flatMap { $0 > 0 ? Double(retained) / Double($0) : nil }
        engagementCount = a.count(in: config.engagementTypes)
        let pageViews = a.count(.pageView)
        engagementRate = pageViews > 0 ? Double(engagementCount) / Double(pageViews) : nil
        engagementPerUser = uniqueUsers > 0 ? Double(engagementCount) / Double(uniqueUsers) : nil
        conversionCount = a.count(in: config.conversionTypes)
        convertingUsers = a.convertingUsers.count
        conversionRate = uniqueUsers > 0 ? Double(convertingUsers) / Double(uniqueUsers) : nil
        revenueMicros = a.revenueMicros
        dwellCount = a.dwell.count
        dwellMean = a.dwell.mean
        let quantiles = config.metrics.contains(.dwellQuantiles)
        dwellP50 = quantiles ? a.dwell.quantile(0.5) : nil
        dwellP90 = quantiles ? a.dwell.quantile(0.9) : nil
        dwellP99 = quantiles ? a.dwell.quantile(0.99) : nil
        sessionsStarted = a.sessionsStarted
        sessionsEngaged = a.sessionsEngaged
        bounceRate = a.sessionsStarted > 0 ? Double(a.sessionsStarted - min(a.sessionsEngaged, a.sessionsStarted)) / Double(a.sessionsStarted) : nil
        sessionDurationMs = a.sessionDurationMs
        meanSessionDurationMs = a.sessionsStarted > 0 ? Double(a.sessionDurationMs) / Double(a.sessionsStarted) : nil
        topContent = config.metrics.contains(.topContent) ? a.topContent.top(config.topContentSize).map { ($0.name, $0.count) } : []
        self.trend = trend
        late = a.late
        duplicates = a.duplicates
        invalid = a.invalid
        self.overflowedEvents = overflowedEvents
        metrics = config.metrics
    }

    public static func == (lhs: MetricRecord, rhs: MetricRecord) -> Bool { lhs.jsonBytes == rhs.jsonBytes }
    public func hash(into hasher: inout Hasher) { hasher.combine(jsonBytes) }

    /// The record as JSON, with a fixed field order and number formatting, so equal
    /// records are equal bytes.
    public var json: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// ``json`` as UTF-8, written without intermediate strings (what the metrics topic
    /// carries).
    public var jsonBytes: [UInt8] {
        var out = JSONText()
        out.open("{")
        out.field("schema", string: MetricRecord.schema)
        out.field("segment", string: segment)
        out.key("window")
        out.open("{")
        out.field("size", string: window.name)
        out.field("start", timestamp: start)
        out.field("end", timestamp: end)
        out.field("start_ms", int: start)
        out.field("end_ms", int: end)
        out.close("}")
        out.field("final", bool: isFinal)
        out.field("events", int: events)
        out.key("by_type")
        out.open("{")
        for (name, count) in byType {
            out.key(escaping: name)
            out.value(int: count)
        }
        out.close("}")
        out.key("users")
        out.open("{")
        out.field("unique", int: Int64(uniqueUsers))
        out.field("unique_exact", bool: uniqueIsExact)
        if metrics.contains(.retention) {
            out.field("new", int: Int64(newUsers))
            out.field("returning", int: Int64(returningUsers))
            out.field("retained", int: Int64(retainedUsers))
            out.field("retention_rate", double: retentionRate)
        }
        out.close("}")
        out.key("engagement")
        out.open("{")
        out.field("count", int: engagementCount)
        out.field("rate", double: engagementRate)
        out.field("per_user", double: engagementPerUser)
        out.close("}")
        if metrics.contains(.conversion) {
            out.key("conversion")
            out.open("{")
            out.field("count", int: conversionCount)
            out.field("users", int: Int64(convertingUsers))
            out.field("rate", double: conversionRate)
            out.field("revenue", micros: revenueMicros)
            out.close("}")
        }
        out.key("dwell_ms")
        out.open("{")
        out.field("count", int: Int64(dwellCount))
        out.field("mean", double: dwellMean)
        if metrics.contains(.dwellQuantiles) {
            out.field("p50", double: dwellP50)
            out.field("p90", double: dwellP90)
            out.field("p99", double: dwellP99)
        }
        out.close("}")
        if metrics.contains(.sessions) {
            out.key("sessions")
            out.open("{")
            out.field("started", int: sessionsStarted)
            out.field("engaged", int: sessionsEngaged)
            out.field("bounce_rate", double: bounceRate)
            out.field("duration_ms", int: sessionDurationMs)
            out.field("mean_duration_ms", double: meanSessionDurationMs)
            out.close("}")
        }
        if metrics.contains(.topContent) {
            out.key("top_content")
            out.open("[")
            for (name, views) in topContent {
                out.open("{")
                out.field("content_id", string: name)
                out.field("views", int: views)
                out.close("}")
            }
            out.close("]")
        }
        if metrics.contains(.trend) {
            out.key("trend")
            if let trend {
                out.open("{")
                out.field("metric", string: "events")
                out.field("previous", double: trend.previous)
                out.field("change", double: trend.change)
                out.field("change_rate", double: trend.changeRate)
                out.field("level", double: trend.level)
                out.field("forecast", double: trend.forecast)
                out.field("anomaly_score", double: trend.anomalyScore)
                out.field("anomaly", bool: trend.anomaly)
                out.close("}")
            } else {
                out.null()
            }
        }
        out.key("quality")
        out.open("{")
        out.field("late", int: late)
        out.field("duplicates", int: duplicates)
        out.field("invalid", int: invalid)
        out.field("overflowed_events", int: overflowedEvents)
        out.close("}")
        out.close("}")
        return out.bytes
    }
}

/// A tiny deterministic JSON writer (fixed order, fixed number format) into UTF-8 bytes.
public struct JSONText {
    private(set) var bytes: [UInt8] = []
    private var needsComma = false

    init(capacity: Int = 1024) { bytes.reserveCapacity(capacity) }

    mutating func open(_ bracket: Unicode.Scalar) {
        separator()
        bytes.append(UInt8(ascii: bracket))
        needsComma = false
    }

    mutating func close(_ bracket: Unicode.Scalar) {
        bytes.append(UInt8(ascii: bracket))
        needsComma = true
    }

    /// A member name written as it is: a literal that needs no escaping.
    mutating func key(_ name: StaticString) {
        separator()
        bytes.append(UInt8(ascii: "\""))
        append(name)
        append("\":")
        needsComma = false
    }

    /// A member name from data, escaped.
    mutating func key(escaping name: String) {
        separator()
        JSONText.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    private mutating func separator() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    mutating func null() {
        separator()
        append("null")
        needsComma = true
    }

    private mutating func append(_ literal: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }

    mutating func field(_ name: StaticString, string: String) {
        key(name)
        JSONText.appendString(string, to: &bytes)
        needsComma = true
    }

    /// A time in epoch milliseconds as an RFC 3339 string (``Timestamp/format(_:)``).
    mutating func field(_ name: StaticString, timestamp millis: Int64) {
        key(name)
        bytes.append(UInt8(ascii: "\""))
        Timestamp.write(millis, into: &bytes)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    mutating func field(_ name: StaticString, int: Int64) {
        key(name)
        value(int: int)
    }

    mutating func value(int: Int64) {
        bytes.appendDecimal(int)
        needsComma = true
    }

    mutating func field(_ name: StaticString, bool: Bool) {
        key(name)
        append(bool ? "true" : "false")
        needsComma = true
    }

    mutating func field(_ name: StaticString, double: Double?) {
        key(name)
        if let double, double.isFinite {
            JSONText.appendFormatted(double, to: &bytes)
        } else {
            append("null")
        }
        needsComma = true
    }

    /// Millionths as a decimal with up to six fraction digits.
    mutating func field(_ name: StaticString, micros: Int64) {
        key(name)
        JSONText.appendMicros(micros, to: &bytes)
        needsComma = true
    }

    /// A double rounded to 6 decimal places, without trailing zeros (`0.25`, `3`, `-1.5`);
    /// beyond ±9e12 rounded to a whole number, beyond ±9e18 in exponent form (`1e+30`).
    static func format(_ value: Double) -> String {
        var bytes: [UInt8] = []
        appendFormatted(value, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendFormatted(_ value: Double, to bytes: inout [UInt8]) {
        let scaled = (value * 1_000_000).rounded()
        guard abs(scaled) < 9e18 else {
            let whole = value.rounded()
            // Beyond 64-bit integers (a conversion would trap): exponent form, still a JSON number.
            guard abs(whole) < 9e18 else { return bytes.append(contentsOf: whole.description.utf8) }
            return bytes.appendDecimal(Int64(whole))
        }
        appendMicros(Int64(scaled), to: &bytes)
    }

    static func formatMicros(_ micros: Int64) -> String {
        var bytes: [UInt8] = []
        appendMicros(micros, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static func appendMicros(_ micros: Int64, to bytes: inout [UInt8]) {
        if micros < 0 { bytes.append(UInt8(ascii: "-")) }
        let magnitude = micros.magnitude
        bytes.appendDecimal(magnitude / 1_000_000)
        var fraction = magnitude % 1_000_000
        guard fraction > 0 else { return }
        var digits = 6
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        bytes.append(UInt8(ascii: "."))
        bytes.appendDecimal(fraction, minimumDigits: digits)
    }

    /// Whether `value` can be written between quotes as it is.
    private static func needsNoEscaping(_ value: String) -> Bool {
        value.utf8.allSatisfy { $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    }

    /// The escape sequence of `scalar` inside a JSON string, or nil if it stands as it is.
    private static func escape(_ scalar: Unicode.Scalar) -> String? {
        switch scalar {
        case "\"": "\\\""
        case "\\": "\\\\"
        case "\n": "\\n"
        case "\r": "\\r"
        case "\t": "\\t"
        case let c where c.value < 0x20:
            "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count) + String(c.value, radix: 16)
        default: nil
        }
    }

    /// Appends `value` as a JSON string literal (quotes, escapes).
    public static func appendString(_ value: String, to out: inout String) {
        // Most strings (segment names, content ids, field names) need no escaping: copy
        // them whole instead of scalar by scalar.
        out += "\""
        if needsNoEscaping(value) {
            out += value
        } else {
            for scalar in value.unicodeScalars {
                if let escaped = escape(scalar) { out += escaped } else { out.unicodeScalars.append(scalar) }
            }
        }
        out += "\""
    }

    /// Appends `value` as a JSON string literal (quotes, escapes) in UTF-8.
    public static func appendString(_ value: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        if needsNoEscaping(value) {
            out.append(contentsOf: value.utf8)
        } else {
            for scalar in value.unicodeScalars {
                if let escaped = escape(scalar) { out.append(contentsOf: escaped.utf8) } else { UTF8.encode(scalar) { out.append($0) } }
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
