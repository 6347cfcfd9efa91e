@testable import AudienceMetrics
import Testing

@Suite("Per-partition state: users and event ids")
struct StateTests {
    @Test("a million tracked users take at most 46 bytes each (24-byte slots, at least 53 % full)")
    func userMemory() {
        var users = UserStates()
        let origin: Int64 = 1_795_860_000_000
        for user in 0..<1_000_000 { _ = users.update(user: Hash64.hash("u\(user)"), time: origin + Int64(user), typeCode: 0) }
        #expect(users.count == 1_000_000)
        let perUser = Double(users.memoryBytes) / Double(users.count)
        #expect(perUser <= 46, "\(perUser) bytes per user")
    }

    @Test("user state survives packing, and long-ago times saturate")
    func packing() throws {
        var users = UserStates()
        let origin: Int64 = 1_795_860_000_000
        _ = users.update(user: 1, time: origin, typeCode: KnownEventType.pageView.rawValue)
        _ = users.update(user: 1, time: origin + 4_000, typeCode: KnownEventType.conversion.rawValue)
        let state = try #require(users[1])
        #expect(state.firstSeen == origin && state.lastSeen == origin + 4_000 && state.sessionStart == origin)
        #expect(state.sessionPageViews == 1 && state.sessionFlags == 0b11)
        let later = origin + 60 * 86_400_000
        let update = users.update(user: 1, time: later, typeCode: 0)
        #expect(update.sessionStarted)
        #expect(update.firstSeen < later - 49 * 86_400_000)
        var writer = BinaryWriter()
        users.encode(into: &writer)
        var restored = UserStates()
        var reader = BinaryReader(writer.bytes)
        try restored.decode(from: &reader)
        #expect(restored[1] == users[1])
    }

    @Test("event ids are remembered for the horizon and then forgotten")
    func deduplication() {
        var dedup = Deduplicator(horizon: 10_000, maxEntries: 100)
        let outcomes = [dedup.isDuplicate(1, at: 0), dedup.isDuplicate(1, at: 5_000), dedup.isDuplicate(2, at: 20_000), dedup.isDuplicate(1, at: 20_001)]
        // The last: seen 20 s ago, beyond the horizon.
        #expect(outcomes == [false, true, false, false])
        for id in UInt64(10)..<UInt64(300) { _ = dedup.isDuplicate(id, at: 30_000) }
        #expect(dedup.count <= 100)
        #expect(dedup.evictedEarly > 0)
    }

    @Test("a de-duplicator's journals, applied in order to the table they started from, give the table byte for byte, through prunings and early evictions")
    func deduplicationJournal() throws {
        var random = SplitMix64(seed: 11)
        // Small enough that the table fills and forgets its oldest ids early, with a horizon
        // short enough that prunings drop expired ones.
        var dedup = Deduplicator(horizon: 5_000, maxEntries: 2_000)
        var time: Int64 = 0
        var base = try Self.checkJournals(of: &dedup, restore: { reader in try Deduplicator.decode(from: &reader) }) { dedup, step in
            // Time passes fast in some stretches (prunings drop what the horizon passed)
            // and slowly in others (the table fills up: the oldest ids are forgotten).
            time += Int64(random.next() % (step / 2_000 % 2 == 0 ? 8 : 2))
            // Repeats (some within the horizon, some past it) and late events among new ids.
            let id = random.next() % 4 == 0 ? random.next() % 3_000 : random.next()
            _ = dedup.isDuplicate(id, at: time - Int64(random.next() % 2_000))
            if step % 997 == 0 { dedup.prune() }
        }
        #expect(dedup.evictedEarly > 0)
        // Past its limit (half the table, at least 65,536 ids) the journal is dropped.
        base = Self.bytes(dedup)
        dedup.startJournal()
        for id in UInt64(0)..<65_536 { _ = dedup.isDuplicate(id << 32, at: time) }
        #expect(dedup.hasJournal)
        _ = dedup.isDuplicate(1 << 63, at: time)
        #expect(!dedup.hasJournal)
        var reader = BinaryReader(base)
        #expect(throws: BinaryReader.Error.self, "a whole table is not a journal") { try dedup.applyJournal(from: &reader) }
        var writer = BinaryWriter()
        dedup.encodeJournal(into: &writer)
        var journal = BinaryReader(writer.bytes)
        #expect(throws: BinaryReader.Error.self, "a journal is not a whole table") { try Deduplicator.decode(from: &journal) }
    }

    @Test("a user table's journals, applied in order to the table they started from, give the table byte for byte, through expiries and evictions")
    func userStatesJournal() throws {
        var random = SplitMix64(seed: 12)
        // A short TTL (expiries) and a small bound (the least recently active forgotten).
        var users = UserStates(ttl: 40_000, maxUsers: 300)
        func restore(_ reader: inout BinaryReader) throws -> UserStates {
            var restored = UserStates(ttl: 40_000, maxUsers: 300)
            try restored.decode(from: &reader)
            return restored
        }
        var time: Int64 = 0
        var forgotten = 0
        var base = try Self.checkJournals(of: &users, restore: restore) { users, step in
            time += Int64(random.next() % (step / 2_000 % 2 == 0 ? 12 : 2))
            // Some users come back often, most rarely; some events are late.
            let user = random.next() % 3 == 0 ? random.next() % 50 : random.next() % 2_000
            _ = users.update(user: user, time: time - Int64(random.next() % 500), typeCode: Int(random.next() % 4))
            if step % 97 == 0 { forgotten += users.expire(now: time) }
        }
        #expect(forgotten > 1_000)

        // A journal longer than its limit (65,536 here) keeps each user once,
        base = Self.bytes(users)
        users.startJournal()
        for step in 0..<100_000 { _ = users.update(user: UInt64(step % 40), time: time + Int64(step / 1_000), typeCode: 0) }
        #expect(users.hasJournal)
        var writer = BinaryWriter()
        users.encodeJournal(into: &writer)
        var restored = UserStates(ttl: 40_000, maxUsers: 300)
        var reader = BinaryReader(base)
        try restored.decode(from: &reader)
        var journal = BinaryReader(writer.bytes)
        try restored.applyJournal(from: &journal)
        #expect(Self.bytes(restored) == Self.bytes(users))
        // Expiry by the TTL alone (above, the table was nearly always over its bound too).
        let origin: Int64 = 1_795_860_000_000
        var aging = UserStates(ttl: 1_000, maxUsers: 1_000_000)
        for user in UInt64(1)...500 { _ = aging.update(user: user, time: origin + Int64(user) * 10, typeCode: 0) }
        let agingBase = Self.bytes(aging)
        aging.startJournal()
        _ = aging.update(user: 7, time: origin + 4_990, typeCode: 0)
        #expect(aging.expire(now: origin + 5_000) == 398)
        _ = aging.update(user: 3, time: origin + 5_000, typeCode: 0)
        writer = BinaryWriter()
        aging.encodeJournal(into: &writer)
        var agingRestored = UserStates(ttl: 1_000, maxUsers: 1_000_000)
        reader = BinaryReader(agingBase)
        try agingRestored.decode(from: &reader)
        journal = BinaryReader(writer.bytes)
        try agingRestored.applyJournal(from: &journal)
        #expect(agingRestored.count == 103 && Self.bytes(agingRestored) == Self.bytes(aging))
        // … and is dropped when even that is more than half of it.
        var large = UserStates()
        large.startJournal()
        for user in UInt64(1)...65_537 { _ = large.update(user: user, time: 0, typeCode: 0) }
        #expect(!large.hasJournal)
    }

    @Test("the hash map keeps every entry through growth and deletions")
    func hashMap() {
        var map = HashMap64<Int>(vacant: -1)
        var reference: [UInt64: Int] = [:]
        var random = SplitMix64(seed: 5)
        for step in 0..<50_000 {
            let key = random.next() % 4_000
            if step % 3 == 0 {
                let removed = map.remove(key)
                #expect(removed == reference.removeValue(forKey: key))
            } else {
                map[key] = step
                reference[key] = step
            }
        }
        #expect(map.count == reference.count)
        for (key, value) in reference { #expect(map[key] == value) }
        map.removeAll { _, value in value % 2 == 0 }
        #expect(map.count == reference.values.filter { $0 % 2 != 0 }.count)
    }

    @Test("a growing table stays between 8/15 and 80 % full: it grows by half, at any size, not to the next power of two")
    func hashMapFill() {
        var map = HashMap64<Int>(vacant: -1)
        var random = SplitMix64(seed: 11)
        var growths = 0
        for index in 0..<300_000 {
            let before = map.slotCount
            map[random.next()] = index
            if map.slotCount != before { growths += 1 }
            guard map.count > 20 else { continue }
            let withinBounds = map.count * 15 >= map.slotCount * 8 && map.count * 5 <= map.slotCount * 4
            #expect(withinBounds, "\(map.count) in \(map.slotCount) slots")
            if !withinBounds { return }
        }
        #expect(growths > 20)
    }

    @Test("reserving slots enlarges a table at once, never shrinks it, and keeps every entry; churn at a steady count then leaves its size alone")
    func hashMapReserve() {
        func key(_ number: Int) -> UInt64 { UInt64(number) &* 0x9E37_79B9 }
        var map = HashMap64<Int>(vacant: -1)
        for number in 1...64 { map[key(number)] = number }
        let grown = map.slotCount
        #expect(grown * 4 >= 64 * 5 && grown < 128)
        map.reserve(slots: 128)
        #expect(map.slotCount == 128)
        map.reserve(slots: 100)
        #expect(map.slotCount == 128)
        for number in 1...64 { #expect(map[key(number)] == number) }
        // Churn at a steady count: each new key replaces an old one.
        for number in 65...10_000 {
            map.remove(key(number - 64))
            map[key(number)] = number
        }
        #expect(map.slotCount == 128 && map.count == 64)
        for number in 9_937...10_000 { #expect(map[key(number)] == number) }
    }

    @Test("emptying a table keeps its slots; what is entered after is found, what was before is not")
    func hashMapRemoveAllKeepingSlots() throws {
        func key(_ number: Int) -> UInt64 { UInt64(number) &* 0x9E37_79B9 }
        var map = HashMap64<Int>(vacant: -1)
        for number in 1...200 { map[key(number)] = number }
        let slots = map.slotCount
        map.removeAllKeepingSlots()
        // Required: a table that still counted its old entries would grow on every insertion.
        try #require(map.count == 0 && map.slotCount == slots)
        for number in 1...200 { #expect(map[key(number)] == nil) }
        for number in 150...250 { map[key(number)] = -number }
        #expect(map.count == 101 && map.slotCount == slots)
        for number in 1...250 { #expect(map[key(number)] == (number >= 150 ? -number : nil)) }
    }

    @Test("removing by a predicate, in place, keeps every other entry findable, also in probe runs that wrap around the table's end")
    func hashMapRemoveAllInPlace() {
        for seed in UInt64(0)..<20 {
            // Room for 1,000 without growing; most keys' home slots are the last eight, so
            // their runs wrap to the start.
            var map = HashMap64<Int>(vacant: -1, capacity: 1_000)
            var reference: [UInt64: Int] = [:]
            var random = SplitMix64(seed: seed)
            let slotCount = map.slotCount
            for step in 0..<1_000 {
                var key = random.next()
                while step % 5 != 0 && map.homeSlot(of: key) < slotCount - 8 { key = random.next() }
                map[key] = step
                reference[key] = step
            }
            #expect(map.slotCount == slotCount, "no growth while filling")
            let slots = map.memoryBytes
            map.removeAll { _, value in value % 3 == 0 }
            reference = reference.filter { $0.value % 3 != 0 }
            #expect(map.count == reference.count)
            #expect(map.memoryBytes == slots, "the same table")
            for (key, value) in reference { #expect(map[key] == value) }
            #expect(map.entries.count == reference.count)
            #expect(map.entries.allSatisfy { reference[$0.key] == $0.value })

            map.removeAll { _, value in value >= 30 }
            reference = reference.filter { $0.value < 30 }
            #expect(map.count == reference.count)
            #expect(map.memoryBytes < slots, "under an eighth full, it shrinks")
            for (key, value) in reference { #expect(map[key] == value) }
            map[7] = 7
            #expect(map[7] == 7 && map.count == reference.count + 1)
        }
    }

    @Test("removing a share of a table filled to its limit leaves exactly the rest, each found and each removed key absent", arguments: [1, 2, 5, 9])
    func hashMapRemoveShareAtFullLoad(tenths: Int) {
        for seed in UInt64(0)..<8 {
            var map = HashMap64<Int>(vacant: -1, capacity: 4_000)
            var random = SplitMix64(seed: seed)
            var keys: [UInt64] = []
            // Up to the growth limit (80 % of the slots), where probe runs are longest.
            while (map.count + 1) * 5 <= map.slotCount * 4 {
                let key = random.next()
                keys.append(key)
                map[key] = keys.count
            }
            let slots = map.slotCount
            map.removeAll { _, value in value % 10 < tenths }
            let kept = keys.enumerated().filter { ($0.offset + 1) % 10 >= tenths }
            #expect(map.count == kept.count)
            #expect(map.slotCount == slots || map.count * 8 < slots)
            for (offset, key) in keys.enumerated() {
                let value = offset + 1
                #expect(map[key] == (value % 10 < tenths ? nil : value))
            }
            // Still a working table: the removed keys go back in, and all are found.
            for (offset, key) in keys.enumerated() where (offset + 1) % 10 < tenths { map[key] = offset + 1 }
            #expect(map.count == keys.count)
            for (offset, key) in keys.enumerated() { #expect(map[key] == offset + 1) }
        }
    }

    @Test("entries come in key order whatever the keys: spread, alike in their top bits, or 0", arguments: [0, 1, 2, 17, 1_000, 100_000])
    func keyOrder(count: Int) {
        var random = SplitMix64(seed: UInt64(count))
        // Well-mixed keys; small integers (all in the first bucket: the standard sort);
        // keys equal but for their low bits in runs of 20 (buckets of 20: more than
        // insertion sorts); and 0, stored as its stand-in.
        let shapes: [(Int) -> UInt64] = [{ _ in random.next() }, { UInt64($0) }, { UInt64($0 / 20) << 40 | UInt64($0 % 20) }, { $0 == 0 ? 0 : random.next() }]
        for make in shapes {
            var map = HashMap64<Int>(vacant: -1)
            for index in 0..<count { map[make(index)] = index }
            var visited: [(key: UInt64, value: Int)] = []
            map.forEachInKeyOrder { visited.append(($0, $1)) }
            let expected = map.entries.sorted { $0.key < $1.key }
            #expect(visited.map(\.key) == expected.map(\.key))
            #expect(visited.map(\.value) == expected.map(\.value))
            #expect(visited.count == map.count)
        }
    }

    /// 20,000 steps of `step` on `table`; every 400 the journal since the last one is
    /// taken, and `restore` of the table the journals started from, with every journal
    /// since applied in order, must equal the table byte for byte (every fourth journal
    /// the starting point moves on). Returns the table's last starting point.
    static func checkJournals<Table: JournaledTable>(
        of table: inout Table, restore: (inout BinaryReader) throws -> Table, step: (inout Table, Int) -> Void
    ) throws -> [UInt8] {
        var base = bytes(table)
        table.startJournal()
        var journals: [[UInt8]] = []
        var checked = 0
        for number in 1...20_000 {
            step(&table, number)
            // A journal holds at most a quarter of the table's bound.
            guard number % 400 == 0 else { continue }
            #expect(table.hasJournal)
            var writer = BinaryWriter()
            table.encodeJournal(into: &writer)
            table.startJournal()
            journals.append(writer.bytes)
            var reader = BinaryReader(base)
            var restored = try restore(&reader)
            for journal in journals {
                var reader = BinaryReader(journal)
                try restored.applyJournal(from: &reader)
                #expect(reader.isAtEnd)
            }
            let same = bytes(restored) == bytes(table)
            #expect(same, "after step \(number): \(restored.count) restored, \(table.count) kept")
            checked += 1
            if journals.count == 4 {
                base = bytes(table)
                journals = []
            }
        }
        #expect(checked == 50)
        return base
    }

    static func bytes(_ table: some JournaledTable) -> [UInt8] {
        var writer = BinaryWriter()
        table.encode(into: &writer)
        return writer.bytes
    }
}

/// The per-partition tables whose changes a checkpoint can carry as a journal.
protocol JournaledTable {
    var count: Int { get }
    var hasJournal: Bool { get }
    func encode(into writer: inout BinaryWriter)
    func encodeJournal(into writer: inout BinaryWriter)
    mutating func startJournal()
    mutating func applyJournal(from reader: inout BinaryReader) throws(BinaryReader.Error)
}

extension Deduplicator: JournaledTable {}
extension UserStates: JournaledTable {}
