/// What the service remembers about one user (keyed by the user-id hash): enough for
/// new/returning, retention and sessions. This is the expanded view; the table stores
/// it packed in 16 bytes (``PackedUserState``), 24 bytes per slot with the key.
public struct UserState: Sendable, Hashable {
    /// Time of the first event ever seen, ms (more than ~49 days before `lastSeen` is
    /// kept as exactly 2³²−1 ms before it: "long ago" for any window).
    public var firstSeen: Int64
    /// Time of the latest event seen, ms.
    public var lastSeen: Int64
    /// Start of the current session, ms (saturating like `firstSeen`).
    public var sessionStart: Int64
    /// Page views in the current session (saturating at 255).
    public var sessionPageViews: UInt16
    /// Bit 0: the session converted; bit 1: the session is engaged; bit 2: it was ended
    /// by a `session_end` event.
    public var sessionFlags: UInt8
}

/// A ``UserState`` in two words: the last-seen time (42 bits of ms since 2000-01-01),
/// page views (8 bits) and flags (3 bits) in the first; how long ago (ms, 32 bits each,
/// saturating) the session started and the user was first seen in the second.
struct PackedUserState: Sendable, Hashable {
    var word0: UInt64
    var word1: UInt64

    static let base: Int64 = 946_684_800_000  // 2000-01-01, the earliest accepted event time
    static let vacant = PackedUserState(word0: .max, word1: .max)

    var isVacant: Bool { word0 == .max }

    init(word0: UInt64, word1: UInt64) {
        self.word0 = word0
        self.word1 = word1
    }

    init(_ state: UserState) {
        let last = UInt64(clamping: state.lastSeen - PackedUserState.base) & (1 << 42 - 1)
        word0 = last | UInt64(min(state.sessionPageViews, 255)) << 42 | UInt64(state.sessionFlags & 7) << 50
        let sessionAgo = UInt64(clamping: min(state.lastSeen - state.sessionStart, Int64(UInt32.max)))
        let firstAgo = UInt64(clamping: min(state.lastSeen - state.firstSeen, Int64(UInt32.max)))
        word1 = sessionAgo | firstAgo << 32
    }

    var state: UserState {
        let last = Int64(word0 & (1 << 42 - 1)) + PackedUserState.base
        return UserState(
            firstSeen: last - Int64(word1 >> 32), lastSeen: last, sessionStart: last - Int64(word1 & 0xFFFF_FFFF),
            sessionPageViews: UInt16((word0 >> 42) & 0xFF), sessionFlags: UInt8((word0 >> 50) & 7))
    }
}

/// Session definitions (GA4's by default).
public struct SessionRules: Sendable, Hashable {
    /// Inactivity that ends a session. Default 30 min.
    public var inactivityGap: Int64
    /// A session longer than this is engaged. Default 10 s.
    public var engagedAfter: Int64
    /// A session with this many page views is engaged. Default 2.
    public var engagedPageViews: Int
    /// A session with a conversion is engaged. Default true.
    public var engagedOnConversion: Bool

    public init(inactivityGap: Int64 = 1_800_000, engagedAfter: Int64 = 10_000, engagedPageViews: Int = 2, engagedOnConversion: Bool = true) {
        self.inactivityGap = inactivityGap
        self.engagedAfter = engagedAfter
        self.engagedPageViews = engagedPageViews
        self.engagedOnConversion = engagedOnConversion
    }
}

/// What one event did to its user's state.
public struct UserUpdate: Sendable, Hashable {
    /// The user's first-ever event time (after this event).
    public var firstSeen: Int64
    /// The latest event time before this event, or `Int64.min` for a new user.
    public var previousLastSeen: Int64
    /// Start of the session this event belongs to.
    public var sessionStart: Int64
    /// This event started a session.
    public var sessionStarted: Bool
    /// With this event the session became engaged.
    public var becameEngaged: Bool
    /// Time this event added to its session's duration, ms.
    public var durationAdded: Int64

    /// The update of a deployment that keeps no per-user state: the user is neither new
    /// nor retained in any window, and no session changes.
    public static let untracked = UserUpdate(firstSeen: .min, previousLastSeen: .min, sessionStart: .min, sessionStarted: false,
                                             becameEngaged: false, durationAdded: 0)

    /// Drops what makes the user new or retained in a window (for a deployment without
    /// retention), keeping the session figures.
    public mutating func forgetHistory() {
        firstSeen = .min
        previousLastSeen = .min
    }
}

/// Per-user state for one input partition, bounded by a TTL and a maximum size.
public struct UserStates: Sendable {
    public let rules: SessionRules
    /// Users inactive (event time) for longer than this are forgotten. Default 30 days.
    public let ttl: Int64
    /// Most users kept; beyond it the least recently active are forgotten.
    public let maxUsers: Int
    private var users = HashMap64<PackedUserState>(vacant: .vacant)
    /// While one is kept (since the last ``startJournal()``): the users updated, repeats
    /// included, and each expiry as the (last seen, key) bound at or below which users
    /// were forgotten. Nil when none is kept, or it outgrew its limit.
    private var journal: (keys: [UInt64], cuts: [(lastSeen: Int64, key: UInt64)])?
    /// Keys the journal holds before it is reduced to each user once (and dropped if that
    /// leaves more than half as many).
    private var journalLimit = 0

    public init(rules: SessionRules = SessionRules(), ttl: Int64 = 30 * 86_400_000, maxUsers: Int = 5_000_000) {
        self.rules = rules
        self.ttl = ttl
        self.maxUsers = maxUsers
    }

    public var count: Int { users.count }
    public subscript(user: UInt64) -> UserState? { users[user]?.state }

    /// Forgets every user (the rules and bounds stay).
    public mutating func removeAll() {
        users = HashMap64(vacant: .vacant)
        lastExpiry = .min
        journal = nil
    }

    /// Heap bytes of the user table, and per tracked user.
    public var memoryBytes: Int { users.memoryBytes }

    /// Starts loading what ``update(user:time:typeCode:)`` will look at for `user` (a
    /// cache hint).
    @inline(__always)
    public mutating func prefetch(_ user: UInt64) { users.prefetch(user) }

    /// Applies one event of `user` at `time` of type `typeCode` (``KnownEventType``).
    @inline(__always)
    public mutating func update(user: UInt64, time: Int64, typeCode: Int) -> UserUpdate {
        let rules = self.rules
        if journal != nil { record(user) }
        return users.update(user, default: .vacant) { packed in
            var state = packed.isVacant ? nil : packed.state
            let update = UserStates.apply(&state, time: time, typeCode: typeCode, rules: rules)
            if let state { packed = PackedUserState(state) }
            return update
        }
    }

    @inline(__always)
    private static func apply(_ existing: inout UserState?, time: Int64, typeCode: Int, rules: SessionRules) -> UserUpdate {
        let isPageView = typeCode == KnownEventType.pageView.rawValue
        let isConversion = typeCode == KnownEventType.conversion.rawValue
        guard var state = existing else {
            var state = UserState(firstSeen: time, lastSeen: time, sessionStart: time, sessionPageViews: isPageView ? 1 : 0, sessionFlags: isConversion ? 1 : 0)
            let engaged = isEngaged(state, at: time, rules: rules)
            if engaged { state.sessionFlags |= 2 }
            if typeCode == KnownEventType.sessionEnd.rawValue { state.sessionFlags |= 4 }
            existing = state
            return UserUpdate(firstSeen: time, previousLastSeen: .min, sessionStart: time, sessionStarted: true, becameEngaged: engaged, durationAdded: 0)
        }
        defer { existing = state }
        let previous = state.lastSeen
        let startsSession = typeCode == KnownEventType.sessionStart.rawValue || state.sessionFlags & 4 != 0
            || time - previous > rules.inactivityGap
        var update = UserUpdate(firstSeen: min(state.firstSeen, time), previousLastSeen: previous, sessionStart: state.sessionStart,
                                sessionStarted: false, becameEngaged: false, durationAdded: 0)
        if startsSession {
            state.sessionStart = time
            state.sessionPageViews = 0
            state.sessionFlags = 0
            update.sessionStart = time
            update.sessionStarted = true
        } else {
            update.durationAdded = max(0, time - previous)
        }
        if isPageView && state.sessionPageViews < .max { state.sessionPageViews += 1 }
        if isConversion { state.sessionFlags |= 1 }
        if typeCode == KnownEventType.sessionEnd.rawValue { state.sessionFlags |= 4 }
        state.firstSeen = update.firstSeen
        state.lastSeen = max(previous, time)
        if state.sessionFlags & 2 == 0, isEngaged(state, at: state.lastSeen, rules: rules) {
            state.sessionFlags |= 2
            update.becameEngaged = true
        }
        return update
    }

    @inline(__always)
    private static func isEngaged(_ state: UserState, at time: Int64, rules: SessionRules) -> Bool {
        time - state.sessionStart > rules.engagedAfter || Int(state.sessionPageViews) >= rules.engagedPageViews
            || (rules.engagedOnConversion && state.sessionFlags & 1 != 0)
    }

    private var lastExpiry: Int64 = .min

    /// Forgets users inactive since before `now − ttl`, then the least recently active
    /// beyond ``maxUsers``. Returns how many were forgotten. Runs at most once per eighth
    /// of the TTL (event time) unless the table is over its limit, so a user may outlive
    /// the TTL by up to an eighth of it.
    @discardableResult
    public mutating func expire(now: Int64) -> Int {
        guard users.count > maxUsers || lastExpiry == .min || now - lastExpiry >= ttl / 8 else { return 0 }
        lastExpiry = now
        let before = users.count
        let cutoff = now - ttl
        users.removeAll { $1.state.lastSeen < cutoff }
        if cutoff > .min { journal?.cuts.append((cutoff - 1, .max)) }
        if users.count > maxUsers {
            let ordered = users.entries.map { (key: $0.key, lastSeen: $0.value.state.lastSeen) }
                .sorted { ($0.lastSeen, $0.key) < ($1.lastSeen, $1.key) }
            let drop = users.count - maxUsers
            for (key, _) in ordered.prefix(drop) { users.remove(key) }
            journal?.cuts.append((ordered[drop - 1].lastSeen, ordered[drop - 1].key))
        }
        return before - users.count
    }

    // MARK: Journal (incremental checkpoints)

    /// Starts (or restarts) keeping a journal of changes from the current state on, for
    /// ``encodeJournal(into:)``. It is dropped once more users than a quarter of the table
    /// now (at least 32,768) were updated: that journal is hardly cheaper to write than the
    /// table.
    public mutating func startJournal() {
        journal = ([], [])
        journalLimit = max(users.count / 2, 65_536)
    }

    /// Whether a journal is kept, complete since the last ``startJournal()``.
    public var hasJournal: Bool { journal != nil }

    private mutating func record(_ user: UInt64) {
        journal?.keys.append(user)
        guard let count = journal?.keys.count, count > journalLimit, var keys = journal?.keys else { return }
        // Keep each user once; give up when even that is too long.
        journal?.keys = []
        keys.sort()
        keys = Self.unique(keys)
        if keys.count > journalLimit / 2 { journal = nil } else { journal?.keys = keys }
    }

    private static func unique(_ sorted: [UInt64]) -> [UInt64] {
        var result: [UInt64] = []
        result.reserveCapacity(sorted.count)
        for key in sorted where result.last != key { result.append(key) }
        return result
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1
    /// The journal form: what changed since a state written before it.
    static let journalVersion: UInt8 = 2

    public func encode(into writer: inout BinaryWriter) {
        writer.write(UserStates.formatVersion)
        writer.writeSigned(lastExpiry)
        writer.writeVarint(users.count)
        users.forEachInKeyOrder { key, packed in
            writer.writeFixed64(key)
            UserStates.encode(packed.state, into: &writer)
        }
    }

    /// Writes the journal kept since the last ``startJournal()`` (which must be kept:
    /// ``hasJournal``): the expiries since, then each user updated since, once, with its
    /// state now (or that it was forgotten). ``applyJournal(from:)`` applied to the state
    /// that was current then gives this one.
    public func encodeJournal(into writer: inout BinaryWriter) {
        let journal = journal ?? ([], [])
        writer.write(UserStates.journalVersion)
        writer.writeSigned(lastExpiry)
        writer.writeVarint(journal.cuts.count)
        for cut in journal.cuts {
            writer.writeSigned(cut.lastSeen)
            writer.writeFixed64(cut.key)
        }
        let keys = Self.unique(journal.keys.sorted())
        writer.writeVarint(keys.count)
        for key in keys {
            writer.writeFixed64(key)
            guard let state = users[key]?.state else {
                writer.write(0)
                continue
            }
            writer.write(1)
            Self.encode(state, into: &writer)
        }
    }

    private static func encode(_ state: UserState, into writer: inout BinaryWriter) {
        writer.writeSigned(state.firstSeen)
        writer.writeSigned(state.lastSeen - state.firstSeen)
        writer.writeSigned(state.sessionStart - state.firstSeen)
        writer.writeVarint(UInt64(state.sessionPageViews))
        writer.write(state.sessionFlags)
    }

    private static func decodeState(from reader: inout BinaryReader) throws(BinaryReader.Error) -> PackedUserState {
        let first = try reader.readSigned()
        let last = first &+ (try reader.readSigned())
        let session = first &+ (try reader.readSigned())
        let views = UInt16(clamping: try reader.readVarint())
        return PackedUserState(UserState(firstSeen: first, lastSeen: last, sessionStart: session, sessionPageViews: views, sessionFlags: try reader.read()))
    }

    /// Applies a journal written by ``encodeJournal(into:)`` to these users, which must be
    /// the state it was kept from: the expiries first (to users not updated since, they
    /// did the same then), then each updated user's state.
    public mutating func applyJournal(from reader: inout BinaryReader) throws(BinaryReader.Error) {
        try reader.expectVersion(UserStates.journalVersion, of: "user state changes")
        journal = nil
        lastExpiry = try reader.readSigned()
        let cutCount = try reader.readCount(limit: 1 << 20)
        for _ in 0..<cutCount {
            let bound = (lastSeen: try reader.readSigned(), key: try reader.readFixed64())
            users.removeAll { key, packed in (packed.state.lastSeen, key) <= bound }
        }
        let count = try reader.readCount(limit: 1 << 28)
        for _ in 0..<count {
            let key = try reader.readFixed64()
            if try reader.read() == 0 {
                users.remove(key)
            } else {
                users[key] = try Self.decodeState(from: &reader)
            }
        }
    }

    /// Restores users written by ``encode(into:)``, with these rules and limits.
    public mutating func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) {
        try reader.expectVersion(UserStates.formatVersion, of: "user states")
        journal = nil
        lastExpiry = try reader.readSigned()
        let count = try reader.readCount(limit: 1 << 28)
        users = HashMap64(vacant: .vacant, capacity: count)
        for _ in 0..<count {
            let key = try reader.readFixed64()
            users[key] = try Self.decodeState(from: &reader)
        }
    }
}
