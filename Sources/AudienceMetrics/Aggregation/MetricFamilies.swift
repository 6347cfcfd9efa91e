/// The optional metric families a deployment computes (`metrics.include`). A family left
/// out costs no per-event work (without `retention` and `sessions`, no per-user state
/// either), and its fields are left out of the records. Always computed: `events`, `by_type`, `users.unique` and `unique_exact`,
/// `engagement`, `dwell_ms.count` and `mean`, `quality`.
public struct MetricFamilies: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `users.new`, `returning`, `retained`, `retention_rate` (per-user state).
    public static let retention = MetricFamilies(rawValue: 1 << 0)
    /// `sessions` (per-user state).
    public static let sessions = MetricFamilies(rawValue: 1 << 1)
    /// `conversion`: count, converting users, rate, revenue.
    public static let conversion = MetricFamilies(rawValue: 1 << 2)
    /// `dwell_ms.p50`, `p90`, `p99` (a quantile sketch per segment and window).
    public static let dwellQuantiles = MetricFamilies(rawValue: 1 << 3)
    /// `top_content`.
    public static let topContent = MetricFamilies(rawValue: 1 << 4)
    /// `trend`, on final records.
    public static let trend = MetricFamilies(rawValue: 1 << 5)

    public static let all: MetricFamilies = [.retention, .sessions, .conversion, .dwellQuantiles, .topContent, .trend]

    /// Each family with its configuration name, in the order of the records' fields.
    public static let named: [(name: String, family: MetricFamilies)] = [
        ("retention", .retention), ("conversion", .conversion), ("dwell_quantiles", .dwellQuantiles),
        ("sessions", .sessions), ("top_content", .topContent), ("trend", .trend),
    ]

    /// The family called `name` in the configuration, if any.
    public init?(name: String) {
        guard let entry = Self.named.first(where: { $0.name == name }) else { return nil }
        self = entry.family
    }

    /// Per-user state is kept only for the families that need it.
    public var needsUserState: Bool { !isDisjoint(with: [.retention, .sessions]) }
}
