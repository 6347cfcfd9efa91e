import CPrefetch
import Foundation

/// Counts distinct 64-bit hashes: exactly up to ``exactLimit`` distinct values, then as a
/// HyperLogLog sketch of 2^precision one-byte registers.
///
/// The exact phase is HyperLogLog++'s "sparse" idea taken to its end: below the limit
/// the distinct hashes themselves are kept (in an open-addressing table), so small
/// segments are counted exactly (up to 64-bit hash collisions, negligible below 2^32
/// values). Above it, registers hold the usual max-rank per bucket and the count is
/// Ertl's improved raw estimator ("New cardinality estimation algorithms for
/// HyperLogLog sketches", 2017), which needs no bias-correction tables and is unbiased
/// over the whole range. Standard error 1.04/√m: 0.81 % at the default precision 14.
///
/// Mergeable: `merge(a, b)` equals counting the union (exactly while below the limit,
/// register-for-register identical above it). Memory in the exact phase: 8 bytes per
/// slot, the table 1/4 to 1/2 full between doublings, so 16–32 bytes per distinct value;
/// 2^precision bytes after.
public struct UniqueCounter: Sendable, Equatable {
    public static let defaultPrecision = 14
    public static let exactLimit = 1024

    public let precision: Int
    /// Open-addressing table of exact hashes (0 = empty; the hash 0 is stored as 1).
    private var table: [UInt64]
    private var exactCount: Int
    /// Registers, empty while exact.
    private var registers: [UInt8]
    /// Recording changes (``startTracking()``): the registers raised since (repeats
    /// possible) or the exact hashes added since; off again once anything else happened
    /// (the change is then the whole counter).
    private var tracks = false
    private var trackedRegisters: [UInt32] = []
    private var trackedHashes: [UInt64] = []

    public init(precision: Int = UniqueCounter.defaultPrecision) {
        precondition((4...18).contains(precision), "precision must be 4...18")
        self.precision = precision
        table = []
        exactCount = 0
        registers = []
    }

    public var isExact: Bool { registers.isEmpty }

    /// Adds one hashed value. The hash 0 counts as 1 in both phases (the exact table
    /// keeps 0 for an empty slot), so the registers do not depend on the phase a value
    /// arrived in.
    @inline(__always)
    public mutating func insert(_ hash: UInt64) {
        let hash = hash == 0 ? 1 : hash
        if registers.isEmpty {
            insertExact(hash)
        } else {
            insertRegister(hash)
        }
    }

    /// Starts loading what ``insert(_:)`` of `hash` will look at first (a cache hint:
    /// nothing changes). Mutating only so that reaching the storage costs a uniqueness
    /// check, not a retain and a release.
    @inline(__always)
    public mutating func prefetch(_ hash: UInt64) {
        if registers.isEmpty {
            guard !table.isEmpty else { return }  // nothing counted yet: no table
            table.withUnsafeMutableBufferPointer { table in
                guard let base = table.baseAddress else { return }
                pulse_prefetch_for_write(base + UniqueCounter.home(of: hash == 0 ? 1 : hash, slots: table.count))
            }
        } else {
            registers.withUnsafeMutableBufferPointer { registers in
                guard let base = registers.baseAddress else { return }
                pulse_prefetch_for_write(base + Int(hash &>> UInt64(64 - precision)))
            }
        }
    }

    /// Home slot from the top bits: the table then holds the hashes nearly in order,
    /// which makes the sorted form cheap (``sortedHashes``).
    @inline(__always)
    private static func home(of hash: UInt64, slots: Int) -> Int {
        Int(truncatingIfNeeded: hash >> UInt64(64 - slots.trailingZeroBitCount))
    }

    /// Where `hash` is in the exact table, or the empty slot where it goes (linear
    /// probing from its home; the table is never full).
    @inline(__always)
    private static func probe(_ hash: UInt64, in table: UnsafeBufferPointer<UInt64>) -> Int {
        let mask = table.count - 1
        var index = home(of: hash, slots: table.count)
        while true {
            let slot = table[index]
            if slot == hash || slot == 0 { return index }
            index = (index + 1) & mask
        }
    }

    private mutating func insertExact(_ hash: UInt64) {
        if table.isEmpty { table = Array(repeating: 0, count: 16) }
        let added = table.withUnsafeMutableBufferPointer { table in
            let index = Self.probe(hash, in: UnsafeBufferPointer(table))
            guard table[index] == 0 else { return false }
            table[index] = hash
            return true
        }
        guard added else { return }
        exactCount += 1
        if tracks {
            trackedHashes.append(hash)
            if trackedHashes.count > Self.addedHashLimit { stopTracking() }
        }
        if exactCount > UniqueCounter.exactLimit {
            densify()
        } else if exactCount * 2 > table.count {
            grow()
        }
    }

    private mutating func grow() {
        rehash(slots: table.count * 2)
    }

    /// Makes room for `count` exact hashes in all (at most the limit) at once, instead of
    /// doubling the table step by step as they arrive. Nothing for none: an empty counter
    /// (most retained and converting users of a partial) holds no table.
    private mutating func reserveExact(_ count: Int) {
        guard count > 0 else { return }
        var slots = max(16, table.count)
        while min(count, UniqueCounter.exactLimit) * 2 > slots { slots *= 2 }
        if slots > table.count { rehash(slots: slots) }
    }

    /// Moves the exact hashes into a table of `slots` slots (at least twice the count), in
    /// the old table's slot order: one probe each over raw buffers, the count unchanged.
    private mutating func rehash(slots: Int) {
        var fresh = [UInt64](repeating: 0, count: slots)
        table.withUnsafeBufferPointer { old in
            fresh.withUnsafeMutableBufferPointer { fresh in
                for hash in old where hash != 0 { fresh[Self.probe(hash, in: UnsafeBufferPointer(fresh))] = hash }
            }
        }
        table = fresh
    }

    private mutating func densify() {
        if tracks { stopTracking() }
        registers = Array(repeating: 0, count: 1 << precision)
        let table = table
        table.withUnsafeBufferPointer { table in Self.withHashes(of: table) { insertRegisters($0) } }
        self.table = []
        exactCount = 0
    }

    /// Calls `body` with the hashes of an exact table (zeros are empty slots), gathered
    /// into scratch memory without a branch per slot (each slot stored, the next store
    /// overwriting an empty one). A table is about half empty in random places, so
    /// skipping its empty slots by a branch mispredicts about every other slot.
    private static func withHashes<R>(of table: UnsafeBufferPointer<UInt64>, _ body: (UnsafeBufferPointer<UInt64>) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: table.count) { gathered in
            var count = 0
            for hash in table {
                gathered[count] = hash
                // 1 for a hash, 0 for an empty slot (its top bit, or that of its negation).
                count &+= Int(truncatingIfNeeded: (hash | (0 &- hash)) &>> 63)
            }
            return body(UnsafeBufferPointer(rebasing: gathered[..<count]))
        }
    }

    /// Adds `hashes` (none zero) to the registers, over raw buffers: no per-hash check
    /// of the phase, bounds or uniqueness, and a register raised by a conditional move.
    private mutating func insertRegisters(_ hashes: UnsafeBufferPointer<UInt64>) {
        let precision = precision
        registers.withUnsafeMutableBufferPointer { registers in
            for hash in hashes {
                let (index, rank) = Self.register(of: hash, precision: precision)
                registers[index] = max(registers[index], rank)
            }
        }
    }

    /// The register a hash goes to (its top `precision` bits) and its rank there (one
    /// more than the leading zeros of the rest, at most 64 − precision + 1). Without
    /// branches: masking shifts (the precision, 4...18, keeps both amounts below 64), and
    /// a bit set just below the rest caps its leading zeros at 64 − precision.
    @inline(__always)
    private static func register(of hash: UInt64, precision: Int) -> (index: Int, rank: UInt8) {
        let index = Int(truncatingIfNeeded: hash &>> UInt64(64 - precision))
        let rest = hash &<< UInt64(precision) | 1 &<< UInt64(precision - 1)
        let rank = UInt8(truncatingIfNeeded: rest.leadingZeroBitCount + 1)
        return (index, rank)
    }

    /// Adds `hashes` (none zero) while this counter is exact, with room reserved for all
    /// of them up to the limit (``reserveExact(_:)``); past the limit it densifies and
    /// adds the rest to the registers. A hash already present is stored over itself
    /// rather than skipped by a branch (merged sets overlap unpredictably).
    private mutating func insertExact(_ hashes: UnsafeBufferPointer<UInt64>) {
        var added = exactCount
        let limit = UniqueCounter.exactLimit
        let rest: Int? = table.withUnsafeMutableBufferPointer { table in
            for position in hashes.indices {
                let hash = hashes[position]
                let index = Self.probe(hash, in: UnsafeBufferPointer(table))
                added &+= table[index] == 0 ? 1 : 0
                table[index] = hash
                if added > limit { return position + 1 }
            }
            return nil
        }
        exactCount = added
        guard let rest else { return }
        densify()
        insertRegisters(UnsafeBufferPointer(rebasing: hashes[rest...]))
    }

    @inline(__always)
    private mutating func insertRegister(_ hash: UInt64) {
        let (index, rank) = Self.register(of: hash, precision: precision)
        if registers[index] < rank {
            registers[index] = rank
            if tracks { trackRegister(index) }
        }
    }

    /// The number of distinct values: exact while ``isExact``, else the estimate.
    public var count: Int {
        if registers.isEmpty { return exactCount }
        return Int(estimate().rounded())
    }

    private func estimate() -> Double {
        let q = 64 - precision
        let m = Double(1 << precision)
        let histogram = registerHistogram()
        var z = m * UniqueCounter.tau(1 - Double(histogram[q + 1]) / m)
        for k in stride(from: q, through: 1, by: -1) { z = 0.5 * (z + Double(histogram[k])) }
        z += m * UniqueCounter.sigma(Double(histogram[0]) / m)
        return m * m / (2 * log(2.0)) / z
    }

    /// How many registers hold each value (0 up to 64 − precision + 1). Registers are
    /// read eight at a time; a word of zeros counts at once, and the others go to four
    /// tallies by position, so that neighbouring registers of the same value do not wait
    /// on one counter (`pulse bench core --only sketches`: 6–7 µs instead of 41 µs with
    /// 1,500 values counted, about 10 instead of 13–17 µs when most registers are set).
    private func registerHistogram() -> [Int] {
        let values = 64 - precision + 2
        return registers.withUnsafeBytes { registers in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 4 * 64) { tallies in
                tallies.initialize(repeating: 0)
                var zeroWords = 0
                for word in stride(from: 0, to: registers.count, by: 8) {
                    let value = registers.loadUnaligned(fromByteOffset: word, as: UInt64.self)
                    if value == 0 {
                        zeroWords &+= 1
                        continue
                    }
                    for byte in 0..<8 {
                        tallies[(byte & 3) << 6 | Int(truncatingIfNeeded: (value >> UInt64(byte * 8)) & 0x3F)] &+= 1
                    }
                }
                var histogram = [Int](repeating: 0, count: values)
                for value in 0..<values {
                    histogram[value] = Int(tallies[value]) + Int(tallies[64 + value]) + Int(tallies[128 + value]) + Int(tallies[192 + value])
                }
                histogram[0] += zeroWords * 8
                return histogram
            }
        }
    }

    static func sigma(_ x0: Double) -> Double {
        guard x0 < 1 else { return .infinity }
        var x = x0
        var y = 1.0
        var z = x
        while true {
            x *= x
            let previous = z
            z += x * y
            y += y
            if z == previous { return z }
        }
    }

    static func tau(_ x0: Double) -> Double {
        guard x0 > 0, x0 < 1 else { return 0 }
        var x = x0
        var y = 1.0
        var z = 1 - x
        while true {
            x = x.squareRoot()
            let previous = z
            y *= 0.5
            z -= (1 - x) * (1 - x) * y
            if z == previous { return z / 3 }
        }
    }

    /// Adds everything `other` counted (same precision required).
    public mutating func merge(_ other: UniqueCounter) {
        precondition(precision == other.precision, "cannot merge sketches of different precision")
        if tracks { stopTracking() }
        if isExact && exactCount == 0 {
            // Other's values, not its record of changes.
            self = other
            stopTracking()
            return
        }
        if other.registers.isEmpty {
            guard other.exactCount > 0 else { return }
            if registers.isEmpty {
                reserveExact(exactCount + other.exactCount)
                other.table.withUnsafeBufferPointer { table in Self.withHashes(of: table) { insertExact($0) } }
            } else {
                other.table.withUnsafeBufferPointer { table in Self.withHashes(of: table) { insertRegisters($0) } }
            }
            return
        }
        if registers.isEmpty { densify() }
        // Register-wise maximum over raw buffers (no per-byte bounds or uniqueness checks;
        // the loop vectorizes).
        other.registers.withUnsafeBufferPointer { source in
            registers.withUnsafeMutableBufferPointer { target in
                for index in 0..<min(target.count, source.count) { target[index] = max(target[index], source[index]) }
            }
        }
    }

    public static func == (lhs: UniqueCounter, rhs: UniqueCounter) -> Bool {
        lhs.precision == rhs.precision && lhs.registers == rhs.registers && lhs.sortedHashes == rhs.sortedHashes
    }

    /// Registers that are not zero (counted eight at a time; the count is a multiple of 8).
    private var nonZeroRegisters: Int {
        registers.withUnsafeBytes { registers in
            var count = 0
            for word in stride(from: 0, to: registers.count, by: 8) {
                // The eight high bits moved to the low bit of each byte and summed into
                // the top byte by one multiplication (a population count without the
                // instruction, which the baseline x86-64 target lacks).
                let mask = Self.nonZeroBytes(registers.loadUnaligned(fromByteOffset: word, as: UInt64.self))
                count &+= Int(truncatingIfNeeded: ((mask >> 7) &* 0x0101_0101_0101_0101) >> 56)
            }
            return count
        }
    }

    /// The exact hashes in ascending order. Each sits at or a few slots after its home
    /// (top bits), so reading the table from an empty slot on, wrapping around, gives them
    /// nearly sorted: an insertion sort finishes in about linear time.
    private var sortedHashes: [UInt64] {
        guard exactCount > 0, let empty = table.firstIndex(of: 0) else { return [] }
        return [UInt64](unsafeUninitializedCapacity: exactCount) { sorted, count in
            table.withUnsafeBufferPointer { table in
                var index = empty
                for _ in 0..<table.count {
                    index = index + 1 == table.count ? 0 : index + 1
                    let hash = table[index]
                    guard hash != 0, count < sorted.count else { continue }
                    var position = count
                    while position > 0, sorted[position - 1] > hash {
                        sorted[position] = sorted[position - 1]
                        position -= 1
                    }
                    sorted[position] = hash
                    count += 1
                }
            }
        }
    }

    /// Heap bytes held (for sizing).
    public var memoryBytes: Int { table.capacity * 8 + registers.capacity + trackedRegisters.capacity * 4 + trackedHashes.capacity * 8 }

    // MARK: Changes

    /// What differs in this counter from an earlier version of it (its base), so that a
    /// checkpoint can write only that (``encode(_:into:)``) and a restore apply it to the
    /// base (``applying(changeFrom:)``).
    public enum Change: Sendable, Equatable {
        /// The same counter.
        case none
        /// Both in register form: the registers that differ, ascending (their values are
        /// this counter's).
        case registers([UInt32])
        /// Both exact: the hashes this counter holds and the base does not, ascending.
        case hashes([UInt64])
        /// Anything else (the form changed, the base held a hash this one lacks, or more
        /// registers differ or hashes were added than a change keeps): all of it.
        case whole
    }

    /// What differs from `base`; `earlier` is what already differed between the base
    /// before it and `base` (so the result is the change from that first base).
    public func change(since base: UniqueCounter, following earlier: Change = .none) -> Change {
        guard precision == base.precision else { return .whole }
        let step: Change
        switch (base.registers.isEmpty, registers.isEmpty) {
        case (false, false):
            var indices: [UInt32] = []
            registers.withUnsafeBytes { current in
                base.registers.withUnsafeBytes { base in
                    for word in stride(from: 0, to: current.count, by: 8) {
                        let difference = current.loadUnaligned(fromByteOffset: word, as: UInt64.self)
                            ^ base.loadUnaligned(fromByteOffset: word, as: UInt64.self)
                        guard difference != 0 else { continue }
                        var mask = Self.nonZeroBytes(difference)
                        while mask != 0 {
                            indices.append(UInt32(truncatingIfNeeded: word + mask.trailingZeroBitCount >> 3))
                            mask &= mask - 1
                        }
                    }
                }
            }
            step = indices.isEmpty ? .none : .registers(indices)
        case (true, true):
            guard base.exactCount <= exactCount, base.table.allSatisfy({ $0 == 0 || containsExact($0) }) else { return .whole }
            step = exactCount == base.exactCount ? .none : .hashes(table.filter { $0 != 0 && !base.containsExact($0) }.sorted())
        default:
            return .whole
        }
        switch (earlier, step) {
        case (.none, _):
            return capped(step)
        case (_, .none):
            return earlier
        case (.registers(let first), .registers(let second)):
            return capped(.registers(Self.union(first, second)))
        case (.hashes(let first), .hashes(let second)):
            return capped(.hashes(Self.union(first, second)))
        default:
            return .whole
        }
    }

    /// The most register changes or added hashes kept for a change: a sixteenth of the
    /// registers (two or three bytes each written, a third of a dense counter's four bits
    /// a register), a quarter of the exact limit. Past them the counter is written whole;
    /// they bound the memory a change holds until it is written.
    private var changedRegisterLimit: Int { registers.count / 16 }
    private static let addedHashLimit = exactLimit / 4

    private func capped(_ change: Change) -> Change {
        switch change {
        case .registers(let indices) where indices.count > changedRegisterLimit: .whole
        case .hashes(let hashes) where hashes.count > Self.addedHashLimit: .whole
        default: change
        }
    }

    /// The ascending union of two ascending arrays.
    private static func union<T: Comparable>(_ first: [T], _ second: [T]) -> [T] {
        var result: [T] = []
        result.reserveCapacity(first.count + second.count)
        var (i, j) = (0, 0)
        while i < first.count || j < second.count {
            if j == second.count || (i < first.count && first[i] < second[j]) {
                result.append(first[i])
                i += 1
            } else {
                if i < first.count && first[i] == second[j] { i += 1 }
                result.append(second[j])
                j += 1
            }
        }
        return result
    }

    /// Whether the exact table holds `hash` (not zero).
    private func containsExact(_ hash: UInt64) -> Bool {
        guard !table.isEmpty else { return false }
        return table.withUnsafeBufferPointer { table in table[Self.probe(hash, in: table)] == hash }
    }

    /// Starts recording what changes from here on, for ``trackedChange``.
    public mutating func startTracking() {
        tracks = true
        trackedRegisters = []
        trackedHashes = []
    }

    /// What changed since ``startTracking()``, as ``change(since:following:)`` of the
    /// counter then would give it: whole when not tracking, after a merge or a change of
    /// form, or past the limits of a change.
    public var trackedChange: Change {
        guard tracks else { return .whole }
        if registers.isEmpty { return trackedHashes.isEmpty ? .none : .hashes(trackedHashes.sorted()) }
        guard !trackedRegisters.isEmpty else { return .none }
        var indices: [UInt32] = []
        for index in trackedRegisters.sorted() where indices.last != index { indices.append(index) }
        return .registers(indices)
    }

    private mutating func trackRegister(_ index: Int) {
        trackedRegisters.append(UInt32(truncatingIfNeeded: index))
        if trackedRegisters.count > changedRegisterLimit { stopTracking() }
    }

    private mutating func stopTracking() {
        tracks = false
        trackedRegisters = []
        trackedHashes = []
    }

    /// Writes `change` (from ``change(since:following:)`` of this counter): a form (0 none,
    /// 1 the whole counter, 2 registers, 3 hashes) and what it needs: for registers their
    /// number, then each one's distance from the one before (from −1 for the first) and its
    /// value; for hashes their number and each as 8 bytes, little-endian.
    public func encode(_ change: Change, into writer: inout BinaryWriter) {
        switch change {
        case .none:
            writer.write(0)
        case .whole:
            writer.write(1)
            encode(into: &writer)
        case .registers(let indices):
            writer.write(2)
            writer.writeVarint(indices.count)
            var next = 0
            for index in indices.lazy.map({ Int($0) }) {
                writer.writeVarint(index - next)
                writer.write(registers[index])
                next = index + 1
            }
        case .hashes(let hashes):
            writer.write(3)
            Self.write(hashes, into: &writer)
        }
    }

    /// `hashes`' number, then each as a little-endian 64-bit word (stored at once).
    private static func write(_ hashes: [UInt64], into writer: inout BinaryWriter) {
        writer.writeVarint(hashes.count)
        writer.writeRaw(maximumCount: hashes.count * 8) { out in
            let raw = UnsafeMutableRawBufferPointer(out)
            for (position, hash) in hashes.enumerated() { raw.storeBytes(of: hash.littleEndian, toByteOffset: position * 8, as: UInt64.self) }
            return hashes.count * 8
        }
    }

    /// This counter (the base) with a change read from `reader` (written by
    /// ``encode(_:into:)`` of a later version) applied.
    public func applying(changeFrom reader: inout BinaryReader) throws(BinaryReader.Error) -> UniqueCounter {
        switch try reader.read() {
        case 0:
            return self
        case 1:
            return try UniqueCounter.decode(from: &reader)
        case 2:
            guard !registers.isEmpty else { throw BinaryReader.Error(message: "unique counter change: registers of an exact counter") }
            var result = self
            let limit = UInt8(65 - precision)
            var index = 0
            for _ in 0..<(try reader.readCount(limit: registers.count)) {
                index += try reader.readCount(limit: registers.count)
                let value = try reader.read()
                guard index < registers.count, value <= limit else { throw BinaryReader.Error(message: "unique counter change: register \(index)") }
                result.registers[index] = value
                index += 1
            }
            return result
        case 3:
            guard registers.isEmpty else { throw BinaryReader.Error(message: "unique counter change: hashes added to registers") }
            let count = try reader.readCount(limit: UniqueCounter.exactLimit)
            let hashes = try reader.readFixedBytes(count: count * 8)
            var result = self
            result.reserveExact(exactCount + count)
            let added = hashes.withUnsafeBytes { hashes in
                (0..<count).map { UInt64(littleEndian: hashes.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
            }
            for hash in added {
                guard hash != 0, !result.containsExact(hash) else { throw BinaryReader.Error(message: "unique counter change: hash 0 or one it holds") }
                result.insert(hash)
            }
            guard result.registers.isEmpty else { throw BinaryReader.Error(message: "unique counter change: more hashes than an exact counter holds") }
            return result
        default:
            throw BinaryReader.Error(message: "unique counter change form")
        }
    }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1

    /// Versioned binary form; identical counters give identical bytes. After the version
    /// and the precision, a mode:
    /// - 0: the exact hashes, sorted;
    /// - 1: registers as run lengths of zeros, each followed by a non-zero register (up to
    ///   a twelfth set, where two bytes per set register are the fewest);
    /// - 5: a bitmap of the non-zero registers, one bit each, then their values in
    ///   order, packed four bits each (up to three quarters set);
    /// - 4: every register, packed four bits each (more set).
    ///
    /// Packed four bits each: in blocks of 16 values, byte j of a block holds value j in
    /// its low half and value 8 + j in its high half (one shift and one OR per 16
    /// values); a last block of m < 16 values takes min(m, 8) bytes, its missing values
    /// zero. A four-bit value holds a register up to 15; a larger register (a rank of 16
    /// or more: about one value in 32,768 reaches one) holds 15 there and follows as an
    /// exception: their number, then for each its register's distance from the previous
    /// exception's (from −1 for the first) and its value. Modes 2 (every register, a byte
    /// each) and 3 (bitmap, then a byte per value), written before, are still read.
    public func encode(into writer: inout BinaryWriter) {
        writer.write(UniqueCounter.formatVersion)
        writer.write(UInt8(precision))
        if registers.isEmpty {
            writer.write(0)
            Self.write(sortedHashes, into: &writer)
            return
        }
        let set = nonZeroRegisters
        if set * 12 <= registers.count {
            writer.write(1)
            encodeZeroRuns(set: set, into: &writer)
            return
        }
        // Words of eight registers holding one above 15 (the first register's index, and
        // the high bit of each byte above 15), for the exceptions.
        var largeWords: [(word: Int, over: UInt64)] = []
        if set * 4 < registers.count * 3 {
            writer.write(5)
            registers.withUnsafeBytes { registers in
                let bitmapBytes = registers.count / 8
                // The bitmap as in mode 3; each word's non-zero registers, capped at 15,
                // gathered into scratch memory (each word's eight bytes stored whether set
                // or not, the next store overwriting a zero), zeros up to a whole block,
                // then packed.
                let blocks = (set + 15) / 16
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blocks * 16 + 8) { values in
                    writer.writeRaw(maximumCount: bitmapBytes + blocks * 8) { out in
                        var count = 0
                        for word in stride(from: 0, to: registers.count, by: 8) {
                            let raw = registers.loadUnaligned(fromByteOffset: word, as: UInt64.self)
                            out[word / 8] = UInt8(truncatingIfNeeded: ((Self.nonZeroBytes(raw) >> 7) &* 0x0102_0408_1020_4080) >> 56)
                            guard raw != 0 else { continue }
                            let (value, over) = Self.capped(raw)
                            if over != 0 { largeWords.append((word, over)) }
                            var rest = value
                            for _ in 0..<8 {
                                let register = UInt8(truncatingIfNeeded: rest)
                                values[count] = register
                                count &+= register == 0 ? 0 : 1
                                rest >>= 8
                            }
                        }
                        for index in count..<(blocks * 16) { values[index] = 0 }
                        let packed = UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(out)[bitmapBytes...])
                        let source = UnsafeRawBufferPointer(values)
                        for block in 0..<blocks {
                            let low = source.loadUnaligned(fromByteOffset: block * 16, as: UInt64.self)
                            let high = source.loadUnaligned(fromByteOffset: block * 16 + 8, as: UInt64.self)
                            packed.storeBytes(of: low | high << 4, toByteOffset: block * 8, as: UInt64.self)
                        }
                        return bitmapBytes + Self.packedCount(count)
                    }
                }
            }
        } else {
            writer.write(4)
            registers.withUnsafeBytes { registers in
                writer.writeRaw(maximumCount: registers.count / 2) { out in
                    let packed = UnsafeMutableRawBufferPointer(out)
                    for block in stride(from: 0, to: registers.count, by: 16) {
                        var low = registers.loadUnaligned(fromByteOffset: block, as: UInt64.self)
                        var high = registers.loadUnaligned(fromByteOffset: block + 8, as: UInt64.self)
                        if Self.hasLarge(low | high) {
                            let (cappedLow, overLow) = Self.capped(low)
                            let (cappedHigh, overHigh) = Self.capped(high)
                            if overLow != 0 { largeWords.append((block, overLow)) }
                            if overHigh != 0 { largeWords.append((block + 8, overHigh)) }
                            (low, high) = (cappedLow, cappedHigh)
                        }
                        packed.storeBytes(of: low | high << 4, toByteOffset: block / 2, as: UInt64.self)
                    }
                    return registers.count / 2
                }
            }
        }
        writer.writeVarint(largeWords.reduce(0) { $0 + $1.over.nonzeroBitCount })
        var previous = -1
        for (word, large) in largeWords {
            var over = large
            while over != 0 {
                let index = word + over.trailingZeroBitCount >> 3
                writer.writeVarint(index - previous - 1)
                writer.write(registers[index])
                previous = index
                over &= over - 1
            }
        }
    }

    /// The bytes `count` values packed four bits each take (blocks of 16 in 8 bytes; a
    /// last block of m values in min(m, 8)).
    static func packedCount(_ count: Int) -> Int {
        count / 16 * 8 + min(count % 16, 8)
    }

    /// Mode 1's body. Registers are read eight at a time and only the non-zero ones
    /// visited (a mask of non-zero bytes), written straight into the buffer: at most 3
    /// bytes of run length (runs < 2^21) and 1 of value per set register, plus the end.
    private func encodeZeroRuns(set: Int, into writer: inout BinaryWriter) {
        registers.withUnsafeBytes { registers in
            writer.writeRaw(maximumCount: set * 4 + 4) { out in
                var written = 0
                @inline(__always) func varint(_ value: Int) {
                    var rest = UInt(value)
                    while rest >= 0x80 {
                        out[written] = UInt8(truncatingIfNeeded: rest) | 0x80
                        written += 1
                        rest >>= 7
                    }
                    out[written] = UInt8(rest)
                    written += 1
                }
                var next = 0
                for word in stride(from: 0, to: registers.count, by: 8) {
                    var mask = Self.nonZeroBytes(registers.loadUnaligned(fromByteOffset: word, as: UInt64.self))
                    while mask != 0 {
                        let index = word + mask.trailingZeroBitCount >> 3
                        varint(index - next)
                        out[written] = registers[index]
                        written += 1
                        next = index + 1
                        mask &= mask - 1
                    }
                }
                varint(registers.count - next)
                out[written] = 0
                return written + 1
            }
        }
    }

    /// Whether a byte of `word` (all at most 65) is above 15.
    @inline(__always)
    static func hasLarge(_ word: UInt64) -> Bool {
        word & 0xF0F0_F0F0_F0F0_F0F0 != 0
    }

    /// Each byte of `word` (all at most 65) capped at 15, and the high bit of each byte
    /// that was above 15 (adding 0x70 carries a byte of 16 or more into its high bit, and
    /// no byte into the next).
    @inline(__always)
    static func capped(_ word: UInt64) -> (value: UInt64, over: UInt64) {
        let over = (word &+ 0x7070_7070_7070_7070) & 0x8080_8080_8080_8080
        let full = (over >> 7) &* 0xFF
        return ((word & ~full) | (0x0F0F_0F0F_0F0F_0F0F & full), over)
    }

    /// The high bit of each byte of `word` that is not zero.
    @inline(__always)
    static func nonZeroBytes(_ word: UInt64) -> UInt64 {
        let low: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
        return (((word & low) &+ low) | word) & ~low
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> UniqueCounter {
        try reader.expectVersion(formatVersion, of: "unique counter")
        let precision = Int(try reader.read())
        guard (4...18).contains(precision) else { throw BinaryReader.Error(message: "precision \(precision)") }
        var counter = UniqueCounter(precision: precision)
        switch try reader.read() {
        case 0:
            let count = try reader.readCount(limit: exactLimit)
            counter.reserveExact(count)
            let hashes = try reader.readFixedBytes(count: count * 8)
            hashes.withUnsafeBytes { hashes in
                for position in 0..<count {
                    counter.insert(UInt64(littleEndian: hashes.loadUnaligned(fromByteOffset: position * 8, as: UInt64.self)))
                }
            }
        case 1:
            counter.registers = Array(repeating: 0, count: 1 << precision)
            var index = 0
            while true {
                index += try reader.readCount(limit: 1 << precision)
                let value = try reader.read()
                if value == 0 { break }
                guard index < counter.registers.count, Int(value) <= 65 - precision else { throw BinaryReader.Error(message: "register \(index)") }
                counter.registers[index] = value
                index += 1
            }
        case 3:
            let bitmap = try reader.readFixedBytes(count: (1 << precision) / 8)
            let set = bitCount(bitmap)
            let values = try reader.readFixedBytes(count: set)
            let limit = UInt8(65 - precision)
            guard !values.contains(where: { $0 == 0 || $0 > limit }) else { throw BinaryReader.Error(message: "register 0 or above \(limit)") }
            counter.registers = values.withUnsafeBufferPointer { registers(placing: $0, at: bitmap, precision: precision) }
        case 4:
            let packed = try reader.readFixedBytes(count: (1 << precision) / 2)
            counter.registers = packed.withUnsafeBytes { unpacked($0, blocks: (1 << precision) / 16) }
            try counter.decodeExceptions(from: &reader)
        case 5:
            let bitmap = try reader.readFixedBytes(count: (1 << precision) / 8)
            let set = bitCount(bitmap)
            let packed = try reader.readFixedBytes(count: packedCount(set))
            let blocks = (set + 15) / 16
            let values = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: blocks * 8) { whole in
                // The last block's missing bytes as zeros.
                whole.initialize(repeating: 0)
                _ = whole.initialize(from: packed)
                return unpacked(UnsafeRawBufferPointer(whole), blocks: blocks)
            }
            // Every value 1 to 15, nothing after the last.
            guard !values[..<set].contains(0), !values[set...].contains(where: { $0 != 0 }) else {
                throw BinaryReader.Error(message: "register value 0, or a value after the last")
            }
            counter.registers = values.withUnsafeBufferPointer { registers(placing: $0, at: bitmap, precision: precision) }
            try counter.decodeExceptions(from: &reader)
        case 2:
            let registers = try reader.readFixedBytes(count: 1 << precision)
            let limit = UInt8(65 - precision)
            guard registers.reduce(0, { max($0, $1) }) <= limit else { throw BinaryReader.Error(message: "register above \(limit)") }
            counter.registers = Array(registers)
        default:
            throw BinaryReader.Error(message: "unique counter mode")
        }
        return counter
    }

    /// `blocks` blocks of 16 values packed four bits each (8 bytes per block in `packed`),
    /// a byte each.
    private static func unpacked(_ packed: UnsafeRawBufferPointer, blocks: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: blocks * 16) { values, count in
            let raw = UnsafeMutableRawBufferPointer(values)
            for block in 0..<blocks {
                let word = packed.loadUnaligned(fromByteOffset: block * 8, as: UInt64.self)
                raw.storeBytes(of: word & 0x0F0F_0F0F_0F0F_0F0F, toByteOffset: block * 16, as: UInt64.self)
                raw.storeBytes(of: word >> 4 & 0x0F0F_0F0F_0F0F_0F0F, toByteOffset: block * 16 + 8, as: UInt64.self)
            }
            count = blocks * 16
        }
    }

    /// Registers holding `values` in order at the bits set in `bitmap` (register 8 i + j
    /// is bit j of byte i), zero elsewhere; `values` holds one per bit set.
    private static func registers(placing values: UnsafeBufferPointer<UInt8>, at bitmap: ArraySlice<UInt8>, precision: Int) -> [UInt8] {
        var registers = [UInt8](repeating: 0, count: 1 << precision)
        registers.withUnsafeMutableBufferPointer { registers in
            bitmap.withUnsafeBufferPointer { bitmap in
                var next = 0
                for byte in 0..<bitmap.count {
                    var rest = bitmap[byte]
                    while rest != 0 {
                        registers[byte &* 8 &+ rest.trailingZeroBitCount] = values[next]
                        next &+= 1
                        rest &= rest &- 1
                    }
                }
            }
        }
        return registers
    }

    /// The bits set in `bitmap`, eight bytes at a time (below precision 6 there are fewer).
    private static func bitCount(_ bitmap: ArraySlice<UInt8>) -> Int {
        bitmap.withUnsafeBytes { bitmap in
            let words = bitmap.count / 8
            return (0..<words).reduce(0) { $0 + bitmap.loadUnaligned(fromByteOffset: $1 * 8, as: UInt64.self).nonzeroBitCount }
                + bitmap[(words * 8)...].reduce(0) { $0 + $1.nonzeroBitCount }
        }
    }

    /// Reads the exceptions of modes 4 and 5 into registers that hold 15, in ascending
    /// order, each above 15 and at most the largest possible rank.
    private mutating func decodeExceptions(from reader: inout BinaryReader) throws(BinaryReader.Error) {
        let count = try reader.readCount(limit: registers.count)
        let limit = UInt8(65 - precision)
        var index = -1
        for _ in 0..<count {
            index += try reader.readCount(limit: registers.count) + 1
            let value = try reader.read()
            guard index < registers.count, registers[index] == 15, value > 15, value <= limit else {
                throw BinaryReader.Error(message: "register exception \(index): \(value)")
            }
            registers[index] = value
        }
    }
}
