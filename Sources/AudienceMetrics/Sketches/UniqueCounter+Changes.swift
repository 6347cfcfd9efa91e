/// Changes since an earlier version of a counter, which incremental checkpoints write.
extension UniqueCounter {
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
    static let addedHashLimit = exactLimit / 4

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

    mutating func trackRegister(_ index: Int) {
        trackedRegisters.append(UInt32(truncatingIfNeeded: index))
        if trackedRegisters.count > changedRegisterLimit { stopTracking() }
    }

    mutating func stopTracking() {
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
    static func write(_ hashes: [UInt64], into writer: inout BinaryWriter) {
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
}
