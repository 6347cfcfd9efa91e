/// Which segments an event belongs to: dimension combinations (every distinct value tuple
/// is a segment) and named rules.
public struct SegmentSpec: Sendable, Hashable {
    /// Each combination is a list of attribute names; `[]` is the segment `all`.
    /// `["country", "device"]` gives segments such as `country=DE,device=mobile`.
    public var dimensions: [[String]]
    /// Named rules: segment name → rule (a segment named after the rule's key).
    public var rules: [(name: String, rule: SegmentRule)]
    /// Most distinct segments per window; more go to the segment `other` and are counted.
    public var maxSegmentsPerWindow: Int

    public init(dimensions: [[String]] = [[]], rules: [(name: String, rule: SegmentRule)] = [], maxSegmentsPerWindow: Int = 10_000) {
        self.dimensions = dimensions
        self.rules = rules
        self.maxSegmentsPerWindow = maxSegmentsPerWindow
    }

    /// The attribute names the decoder must keep (dimensions first, then rules').
    public var attributeNames: [String] {
        var names: [String] = []
        for name in dimensions.joined() + rules.flatMap(\.rule.attributeNames) where !names.contains(name) { names.append(name) }
        return names
    }

    /// The overflow segment's name.
    public static let overflowSegment = "other"
    /// The value used for a dimension the event does not carry.
    public static let missingValue = "(none)"

    public static func == (lhs: SegmentSpec, rhs: SegmentSpec) -> Bool {
        lhs.dimensions == rhs.dimensions && lhs.maxSegmentsPerWindow == rhs.maxSegmentsPerWindow
            && lhs.rules.map(\.name) == rhs.rules.map(\.name) && lhs.rules.map(\.rule) == rhs.rules.map(\.rule)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(dimensions)
        hasher.combine(rules.map(\.name))
        hasher.combine(maxSegmentsPerWindow)
    }
}

/// Computes an event's segments as 64-bit keys (hashes of the segment names) without
/// allocating; names are built only the first time a key is seen.
///
/// Segment names: `all`; `name=value[,name=value…]` for dimension combinations, in the
/// configured order, with `%`, `,`, `=` and `|` in values percent-encoded; rule names as
/// configured. Not thread-safe: one per processing thread.
public final class SegmentAssigner {
    public let spec: SegmentSpec
    /// Per combination: the decoder slots of its attributes, `slots[combinations[c]]`
    /// (one flat array, read without copying a combination's own array per event).
    private let slots: [Int]
    private let combinations: [Range<Int>]
    private let rules: SegmentRuleSet
    private let ruleKeys: [UInt64]  // per rule: its segment's key
    private let nameBytes: [[UInt8]]  // attribute names as bytes, by decoder slot
    private var buffer: [UInt8] = []
    private var names = HashMap64<String>(vacant: "")
    /// Segment key by combination and value hashes, so a known value tuple costs one
    /// lookup instead of building and hashing its name.
    private var keyCache = HashMap64<UInt64>(vacant: 0)
    /// The current event's segment keys, after ``assign(_:)``.
    public private(set) var keys: [UInt64] = []
    private let allKey = Hash64.hash("all")

    /// - Parameter attributeNames: the decoder's slot order (``SegmentSpec/attributeNames``).
    public init(spec: SegmentSpec, attributeNames: [String]) {
        self.spec = spec
        func slot(_ name: String) -> Int { attributeNames.firstIndex(of: name) ?? -1 }
        slots = spec.dimensions.flatMap { combination in combination.map(slot) }
        combinations = spec.dimensions.reduce(into: []) { ranges, combination in
            let start = ranges.last?.upperBound ?? 0
            ranges.append(start..<(start + combination.count))
        }
        rules = SegmentRuleSet(spec.rules.map(\.rule), slots: spec.rules.map { $0.rule.attributeNames.map(slot) })
        ruleKeys = spec.rules.map { Hash64.hash($0.name) }
        nameBytes = attributeNames.map { Array($0.utf8) }
        buffer.reserveCapacity(1024)
        keys.reserveCapacity(spec.dimensions.count + spec.rules.count)
        names[allKey] = "all"
        names[Hash64.hash(SegmentSpec.overflowSegment)] = SegmentSpec.overflowSegment
        for rule in spec.rules { names[Hash64.hash(rule.name)] = rule.name }
    }

    /// Makes a segment name known (after a restore) and returns its key.
    @discardableResult
    public func register(_ name: String) -> UInt64 {
        let key = Hash64.hash(name)
        registerName(name, key: key)
        return key
    }

    func registerName(_ name: String, key: UInt64) {
        if !names.contains(key) { names[key] = name }
    }

    /// The name of a segment key seen before.
    public func name(of key: UInt64) -> String { names[key] ?? "?" }

    /// Computes the segments of the decoder's current event into ``keys``.
    public func assign(_ decoder: EventDecoder) {
        keys.removeAll(keepingCapacity: true)
        slots.withUnsafeBufferPointer { slots in
            for (combinationIndex, range) in combinations.enumerated() {
                let combination = UnsafeBufferPointer(rebasing: slots[range])
                guard !combination.isEmpty else {
                    keys.append(allKey)
                    continue
                }
                var tuple = UInt64(combinationIndex) &+ 0x51_7cc1_b727_220a
                for slot in combination {
                    let value = decoder.attributeValue(slot)
                    tuple = Hash64.combine(tuple, value.isPresent ? decoder.attributeHash(slot) : 0)
                }
                let cached = keyCache[tuple]
                if let cached {
                    keys.append(cached)
                    continue
                }
                keys.append(newKey(combination, tuple: tuple, decoder))
            }
        }
        guard !rules.isEmpty else { return }
        rules.forEachMatch(decoder) { keys.append(ruleKeys[$0]) }
    }

    /// The key of a value tuple not seen before: builds and hashes its segment name.
    private func newKey(_ combination: UnsafeBufferPointer<Int>, tuple: UInt64, _ decoder: EventDecoder) -> UInt64 {
        buffer.removeAll(keepingCapacity: true)
        for (position, slot) in combination.enumerated() {
            if position > 0 { buffer.append(UInt8(ascii: ",")) }
            buffer.append(contentsOf: nameBytes[slot])
            buffer.append(UInt8(ascii: "="))
            let value = decoder.attributeValue(slot)
            if value.isPresent {
                appendEscaped(decoder.bytes(value))
            } else {
                buffer.append(contentsOf: SegmentSpec.missingValue.utf8)
            }
        }
        let key = buffer.withUnsafeBytes { Hash64.hash($0) }
        if !names.contains(key) { names[key] = String(decoding: buffer, as: UTF8.self) }
        if keyCache.count < 1_000_000 { keyCache[tuple] = key }
        return key
    }

    private func appendEscaped(_ bytes: UnsafeRawBufferPointer) {
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: ","), UInt8(ascii: "="), UInt8(ascii: "|"):
                let hex = Array("0123456789ABCDEF".utf8)
                buffer.append(UInt8(ascii: "%"))
                buffer.append(hex[Int(byte >> 4)])
                buffer.append(hex[Int(byte & 0xF)])
            default:
                buffer.append(byte)
            }
        }
    }
}
