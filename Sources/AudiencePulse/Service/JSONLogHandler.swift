import AudienceMetrics
import Foundation
import Logging

/// One JSON object per log line on standard error: `ts`, `level`, `logger`, `msg`, then
/// metadata fields. Thread-safe: each line is a single write.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, String)] = [
            ("ts", ISO8601DateFormatter.pulse.string(from: Date())), ("level", event.level.rawValue), ("logger", label),
            ("msg", event.message.description),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() { fields.append((key, "\(merged[key].map { "\($0)" } ?? "")")) }
        var line = "{"
        for (index, field) in fields.enumerated() {
            if index > 0 { line += "," }
            line += JSONLogHandler.quoted(field.0) + ":" + JSONLogHandler.quoted(field.1)
        }
        line += "}\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func quoted(_ text: String) -> String {
        var out = ""
        JSONText.appendString(text, to: &out)
        return out
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let pulse: ISO8601DateFormatter = {
        // Formatting is thread-safe once configured; it is never mutated after this.
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}

/// The service's version, shown in the banner.
public enum PulseVersion {
    public static let current = "0.1.0"
}
