import Foundation
import Yams

/// A configuration document as a plain tree of maps, lists and scalars, with the
/// `PULSE_…` environment overrides applied.
indirect enum ConfigurationTree: Sendable, Hashable {
    case map([(key: String, value: ConfigurationTree)])
    case list([ConfigurationTree])
    case scalar(String)
    case null

    static func == (lhs: ConfigurationTree, rhs: ConfigurationTree) -> Bool {
        switch (lhs, rhs) {
        case (.map(let a), .map(let b)): a.map(\.key) == b.map(\.key) && a.map(\.value) == b.map(\.value)
        case (.list(let a), .list(let b)): a == b
        case (.scalar(let a), .scalar(let b)): a == b
        case (.null, .null): true
        default: false
        }
    }

    func hash(into hasher: inout Hasher) {
        switch self {
        case .map(let entries):
            for entry in entries {
                hasher.combine(entry.key)
                hasher.combine(entry.value)
            }
        case .list(let items): hasher.combine(items)
        case .scalar(let text): hasher.combine(text)
        case .null: hasher.combine(0)
        }
    }

    /// Parses YAML; an empty document is an empty map.
    static func parse(yaml: String, file: String) throws(ConfigurationError) -> ConfigurationTree {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationError(key: file, message: "not valid YAML: \(error)")
        }
        guard let node else { return .map([]) }
        return try convert(node, path: "")
    }

    private static func convert(_ node: Node, path: String) throws(ConfigurationError) -> ConfigurationTree {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain && ["~", "null", "Null", "NULL", ""].contains(scalar.string) { return .null }
            return .scalar(scalar.string)
        case .sequence(let sequence):
            var items: [ConfigurationTree] = []
            for (index, item) in sequence.enumerated() { items.append(try convert(item, path: "\(path)[\(index)]")) }
            return .list(items)
        case .mapping(let mapping):
            var entries: [(key: String, value: ConfigurationTree)] = []
            for (keyNode, valueNode) in mapping {
                guard let key = keyNode.string else {
                    throw ConfigurationError(key: path.isEmpty ? "(top level)" : path, message: "keys must be strings")
                }
                // Yams already rejects a key that appears twice in one map.
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                entries.append((key, try convert(valueNode, path: childPath)))
            }
            return .map(entries)
        case .alias:
            throw ConfigurationError(key: path, message: "YAML aliases are not supported")
        }
    }

    subscript(key: String) -> ConfigurationTree? {
        guard case .map(let entries) = self else { return nil }
        return entries.first { $0.key == key }?.value
    }

    /// Sets `value` at `path` (creating maps on the way), replacing what was there.
    mutating func set(_ path: [String], to value: ConfigurationTree) {
        guard let first = path.first else {
            self = value
            return
        }
        var entries: [(key: String, value: ConfigurationTree)] = []
        if case .map(let existing) = self { entries = existing }
        var child = entries.first { $0.key == first }?.value ?? .map([])
        child.set(Array(path.dropFirst()), to: value)
        if let index = entries.firstIndex(where: { $0.key == first }) {
            entries[index].value = child
        } else {
            entries.append((first, child))
        }
        self = .map(entries)
    }

    /// Applies environment overrides: `PULSE_SECTION__KEY=value` sets `section.key`
    /// (`__` separates levels, names are lower-cased); under `kafka`, single `_` become
    /// dots (`PULSE_KAFKA__SASL_USERNAME` sets `kafka.sasl.username`). Values are YAML
    /// scalars, or flow lists/maps (`[1m, 10m/1m]`).
    mutating func applyEnvironment(_ environment: [String: String]) throws(ConfigurationError) {
        for (name, text) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("PULSE_") {
            var path = name.dropFirst("PULSE_".count).components(separatedBy: "__").map { $0.lowercased() }
            guard !path.isEmpty, !path.contains("") else { continue }
            if path.first == "kafka", path.count == 2 { path[1] = path[1].replacingOccurrences(of: "_", with: ".") }
            var value = ConfigurationTree.scalar(text)
            if text.hasPrefix("[") || text.hasPrefix("{") {
                value = try ConfigurationTree.parse(yaml: text, file: name)
            }
            set(path, to: value)
        }
    }
}
