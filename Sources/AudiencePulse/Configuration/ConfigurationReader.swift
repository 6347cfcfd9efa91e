import Foundation
import AudienceMetrics

/// Reads typed values from a ``ConfigurationTree`` by dotted key, remembering which keys
/// it read (so unknown keys can be reported) and documenting every key it is asked for
/// (so the reference in docs/configuration.md is generated from the reading code).
struct ConfigurationReader {
    struct Entry: Sendable, Hashable {
        var key: String
        var type: String
        var defaultValue: String
        var meaning: String
    }

    let tree: ConfigurationTree
    private(set) var reference: [Entry] = []
    private var read: Set<String> = []

    init(tree: ConfigurationTree) { self.tree = tree }

    private func node(at key: String) -> ConfigurationTree? {
        var current: ConfigurationTree? = tree
        for component in key.split(separator: ".") { current = current?[String(component)] }
        if case .null = current { return nil }
        return current
    }

    private mutating func document(_ key: String, _ type: String, _ defaultValue: String, _ meaning: String) {
        read.insert(key)
        reference.append(Entry(key: key, type: type, defaultValue: defaultValue, meaning: meaning))
    }

    private func scalar(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = node(at: key) else { return nil }
        guard case .scalar(let text) = value else { throw ConfigurationError(key: key, message: "expected a single value, not a list or map") }
        return text
    }

    mutating func string(_ key: String, default defaultValue: String, _ meaning: String) throws(ConfigurationError) -> String {
        document(key, "string", defaultValue.isEmpty ? "—" : "`\(defaultValue)`", meaning)
        let value = try scalar(key) ?? defaultValue
        return value
    }

    mutating func choice(_ key: String, default defaultValue: String, _ choices: [String], _ meaning: String) throws(ConfigurationError) -> String {
        document(key, choices.map { "`\($0)`" }.joined(separator: " \\| "), "`\(defaultValue)`", meaning)
        let value = try scalar(key) ?? defaultValue
        guard choices.contains(value) else {
            throw ConfigurationError(key: key, message: "'\(value)' is not one of \(choices.joined(separator: ", "))")
        }
        return value
    }

    mutating func integer(_ key: String, default defaultValue: Int, range: ClosedRange<Int>, _ meaning: String) throws(ConfigurationError) -> Int {
        document(key, "integer", "`\(defaultValue)`", meaning)
        guard let text = try scalar(key) else { return defaultValue }
        guard let value = Int(text.replacingOccurrences(of: "_", with: "")), range.contains(value) else {
            throw ConfigurationError(key: key, message: "'\(text)' is not an integer in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    mutating func number(_ key: String, default defaultValue: Double, range: ClosedRange<Double>, _ meaning: String) throws(ConfigurationError) -> Double {
        document(key, "number", "`\(defaultValue)`", meaning)
        guard let text = try scalar(key) else { return defaultValue }
        guard let value = Double(text), range.contains(value) else {
            throw ConfigurationError(key: key, message: "'\(text)' is not a number in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    mutating func boolean(_ key: String, default defaultValue: Bool, _ meaning: String) throws(ConfigurationError) -> Bool {
        document(key, "boolean", "`\(defaultValue)`", meaning)
        guard let text = try scalar(key) else { return defaultValue }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigurationError(key: key, message: "'\(text)' is not true or false")
        }
    }

    /// A duration in ms: `250ms`, `5s`, `1m`, `2h`, `7d`, `1h30m`.
    mutating func duration(_ key: String, default defaultValue: String, minimum: Int64 = 0, _ meaning: String) throws(ConfigurationError) -> Int64 {
        document(key, "duration", "`\(defaultValue)`", meaning)
        let text = try scalar(key) ?? defaultValue
        guard let value = DurationText.parse(text) else {
            throw ConfigurationError(key: key, message: "'\(text)' is not a duration (write it like 250ms, 5s, 1m, 2h, 7d or 1h30m)")
        }
        guard value >= minimum else {
            throw ConfigurationError(key: key, message: "\(text) is shorter than the minimum \(DurationText.format(minimum))")
        }
        return value
    }

    mutating func stringList(_ key: String, default defaultValue: [String], _ meaning: String) throws(ConfigurationError) -> [String] {
        document(key, "list of strings", "`[\(defaultValue.joined(separator: ", "))]`", meaning)
        guard let value = node(at: key) else { return defaultValue }
        guard case .list(let items) = value else { throw ConfigurationError(key: key, message: "expected a list") }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .scalar(let text) = item else { throw ConfigurationError(key: "\(key)[\(index)]", message: "expected a single value") }
            result.append(text)
        }
        return result
    }

    /// A list of lists of strings (`[[], [country], [country, device]]`).
    mutating func nestedStringList(_ key: String, default defaultValue: [[String]], _ meaning: String) throws(ConfigurationError) -> [[String]] {
        document(key, "list of lists of strings", "`\(defaultValue.map { "[\($0.joined(separator: ", "))]" })`".replacingOccurrences(of: "\"", with: ""), meaning)
        guard let value = node(at: key) else { return defaultValue }
        guard case .list(let items) = value else { throw ConfigurationError(key: key, message: "expected a list of lists, e.g. [[], [country], [country, device]]") }
        var result: [[String]] = []
        for (index, item) in items.enumerated() {
            switch item {
            case .list(let inner):
                var names: [String] = []
                for (position, element) in inner.enumerated() {
                    guard case .scalar(let name) = element else { throw ConfigurationError(key: "\(key)[\(index)][\(position)]", message: "expected an attribute name") }
                    names.append(name)
                }
                result.append(names)
            case .scalar(let name):
                result.append([name])
            case .null, .map:
                throw ConfigurationError(key: "\(key)[\(index)]", message: "expected a list of attribute names")
            }
        }
        return result
    }

    /// Documents a key pattern (e.g. `collector.webhooks.<source>.secret`) for the reference
    /// without reading anything.
    mutating func describe(_ key: String, _ type: String, _ defaultValue: String, _ meaning: String) {
        reference.append(Entry(key: key, type: type, defaultValue: defaultValue, meaning: meaning))
    }

    /// The names under a map whose entries are read one by one by the caller (their own
    /// keys are documented with ``describe(_:_:_:_:)``); empty if the key is absent.
    func mapKeys(_ key: String) throws(ConfigurationError) -> [String] {
        guard let value = node(at: key) else { return [] }
        guard case .map(let entries) = value else { throw ConfigurationError(key: key, message: "expected a map of names to settings") }
        return entries.map(\.key)
    }

    /// A map of string → string, in file order.
    mutating func stringMap(_ key: String, _ meaning: String) throws(ConfigurationError) -> [(String, String)] {
        document(key, "map", "`{}`", meaning)
        guard let value = node(at: key) else { return [] }
        guard case .map(let entries) = value else { throw ConfigurationError(key: key, message: "expected a map of names to values") }
        var result: [(String, String)] = []
        for entry in entries {
            switch entry.value {
            case .scalar(let text): result.append((entry.key, text))
            case .null: continue
            default: throw ConfigurationError(key: "\(key).\(entry.key)", message: "expected a single value")
            }
        }
        return result
    }

    /// Every key in the tree that was not read, as dotted paths (maps read whole, like
    /// `kafka`, count as read with everything below them).
    func unknownKeys() -> [String] {
        var unknown: [String] = []
        func walk(_ node: ConfigurationTree, _ path: String) {
            if read.contains(path) { return }
            guard case .map(let entries) = node else {
                if !path.isEmpty { unknown.append(path) }
                return
            }
            if !path.isEmpty && !read.contains(where: { $0.hasPrefix(path + ".") }) {
                unknown.append(path)
                return
            }
            for entry in entries { walk(entry.value, path.isEmpty ? entry.key : "\(path).\(entry.key)") }
        }
        walk(tree, "")
        return unknown
    }

    /// The known key closest to `key` (edit distance ≤ 3), for "did you mean" hints.
    func suggestion(for key: String) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var previous = Array(0...b.count)
            for (i, ca) in a.enumerated() {
                var current = [i + 1]
                for (j, cb) in b.enumerated() { current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (ca == cb ? 0 : 1))) }
                previous = current
            }
            return previous[b.count]
        }
        let candidates = reference.map(\.key).map { ($0, distance(Array($0), Array(key))) }.filter { $0.1 <= 3 }
        return candidates.min { $0.1 < $1.1 }?.0
    }
}
