/// How trends are computed over a segment's history of final windows.
public struct TrendConfig: Sendable, Hashable {
    /// Windows of history kept per segment and window size. Default 24.
    public var historyLength: Int
    /// Smoothing of the exponentially weighted level (0…1). Default 0.3.
    public var levelAlpha: Double
    /// Holt's level smoothing. Default 0.5.
    public var holtAlpha: Double
    /// Holt's trend smoothing. Default 0.3.
    public var holtBeta: Double
    /// |robust z-score| above which a window is flagged as an anomaly. Default 3.5.
    public var anomalyThreshold: Double
    /// Windows of history needed before anomalies are scored. Default 5.
    public var minimumHistory: Int

    public init(historyLength: Int = 24, levelAlpha: Double = 0.3, holtAlpha: Double = 0.5, holtBeta: Double = 0.3,
                anomalyThreshold: Double = 3.5, minimumHistory: Int = 5) {
        self.historyLength = historyLength
        self.levelAlpha = levelAlpha
        self.holtAlpha = holtAlpha
        self.holtBeta = holtBeta
        self.anomalyThreshold = anomalyThreshold
        self.minimumHistory = minimumHistory
    }
}

/// The trend part of a metric record, for the `events` series.
public struct TrendValues: Sendable, Hashable {
    /// The previous window's value, if known.
    public var previous: Double?
    /// value − previous.
    public var change: Double?
    /// change / previous (when previous > 0).
    public var changeRate: Double?
    /// Exponentially weighted moving average including this window.
    public var level: Double
    /// Holt linear forecast of the next window (≥ 0).
    public var forecast: Double
    /// Robust z-score of this window against the history: 0.6745·(x − median)/MAD, with
    /// MAD floored at 1; `nil` until ``TrendConfig/minimumHistory`` windows are known.
    public var anomalyScore: Double?
    /// |score| above the threshold.
    public var anomaly: Bool
}

/// One segment's history for one window size, advanced by each final window in order.
/// Windows with no events for the segment count as zero.
public struct TrendState: Sendable, Hashable {
    public private(set) var lastStart: Int64?
    public private(set) var history: [Double] = []
    private var level: Double?
    private var holtLevel: Double?
    private var holtTrend: Double = 0
    /// Distinct users of recent final windows, by window start (for retention rates).
    public private(set) var recentUniques: [Int64: Int] = [:]

    public init() {}

    /// Advances by the final window starting at `start` with value `value` and `unique`
    /// users; returns the trend values for it.
    public mutating func advance(start: Int64, spec: WindowSpec, value: Double, unique: Int, config: TrendConfig) -> TrendValues {
        if let lastStart, start > lastStart + spec.advance {
            let missing = min(Int((start - lastStart) / spec.advance) - 1, config.historyLength)
            for _ in 0..<max(0, missing) { _ = step(0, config: config) }
        }
        let result = step(value, config: config)
        lastStart = start
        recentUniques[start] = unique
        let keepFrom = start - spec.size
        recentUniques = recentUniques.filter { $0.key >= keepFrom }
        return result
    }

    /// Distinct users of the final window starting at `start`, if still remembered.
    public func uniqueUsers(ofWindowStarting start: Int64) -> Int? { recentUniques[start] }

    private mutating func step(_ x: Double, config: TrendConfig) -> TrendValues {
        let previous = history.last
        var score: Double?
        if history.count >= config.minimumHistory {
            let sorted = history.sorted()
            let median = TrendState.median(sorted)
            let mad = TrendState.median(sorted.map { abs($0 - median) }.sorted())
            score = 0.6745 * (x - median) / max(mad, 1)
        }
        let newLevel = level.map { config.levelAlpha * x + (1 - config.levelAlpha) * $0 } ?? x
        level = newLevel
        if let previousLevel = holtLevel {
            let next = config.holtAlpha * x + (1 - config.holtAlpha) * (previousLevel + holtTrend)
            holtTrend = config.holtBeta * (next - previousLevel) + (1 - config.holtBeta) * holtTrend
            holtLevel = next
        } else {
            holtLevel = x
            holtTrend = 0
        }
        history.append(x)
        if history.count > config.historyLength { history.removeFirst(history.count - config.historyLength) }
        let change = previous.map { x - $0 }
        return TrendValues(
            previous: previous, change: change,
            changeRate: previous.flatMap { $0 > 0 ? (x - $0) / $0 : nil },
            level: newLevel, forecast: max(0, (holtLevel ?? x) + holtTrend),
            anomalyScore: score, anomaly: score.map { abs($0) > config.anomalyThreshold } ?? false)
    }

    static func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    // MARK: Binary form

    public func encode(into writer: inout BinaryWriter) {
        writer.write(1)
        writer.write(lastStart == nil ? 0 : 1)
        writer.writeSigned(lastStart ?? 0)
        writer.writeVarint(history.count)
        for value in history { writer.writeDouble(value) }
        writer.write(level == nil ? 0 : 1)
        writer.writeDouble(level ?? 0)
        writer.write(holtLevel == nil ? 0 : 1)
        writer.writeDouble(holtLevel ?? 0)
        writer.writeDouble(holtTrend)
        writer.writeVarint(recentUniques.count)
        for (start, unique) in recentUniques.sorted(by: { $0.key < $1.key }) {
            writer.writeSigned(start)
            writer.writeVarint(unique)
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> TrendState {
        try reader.expectVersion(1, of: "trend state")
        var state = TrendState()
        let hasStart = try reader.read() == 1
        let start = try reader.readSigned()
        state.lastStart = hasStart ? start : nil
        let count = try reader.readCount(limit: 1 << 16)
        for _ in 0..<count { state.history.append(try reader.readDouble()) }
        let hasLevel = try reader.read() == 1
        let level = try reader.readDouble()
        state.level = hasLevel ? level : nil
        let hasHolt = try reader.read() == 1
        let holt = try reader.readDouble()
        state.holtLevel = hasHolt ? holt : nil
        state.holtTrend = try reader.readDouble()
        let uniques = try reader.readCount(limit: 1 << 16)
        for _ in 0..<uniques { state.recentUniques[try reader.readSigned()] = try reader.readInt() }
        return state
    }
}
