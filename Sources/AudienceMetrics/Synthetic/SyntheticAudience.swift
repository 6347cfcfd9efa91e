import Foundation

/// A synthetic audience for demos, load and backfill tests: users with stable attributes
/// drawn from configured distributions, event types by weight, content by a Zipf law,
/// out-of-order jitter, and a chosen share of duplicates (a producer retry: same key,
/// same bytes) and malformed messages. Deterministic for a seed.
public struct SyntheticAudience: Sendable {
    public struct Spec: Sendable {
        public var users = 10_000
        public var contentItems = 1_000
        /// Exponent of the Zipf law of content popularity (0 = uniform).
        public var zipfExponent = 1.1
        /// Attribute name → weighted values; each user keeps one value per attribute.
        public var attributes: [(name: String, values: [(value: String, weight: Double)])] = [
            ("country", [("US", 35), ("DE", 20), ("GB", 12), ("FR", 10), ("BR", 9), ("IN", 8), ("JP", 6)]),
            ("device", [("mobile", 60), ("desktop", 32), ("tablet", 8)]),
            ("source", [("search", 35), ("social", 30), ("direct", 20), ("newsletter", 15)]),
            ("plan", [("free", 70), ("pro", 22), ("team", 8)]),
        ]
        /// Event types by weight: a funnel from page views to conversions.
        public var types: [(type: String, weight: Double)] = [
            ("page_view", 55), ("click", 18), ("like", 9), ("comment", 4), ("share", 3), ("conversion", 2),
            ("session_start", 5), ("session_end", 4),
        ]
        /// Events are stamped up to this many milliseconds before the time asked for.
        public var jitterMilliseconds: Int64 = 2_000
        /// Share of messages that repeat the previous valid message exactly.
        public var duplicateShare = 0.01
        /// Share of messages that are not valid events.
        public var malformedShare = 0.005
        public var seed: UInt64 = 1
        /// A content item whose share of content events rises from 0 to 40 % over each
        /// `trendingPeriod` of event time, then starts again (nil: none).
        public var trending: String?
        public var trendingPeriod: Int64 = 300_000
        /// How each event's user is chosen.
        public var userOrder = UserOrder.random

        public init() {}
    }

    public enum UserOrder: Sendable, Hashable {
        /// Independently and uniformly: `n` events reach about `users × (1 − e^(−n/users))`
        /// distinct users.
        case random
        /// Every user once in each run of `users` events, in a fixed scrambled order (a
        /// state benchmark that must track every user).
        case everyUserInTurn
    }

    public enum Kind: Sendable, Hashable { case valid, duplicate, malformed }

    public struct Message: Sendable {
        /// The Kafka key: the user id (malformed messages have none of their own).
        public var key: String
        public var value: String
        public var kind: Kind
    }

    public let spec: Spec
    private var random: SplitMix64
    private var sequence: UInt64 = 0
    private var previous: Message?
    private let contentCumulative: [Double]
    private let typeCumulative: [Double]
    private let attributeCumulative: [[Double]]
    /// ``UserOrder/everyUserInTurn``: the step between consecutive events' users, prime to
    /// the number of users, so that `users` steps visit each once.
    private let userStep: Int

    public init(spec: Spec = Spec()) {
        self.spec = spec
        random = SplitMix64(seed: spec.seed)
        userStep = Self.step(primeTo: max(spec.users, 1))
        contentCumulative = Self.cumulative((0..<max(spec.contentItems, 1)).map { 1 / pow(Double($0 + 1), spec.zipfExponent) })
        typeCumulative = Self.cumulative(spec.types.map(\.weight))
        attributeCumulative = spec.attributes.map { Self.cumulative($0.values.map(\.weight)) }
    }

    /// The next message, stamped at `time` (epoch ms) minus up to the jitter.
    public mutating func next(at time: Int64) -> Message {
        let draw = unit()
        if draw < spec.malformedShare {
            return Message(key: "malformed", value: malformed(), kind: .malformed)
        }
        if draw < spec.malformedShare + spec.duplicateShare, var repeated = previous {
            repeated.kind = .duplicate
            return repeated
        }
        sequence += 1
        let users = max(spec.users, 1)
        let user = switch spec.userOrder {
        case .random: Int(random.next() % UInt64(users))
        case .everyUserInTurn: Int((sequence - 1) % UInt64(users) * UInt64(userStep) % UInt64(users))
        }
        let type = spec.types[Self.pick(typeCumulative, unit())].type
        let stamp = time - (spec.jitterMilliseconds > 0 ? Int64(random.next() % UInt64(spec.jitterMilliseconds + 1)) : 0)
        var json = #"{"event_id":"g\#(spec.seed)-\#(sequence)","type":"\#(type)","user_id":"u\#(user)","timestamp":\#(stamp)"#
        switch type {
        case "page_view":
            json += #","content_id":"\#(content(at: stamp))","dwell_ms":\#(dwell())"#
        case "click", "like", "share", "comment":
            json += #","content_id":"\#(content(at: stamp))""#
        case "conversion":
            let cents = 500 + random.next() % 19_500
            json += #","value":\#(cents / 100).\#(cents % 100 < 10 ? "0" : "")\#(cents % 100)"#
        default: break
        }
        json += #","session_id":"s\#(user)-\#(stamp / 1_800_000)","attributes":{"#
        for (index, attribute) in spec.attributes.enumerated() {
            let value = attribute.values[Self.pick(attributeCumulative[index], Self.stableUnit(user: user, attribute: index, seed: spec.seed))].value
            json += (index == 0 ? "" : ",") + #""\#(attribute.name)":"\#(value)""#
        }
        json += "}}"
        let message = Message(key: "u\(user)", value: json, kind: .valid)
        previous = message
        return message
    }

    private mutating func malformed() -> String {
        switch random.next() % 5 {
        case 0: return #"{"event_id":"broken","type":"page_view""#  // truncated
        case 1: return "not json at all"
        case 2: return #"{"event_id":"x","type":"click","timestamp":1}"#  // no user, impossible time
        case 3: return #"["an","array"]"#
        default: return #"{"event_id":"y","type":"like","user_id":"u1","timestamp":"yesterday"}"#
        }
    }

    private mutating func content(at time: Int64) -> String {
        if let trending = spec.trending, spec.trendingPeriod > 0 {
            let phase = Double(((time % spec.trendingPeriod) + spec.trendingPeriod) % spec.trendingPeriod) / Double(spec.trendingPeriod)
            if unit() < 0.4 * phase { return trending }
        }
        return "article-\(Self.pick(contentCumulative, unit()) + 1)"
    }

    /// Dwell times: mostly short, some long (0.5 s – 3 min).
    private mutating func dwell() -> Int64 {
        let u = unit()
        return 500 + Int64(u * u * u * 180_000)
    }

    /// A step about 0.618 × `count` (neighbouring steps land far apart) with no common
    /// factor with `count`.
    private static func step(primeTo count: Int) -> Int {
        guard count > 2 else { return 1 }
        var step = count * 618 / 1000
        while gcd(step, count) != 1 { step += 1 }
        return step
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    private mutating func unit() -> Double { Double(random.next() >> 11) / Double(1 << 53) }

    private static func stableUnit(user: Int, attribute: Int, seed: UInt64) -> Double {
        var mixer = SplitMix64(seed: seed &* 0x9E37_79B9 &+ UInt64(user) &* 1_000_003 &+ UInt64(attribute))
        return Double(mixer.next() >> 11) / Double(1 << 53)
    }

    private static func cumulative(_ weights: [Double]) -> [Double] {
        let total = max(weights.reduce(0, +), .leastNonzeroMagnitude)
        var running = 0.0
        return weights.map {
            running += $0 / total
            return running
        }
    }

    /// Index of the first cumulative weight above `u` (binary search).
    private static func pick(_ cumulative: [Double], _ u: Double) -> Int {
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > u { high = middle } else { low = middle + 1 }
        }
        return max(low, 0)
    }
}
