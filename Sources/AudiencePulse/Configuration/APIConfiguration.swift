/// The read API and dashboard's settings (`api.*`).
public struct APIConfiguration: Sendable {
    /// Whether `pulse serve` keeps the read model and answers `/v1/segments`, `/v1/stream`
    /// and the dashboard at `/`.
    public var enabled: Bool
    /// Window ends older than this before the newest one are forgotten (ms).
    public var retention: Int64
    public var maxSegments: Int
    /// Required from clients when set (`Authorization: Bearer …` or `?token=`).
    public var token: String?
    /// Serve without a token on a non-loopback address.
    public var allowAnonymous: Bool
}

extension PulseConfiguration {
    static func readAPI(_ r: inout ConfigurationReader, httpHost: String) throws(ConfigurationError) -> APIConfiguration {
        let enabled = try r.boolean("api.enabled", default: true, "Keep the read model (every instance reads the whole metrics topic) and serve `/v1/segments`, `/v1/stream` and the dashboard at `/`.")
        let retention = try r.duration("api.retention", default: "1h", minimum: 60_000, "History kept per segment: windows that ended more than this before the newest window end are forgotten.")
        let maxSegments = try r.integer("api.max_segments", default: 10_000, range: 1...10_000_000, "Most segments the read model keeps; records of further segments are not kept (counted in `pulse_read_model_dropped_total`).")
        let token = try r.string("api.token", default: "", "Token the read API and dashboard require (`Authorization: Bearer <token>`, or `?token=` for browsers). Set it from the environment (`PULSE_API__TOKEN=…`); it is never logged.")
        let allowAnonymous = try r.boolean("api.allow_anonymous", default: false, "Serve the read API and dashboard without a token on a non-loopback `http.listen` (without a token they are served on loopback only).")
        if !token.isEmpty && token.utf8.count < 16 {
            throw ConfigurationError(key: "api.token", message: "a token needs at least 16 characters")
        }
        if enabled && token.isEmpty && !allowAnonymous && !Self.isLoopback(httpHost) {
            throw ConfigurationError(key: "api.token", message: "http.listen is not a loopback address: set a token for the read API and dashboard (or api.allow_anonymous: true, or api.enabled: false)")
        }
        return APIConfiguration(enabled: enabled, retention: retention, maxSegments: maxSegments, token: token.isEmpty ? nil : token, allowAnonymous: allowAnonymous)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}
