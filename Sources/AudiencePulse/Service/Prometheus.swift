import Synchronization

/// A Prometheus histogram of durations with fixed bucket bounds. Any thread may observe;
/// observations are per batch or per round of records, not per event, so a lock is cheap.
public final class LatencyHistogram: Sendable {
    private struct State {
        var counts: [Int]
        var count = 0
        var sum = 0.0
    }

    /// Upper bounds in seconds (the `le` labels), ascending; `+Inf` is implied.
    public let bounds: [Double]
    private let state: Mutex<State>

    /// Bounds from 1 ms to 60 s, enough for processing and end-to-end delays.
    public static let defaultBounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    public init(bounds: [Double] = LatencyHistogram.defaultBounds) {
        self.bounds = bounds
        state = Mutex(State(counts: Array(repeating: 0, count: bounds.count)))
    }

    /// Records one observation of `seconds` (negative values count as zero).
    public func observe(seconds: Double) {
        let value = max(0, seconds)
        let index = bounds.firstIndex { value <= $0 }
        state.withLock { state in
            if let index { state.counts[index] += 1 }
            state.count += 1
            state.sum += value
        }
    }

    /// Records one observation in milliseconds.
    public func observe(milliseconds: Int64) { observe(seconds: Double(milliseconds) / 1000) }

    /// Cumulative counts per bound (as Prometheus exposes them), the total count and the sum in seconds.
    public var snapshot: (cumulative: [Int], count: Int, sum: Double) {
        let copy = state.withLock { $0 }
        var running = 0
        let cumulative = copy.counts.map { count in
            running += count
            return running
        }
        return (cumulative, copy.count, copy.sum)
    }
}

/// Writes the Prometheus text exposition format (version 0.0.4).
public struct PrometheusWriter {
    public private(set) var text = ""
    private var described = Set<String>()

    public init() {}

    /// A counter or gauge sample; `help` and `type` are written once per metric name.
    public mutating func sample(_ name: String, type: String, help: String, labels: [(String, String)] = [], value: Double) {
        describe(name, type: type, help: help)
        text += name + Self.labelText(labels) + " " + Self.number(value) + "\n"
    }

    public mutating func counter(_ name: String, help: String, labels: [(String, String)] = [], value: Int) {
        sample(name, type: "counter", help: help, labels: labels, value: Double(value))
    }

    public mutating func gauge(_ name: String, help: String, labels: [(String, String)] = [], value: Double) {
        sample(name, type: "gauge", help: help, labels: labels, value: value)
    }

    public mutating func histogram(_ name: String, help: String, labels: [(String, String)] = [], _ histogram: LatencyHistogram) {
        describe(name, type: "histogram", help: help)
        let snapshot = histogram.snapshot
        for (bound, cumulative) in zip(histogram.bounds, snapshot.cumulative) {
            text += name + "_bucket" + Self.labelText(labels + [("le", Self.number(bound))]) + " \(cumulative)\n"
        }
        text += name + "_bucket" + Self.labelText(labels + [("le", "+Inf")]) + " \(snapshot.count)\n"
        text += name + "_sum" + Self.labelText(labels) + " " + Self.number(snapshot.sum) + "\n"
        text += name + "_count" + Self.labelText(labels) + " \(snapshot.count)\n"
    }

    private mutating func describe(_ name: String, type: String, help: String) {
        guard described.insert(name).inserted else { return }
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    private static func labelText(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
    }

    private static func escape(_ value: String) -> String {
        var result = ""
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.append(character)
            }
        }
        return result
    }

    private static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
