/// A configuration problem: which key, what is wrong, and what to do. `pulse` exits
/// with code 2 on it.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The dotted key path (`time.max_out_of_orderness`), or the file for file-level problems.
    public var key: String
    public var message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "configuration error at \(key): \(message)" }
}
