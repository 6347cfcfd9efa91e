import Foundation
@testable import AudienceMetrics
import Testing

@Suite("Sketches: unique users, quantiles, heavy hitters")
struct SketchTests {
    @Test("unique counts are exact up to the exact limit")
    func exactBelowLimit() {
        var counter = UniqueCounter()
        for value in 0..<UniqueCounter.exactLimit {
            counter.insert(Hash64.hash("user-\(value)"))
            counter.insert(Hash64.hash("user-\(value)"))
        }
        #expect(counter.isExact)
        #expect(counter.count == UniqueCounter.exactLimit)
        counter.insert(Hash64.hash("one more"))
        #expect(!counter.isExact)
    }

    @Test("unique-count error stays within the stated 1 % standard error", arguments: [2_000, 10_000, 100_000, 1_000_000])
    func accuracy(cardinality: Int) {
        // Several independent runs: the RMS relative error estimates the standard error.
        var squares = 0.0
        let runs = cardinality >= 1_000_000 ? 2 : 6
        for run in 0..<runs {
            var counter = UniqueCounter()
            for value in 0..<cardinality { counter.insert(Hash64.hash("run\(run)-user-\(value)")) }
            let error = Double(counter.count - cardinality) / Double(cardinality)
            #expect(abs(error) < 0.035, "run \(run): \(counter.count) for \(cardinality)")
            squares += error * error
        }
        let rms = (squares / Double(runs)).squareRoot()
        #expect(rms < 0.02, "RMS relative error \(rms)")
    }

    /// Exact into exact (below the limit, and past it half-way through), exact into
    /// registers, registers into exact, registers into registers; the hash 0 included (it
    /// counts as 1 in both phases).
    @Test("merging counters equals counting the union, exactly and in registers")
    func mergeEqualsUnion() throws {
        for (a, b) in [(300, 400), (800, 900), (1_000, 200), (5_000, 300), (300, 5_000), (5_000, 7_000)] {
            var left = UniqueCounter()
            var right = UniqueCounter()
            var union = UniqueCounter()
            for value in 0..<a {
                left.insert(Hash64.hash("u\(value)"))
                union.insert(Hash64.hash("u\(value)"))
            }
            for value in (a / 2)..<(a / 2 + b) {
                right.insert(Hash64.hash("u\(value)"))
                union.insert(Hash64.hash("u\(value)"))
            }
            right.insert(0)
            union.insert(0)
            left.merge(right)
            #expect(left == union, "\(a) and \(b) values")
            #expect(left.count == union.count)
            if union.isExact { #expect(union.count == max(a, a / 2 + b) + 1) }
            var writer = BinaryWriter()
            left.encode(into: &writer)
            var reader = BinaryReader(writer.bytes)
            let decoded = try UniqueCounter.decode(from: &reader)
            #expect(decoded == left)
            #expect(decoded.count == left.count)
        }
    }

    /// Registers 1 and 2 get hashes whose bits after the index are all zero (the rank's
    /// cap, 64 − 14 + 1 = 51) and all zero but the last (rank 50); register 0 holds rank 1
    /// from the 1,100 hashes that make the counter use registers. Read from mode 1 of the
    /// binary form: a zero run, then a register, for each set one.
    @Test("a register holds one more than the leading zeros after its index bits, capped at 64 − precision + 1, inserted or merged in")
    func registerRanks() throws {
        let precision = 14
        var dense = UniqueCounter(precision: precision)
        for low in 1...1_100 { dense.insert(UInt64(1) << UInt64(63 - precision) | UInt64(low)) }
        #expect(!dense.isExact)
        let capped = UInt64(1) << UInt64(64 - precision)
        let nextToCapped = UInt64(2) << UInt64(64 - precision) | 1
        var inserted = dense
        inserted.insert(capped)
        inserted.insert(nextToCapped)
        var exact = UniqueCounter(precision: precision)
        exact.insert(capped)
        exact.insert(nextToCapped)
        var merged = dense
        merged.merge(exact)
        for counter in [inserted, merged] {
            var writer = BinaryWriter()
            counter.encode(into: &writer)
            #expect(Array(writer.bytes[2..<9]) == [1, 0, 1, 0, 51, 0, 50])
        }
    }

    @Test("binary form, exact phase: the same values in any order give the same bytes, hashes ascending")
    func exactEncoding() throws {
        let values = (0..<900).map { Hash64.hash("x\($0)") } + [0]
        var forward = UniqueCounter()
        var backward = UniqueCounter()
        for value in values { forward.insert(value) }
        for value in values.reversed() { backward.insert(value) }
        var first = BinaryWriter()
        forward.encode(into: &first)
        var second = BinaryWriter()
        backward.encode(into: &second)
        #expect(first.bytes == second.bytes)
        #expect(try Self.exactHashes(first.bytes) == values.map { $0 == 0 ? 1 : $0 }.sorted())
    }

    /// The hashes an exact counter's binary form lists, in its order (after the version,
    /// the precision and the mode).
    static func exactHashes(_ bytes: [UInt8]) throws -> [UInt64] {
        var reader = BinaryReader(bytes)
        _ = try reader.readFixedBytes(count: 3)
        let count = try reader.readCount(limit: UniqueCounter.exactLimit)
        return try (0..<count).map { _ in try reader.readFixed64() }
    }

    @Test("hashes whose probe runs cross the exact table's end are found again and written in ascending order")
    func exactTableWraps() throws {
        // The home slot is a hash's top bits: these all start at the table's last slot
        // whatever its size, and run on from its first.
        let high = (0..<8).map { UInt64.max - UInt64($0) * 3 }
        let low: [UInt64] = [5, 9]
        var counter = UniqueCounter()
        for value in high + low { counter.insert(value) }
        for value in low + high { counter.insert(value) }
        #expect(counter.count == 10)
        var writer = BinaryWriter()
        counter.encode(into: &writer)
        #expect(try Self.exactHashes(writer.bytes) == (high + low).sorted())
    }

    @Test("an empty counter holds no memory, whether new, decoded or merged from empty ones; a small one a table sized for its values")
    func emptyCounterMemory() throws {
        var writer = BinaryWriter()
        UniqueCounter().encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        var decoded = try UniqueCounter.decode(from: &reader)
        #expect(UniqueCounter().memoryBytes == 0)
        #expect(decoded.memoryBytes == 0)
        decoded.merge(UniqueCounter())
        #expect(decoded.memoryBytes == 0 && decoded.count == 0)
        var small = UniqueCounter()
        for value in 0..<5 { small.insert(Hash64.hash("s\(value)")) }
        var smallWriter = BinaryWriter()
        small.encode(into: &smallWriter)
        var smallReader = BinaryReader(smallWriter.bytes)
        let smallDecoded = try UniqueCounter.decode(from: &smallReader)
        #expect(smallDecoded == small)
        // 16 slots of 8 bytes, plus what the allocator rounds a block up by: an array's
        // capacity is the block's usable size, and glibc leaves a remainder smaller than its
        // least block (32 bytes) inside the block it hands out, so up to 4 slots more.
        #expect(smallDecoded.memoryBytes <= 16 * 8 + 32)
    }

    @Test("binary form: sparse registers as zero runs, a bitmap and four-bit values up to three quarters set, four-bit registers beyond, large ones as exceptions (the bytes of plain reference encoders); all round-trip",
          arguments: [(1_100, UInt8(1), 0), (1_300, UInt8(1), 3), (2_300, UInt8(5), 0), (5_000, UInt8(5), 2), (12_000, UInt8(5), 5),
                      (30_000, UInt8(4), 0), (60_000, UInt8(4), 7)])
    func registerEncodings(cardinality: Int, mode: UInt8, large: Int) throws {
        // `large` registers made to rank 16 or more (16, 17, … 50) with crafted hashes:
        // bucket in the top 14 bits, then that many zeros.
        var hashes = (0..<cardinality).map { Hash64.hash("e\($0)") }
        for index in 0..<large {
            let rank = index == large - 1 ? 50 : 16 + index
            hashes.append(UInt64(3_001 + 1_000 * index) << 50 | (rank == 50 ? 0 : UInt64(1) << (50 - rank)))
        }
        var counter = UniqueCounter()
        for hash in hashes { counter.insert(hash) }
        var writer = BinaryWriter()
        counter.encode(into: &writer)
        let bytes = writer.bytes
        #expect(bytes[2] == mode)
        var reader = BinaryReader(bytes)
        let decoded = try UniqueCounter.decode(from: &reader)
        #expect(reader.isAtEnd)
        #expect(decoded == counter)
        #expect(decoded.count == counter.count)
        // Registers computed here from the hashes (HyperLogLog: bucket = top 14 bits,
        // rank = leading zeros + 1).
        var registers = [UInt8](repeating: 0, count: 1 << 14)
        for hash in hashes {
            let rank = UInt8(min((hash << 14).leadingZeroBitCount, 50) + 1)
            registers[Int(hash >> 50)] = max(registers[Int(hash >> 50)], rank)
        }
        #expect(registers.filter { $0 > 15 }.count >= large)
        let set = registers.filter { $0 != 0 }.count
        var reference = BinaryWriter()
        reference.write(1)
        reference.write(14)
        reference.write(mode)
        switch mode {
        case 4, 5:
            // Four-bit values, 15 for a large register, in blocks of 16: byte j holds value
            // j and value 8 + j (high half), a last block of m values min(m, 8) bytes;
            // mode 5 writes the bitmap (register 8 i + j is bit j of byte i) and only the
            // non-zero ones.
            #expect(mode == 4 ? set * 4 >= registers.count * 3 : set * 4 < registers.count * 3 && set * 12 > registers.count)
            if mode == 5 {
                for byte in 0..<(registers.count / 8) {
                    var bits: UInt8 = 0
                    for bit in 0..<8 where registers[byte * 8 + bit] != 0 { bits |= 1 << bit }
                    reference.write(bits)
                }
            }
            let values = (mode == 4 ? registers : registers.filter { $0 != 0 }).map { min($0, 15) }
            for block in stride(from: 0, to: values.count, by: 16) {
                for byte in 0..<min(values.count - block, 8) {
                    reference.write(values[block + byte] | (block + 8 + byte < values.count ? values[block + 8 + byte] << 4 : 0))
                }
            }
            let exceptions = registers.indices.filter { registers[$0] > 15 }
            reference.writeVarint(exceptions.count)
            var previous = -1
            for index in exceptions {
                reference.writeVarint(index - previous - 1)
                reference.write(registers[index])
                previous = index
            }
            #expect(reference.bytes == bytes)
            // Refused: a register exception above the largest possible rank, or of 15 or
            // less, or whose four-bit value is not 15; in mode 5 a value of zero.
            var corruptions: [[UInt8]] = []
            if !exceptions.isEmpty {
                for value in [UInt8(52), 15, 14] {
                    var corrupt = bytes
                    corrupt[corrupt.count - 1] = value
                    corruptions.append(corrupt)
                }
                var corrupt = bytes
                corrupt[corrupt.count - 2] = 0  // the last exception moved to a register after the one before
                corruptions.append(corrupt)
            }
            if mode == 5 {
                // A value of zero; a value after the last (in the high half of a last
                // block's byte that has none).
                var corrupt = bytes
                corrupt[3 + 2048] &= 0xF0
                corruptions.append(corrupt)
                let count = values.count
                if count % 16 != 0 && count % 16 <= 8 {
                    var padded = bytes
                    padded[3 + 2048 + count / 16 * 8] |= 0x10
                    corruptions.append(padded)
                }
            }
            for corrupt in corruptions {
                var corruptReader = BinaryReader(corrupt)
                #expect(throws: BinaryReader.Error.self) { try UniqueCounter.decode(from: &corruptReader) }
            }
            var truncated = BinaryReader(Array(bytes.dropLast()))
            #expect(throws: BinaryReader.Error.self) { try UniqueCounter.decode(from: &truncated) }
        default:
            #expect(set * 12 <= registers.count)
            // The same bytes as a register-by-register encoder of zero runs.
            var zeros = 0
            for register in registers {
                if register == 0 {
                    zeros += 1
                } else {
                    reference.writeVarint(zeros)
                    reference.write(register)
                    zeros = 0
                }
            }
            reference.writeVarint(zeros)
            reference.write(0)
            #expect(reference.bytes == bytes)
        }
        // The forms written before modes 4 and 5 still read: every register a byte (2),
        // a bitmap then a byte per non-zero register (3).
        var raw = BinaryWriter()
        for byte: UInt8 in [1, 14, 2] { raw.write(byte) }
        for register in registers { raw.write(register) }
        var bitmapped = BinaryWriter()
        for byte: UInt8 in [1, 14, 3] { bitmapped.write(byte) }
        for byte in 0..<(registers.count / 8) {
            var bits: UInt8 = 0
            for bit in 0..<8 where registers[byte * 8 + bit] != 0 { bits |= 1 << bit }
            bitmapped.write(bits)
        }
        for register in registers where register != 0 { bitmapped.write(register) }
        for legacy in [raw.bytes, bitmapped.bytes] {
            var legacyReader = BinaryReader(legacy)
            #expect(try UniqueCounter.decode(from: &legacyReader) == counter)
            #expect(legacyReader.isAtEnd)
        }
        // A raw register above the largest possible rank is refused, and so is a bitmap
        // value of zero.
        for (legacy, offset) in [(raw.bytes, 3 + 100), (bitmapped.bytes, 3 + 2048)] {
            var corrupt = legacy
            corrupt[offset] = offset == 3 + 100 ? 60 : 0
            var corruptReader = BinaryReader(corrupt)
            #expect(throws: BinaryReader.Error.self) { try UniqueCounter.decode(from: &corruptReader) }
        }
    }

    @Test("every binary form round-trips at every precision, however many registers are set", arguments: [4, 5, 6, 9, 14])
    func registerEncodingsAtPrecision(precision: Int) throws {
        var modes = Set<UInt8>()
        for cardinality in [0, 3, 1_025, 1_100, 1_500, 2_500, 4_000, 9_000, 20_000, 60_000] {
            var counter = UniqueCounter(precision: precision)
            for value in 0..<cardinality { counter.insert(Hash64.hash("p\(precision)-\(value)")) }
            var writer = BinaryWriter()
            counter.encode(into: &writer)
            modes.insert(writer.bytes[2])
            var reader = BinaryReader(writer.bytes)
            let decoded = try UniqueCounter.decode(from: &reader)
            #expect(reader.isAtEnd)
            #expect(decoded == counter, "precision \(precision), \(cardinality) values")
            #expect(decoded.count == counter.count)
        }
        // Exact, and past the limit the registers' forms (all three where the register
        // count leaves room for run lengths below a twelfth).
        #expect(modes.isSuperset(of: precision >= 14 ? [0, 1, 4, 5] : [0, 4]), "forms used: \(modes.sorted())")
    }

    /// Encodes `counter`'s `change` and applies it to `base`.
    static func applied(_ change: UniqueCounter.Change, of counter: UniqueCounter, to base: UniqueCounter) throws -> UniqueCounter {
        var writer = BinaryWriter()
        counter.encode(change, into: &writer)
        var reader = BinaryReader(writer.bytes)
        let result = try base.applying(changeFrom: &reader)
        #expect(reader.isAtEnd)
        return result
    }

    @Test("a counter's changes over several versions, applied to the first, give the last: added hashes, changed registers, whole past a form change or a change's limits; recorded while values are inserted, the same")
    func changesAcrossVersions() throws {
        // Versions of one growing counter, from empty through exact to dense registers.
        let steps = [0, 1, 40, 40, 200, 400, 1_024, 1_025, 1_300, 2_000, 2_000, 2_900, 6_000, 6_050, 40_000]
        func value(_ number: Int) -> UInt64 { Hash64.hash("change-\(number)") }
        var versions: [UniqueCounter] = []
        var counter = UniqueCounter()
        var inserted = 0
        for target in steps {
            while inserted < target {
                counter.insert(value(inserted))
                inserted += 1
            }
            versions.append(counter)
        }
        var kinds = Set<String>()
        for first in versions.indices {
            var change = UniqueCounter.Change.none
            for next in (first + 1)..<versions.count {
                change = versions[next].change(since: versions[next - 1], following: change)
                let restored = try Self.applied(change, of: versions[next], to: versions[first])
                #expect(restored == versions[next], "from \(steps[first]) through \(steps[next]) values: \(change)")
                var whole = BinaryWriter()
                versions[next].encode(into: &whole)
                var again = BinaryWriter()
                restored.encode(into: &again)
                #expect(whole.bytes == again.bytes)
                switch change {
                case .none: kinds.insert("none")
                case .hashes: kinds.insert("hashes")
                case .registers: kinds.insert("registers")
                case .whole: kinds.insert("whole")
                }
                // Recorded while the values are inserted into the first version.
                var tracked = versions[first]
                tracked.startTracking()
                for number in steps[first]..<steps[next] { tracked.insert(value(number)) }
                let recorded = tracked.trackedChange
                #expect(try Self.applied(recorded, of: tracked, to: versions[first]) == versions[next], "recorded from \(steps[first]) to \(steps[next])")
                if recorded != .whole && change != .whole { #expect(recorded == change) }
                // One step's change on its own: written only from the form on both sides,
                // within the limits (256 hashes, 1,024 registers).
                let step = versions[next].change(since: versions[next - 1])
                let added = steps[next] - steps[next - 1]
                switch (versions[next - 1].isExact, versions[next].isExact, step) {
                case (_, _, .none): #expect(added == 0)
                case (true, true, .hashes(let hashes)): #expect(hashes.count == added && added <= 256)
                case (false, false, .registers(let changed)): #expect(!changed.isEmpty && changed.count <= 1_024)
                case (true, true, .whole): #expect(added > 256)
                case (false, false, .whole): #expect(added > 1_024)
                case (true, false, .whole): break
                default: Issue.record("step \(steps[next - 1]) → \(steps[next]): \(step)")
                }
            }
        }
        #expect(kinds == ["none", "hashes", "registers", "whole"])
        // A base holding a hash the later version lacks: the whole counter.
        var other = UniqueCounter()
        other.insert(Hash64.hash("elsewhere"))
        #expect(versions[2].change(since: other) == .whole)
        // A merge while recording: the whole counter; not recording: the whole counter.
        var merged = versions[9]
        merged.startTracking()
        merged.merge(versions[4])
        #expect(merged.trackedChange == .whole)
        #expect(versions[9].trackedChange == .whole)
    }

    @Test("a counter change that does not fit its base is refused: registers onto an exact counter, hashes onto registers or already held, past the exact limit, a register out of range")
    func changesThatDoNotFit() throws {
        var exact = UniqueCounter()
        for value in 0..<10 { exact.insert(Hash64.hash("fit-\(value)")) }
        var dense = UniqueCounter()
        for value in 0..<3_000 { dense.insert(Hash64.hash("fit-\(value)")) }
        var denser = dense
        for value in 3_000..<3_100 { denser.insert(Hash64.hash("fit-\(value)")) }
        var larger = exact
        for value in 10..<20 { larger.insert(Hash64.hash("fit-\(value)")) }
        let registers = denser.change(since: dense)
        let hashes = larger.change(since: exact)
        #expect(throws: BinaryReader.Error.self) { try Self.applied(registers, of: denser, to: exact) }
        #expect(throws: BinaryReader.Error.self) { try Self.applied(hashes, of: larger, to: dense) }
        // Hashes the base already holds (applied twice).
        #expect(throws: BinaryReader.Error.self) { try Self.applied(hashes, of: larger, to: larger) }
        // More hashes than an exact counter holds.
        var full = UniqueCounter()
        for value in 0..<1_020 { full.insert(Hash64.hash("full-\(value)")) }
        #expect(throws: BinaryReader.Error.self) { try Self.applied(hashes, of: larger, to: full) }
        // A register index past the last, and a value above the largest rank.
        for bytes: [UInt8] in [[2, 1, 0x80, 0x80, 0x01, 3], [2, 1, 5, 60]] {
            var reader = BinaryReader(bytes)
            #expect(throws: BinaryReader.Error.self) { try dense.applying(changeFrom: &reader) }
        }
        #expect(try Self.applied(registers, of: denser, to: dense) == denser)
        #expect(try Self.applied(hashes, of: larger, to: exact) == larger)
    }

    @Test("quantiles are within 1 % of the exact ones, and merged sketches equal one sketch")
    func quantiles() throws {
        var generator = SplitMix64(seed: 7)
        var values: [Int64] = []
        var whole = QuantileSketch()
        var parts = [QuantileSketch(), QuantileSketch(), QuantileSketch()]
        for index in 0..<50_000 {
            // Log-normal-ish dwell times from 0 ms to minutes.
            let value = index % 50 == 0 ? 0 : Int64(pow(10, 1 + 4 * Double(generator.next() % 10_000) / 10_000))
            values.append(value)
            whole.add(value)
            parts[index % 3].add(value)
        }
        values.sort()
        for q in [0.01, 0.25, 0.5, 0.9, 0.99, 0.999] {
            let exact = Double(values[Int((q * Double(values.count - 1)).rounded(.down))])
            let estimate = try #require(whole.quantile(q))
            if exact == 0 {
                #expect(estimate == 0)
            } else {
                #expect(abs(estimate - exact) / exact <= 0.01, "q\(q): \(estimate) vs \(exact)")
            }
        }
        #expect(whole.count == 50_000)
        #expect(whole.sum == values.reduce(0, +))
        try Self.expectMergedAndDecoded(parts, equal: whole)
    }

    /// The parts merged (in the order given) and `whole` after a round trip through its
    /// binary form both equal `whole`.
    static func expectMergedAndDecoded(_ parts: [QuantileSketch], equal whole: QuantileSketch) throws {
        var merged = parts[0]
        for part in parts.dropFirst() { merged.merge(part) }
        #expect(merged == whole)
        var writer = BinaryWriter()
        whole.encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        #expect(try QuantileSketch.decode(from: &reader) == whole)
    }

    @Test("quantile sketch: sparse up to 64 buckets, dense beyond; added, merged and decoded sketches of the same values are equal",
          arguments: [1, 8, 63, 64, 65, 300])
    func quantileForms(distinctBuckets: Int) throws {
        var generator = SplitMix64(seed: UInt64(distinctBuckets))
        // One value per bucket index 100, 102, …, then repeats, shuffled.
        let gamma = 1.02 / 0.98
        let distinct = (0..<distinctBuckets).map { Int64(pow(gamma, Double(100 + 2 * $0)).rounded(.down)) }
        var values = distinct + (0..<500).map { _ in distinct[Int(generator.next() % UInt64(distinctBuckets))] }
        values.append(0)
        for index in values.indices.reversed() { values.swapAt(index, Int(generator.next() % UInt64(index + 1))) }
        var whole = QuantileSketch()
        var parts = [QuantileSketch(), QuantileSketch(), QuantileSketch()]
        for (index, value) in values.enumerated() {
            whole.add(value)
            parts[index % 3].add(value)
        }
        #expect(Set(distinct.map { whole.bucket(of: $0) }).count == distinctBuckets)
        try Self.expectMergedAndDecoded([parts[2], parts[0], parts[1]], equal: whole)
        // Sparse: 8 bytes per non-empty bucket, at most twice that as the array grows,
        // plus what the allocator rounds a block up by (one 16-byte step: the array's
        // capacity is the block's usable size, 129 slots instead of 128 in one run).
        // Dense: 8 bytes per bucket of the span.
        if distinctBuckets <= QuantileSketch.sparseLimit {
            #expect(whole.memoryBytes <= 2 * 8 * distinctBuckets + 16)
        } else {
            #expect(whole.memoryBytes >= 8 * (2 * distinctBuckets - 1))
        }
        values.sort()
        for q in stride(from: 0.0, through: 1.0, by: 0.01) {
            let exact = Double(values[Int((q * Double(values.count - 1)).rounded(.down))])
            let estimate = try #require(whole.quantile(q))
            #expect(exact == 0 ? estimate == 0 : abs(estimate - exact) / exact <= 0.01, "q\(q): \(estimate) vs \(exact)")
        }
    }

    @Test("quantile sketch: the version-1 binary form (every bucket of the span) still reads; a bucket past 2³² values stays exact")
    func quantileVersionOne() throws {
        var writer = BinaryWriter()
        writer.write(UInt8(1))
        writer.writeDouble(0.01)
        let big: UInt64 = 5_000_000_000
        writer.writeVarint(big + 3)
        writer.writeSigned(Int64(big) * 1_000 + 30_000)
        writer.writeVarint(UInt64(0))
        var reference = QuantileSketch()
        let index = reference.bucket(of: 1_000)
        writer.writeSigned(Int64(index))
        writer.writeVarint(3)
        // Buckets `index` (5,000,000,000 values) and `index + 2` (3 values).
        for binCount in [big, 0, 3] as [UInt64] { writer.writeVarint(binCount) }
        var reader = BinaryReader(writer.bytes)
        var decoded = try QuantileSketch.decode(from: &reader)
        #expect(reader.isAtEnd)
        #expect(decoded.count == big + 3)
        let low = try #require(decoded.quantile(0.5))
        #expect(abs(low - 1_000) / 1_000 <= 0.01)
        let high = try #require(decoded.quantile(1))
        #expect(high > 1_000 * 1.03 && high < 1_000 * 1.05)
        // Adding to and merging with the big bucket keeps exact counts.
        reference.add(1_000)
        decoded.merge(reference)
        decoded.add(1_000)
        #expect(decoded.count == big + 5)
        var again = BinaryWriter()
        decoded.encode(into: &again)
        var rereader = BinaryReader(again.bytes)
        #expect(try QuantileSketch.decode(from: &rereader) == decoded)
        // The old form of a few values, with empty buckets at both ends, reads as the
        // sketch that adds them.
        var added = QuantileSketch()
        for value: Int64 in [1_000, 1_000, 5_000, 0] { added.add(value) }
        let low5000 = added.bucket(of: 5_000)
        var old = BinaryWriter()
        old.write(UInt8(1))
        old.writeDouble(0.01)
        old.writeVarint(UInt64(4))
        old.writeSigned(7_000)
        old.writeVarint(UInt64(1))
        old.writeSigned(Int64(index - 1))
        old.writeVarint(low5000 - index + 3)
        for offset in (index - 1)...(low5000 + 1) {
            old.writeVarint(offset == index ? UInt64(2) : offset == low5000 ? 1 : 0)
        }
        var oldReader = BinaryReader(old.bytes)
        #expect(try QuantileSketch.decode(from: &oldReader) == added)
    }

    @Test("top content replaces the first counter with the smallest count, as a plain Space-Saving scan does")
    func topContentVictim() {
        for (seed, items, capacity) in [(UInt64(1), 30, 8), (2, 200, 16), (3, 12, 11), (4, 1_000, 64)] {
            var generator = SplitMix64(seed: seed)
            var sketch = TopK(capacity: capacity)
            // The reference: counters in positions, each new item replaces the first
            // counter holding the smallest count (a full scan every time).
            var reference: [(hash: UInt64, count: Int64, error: Int64)] = []
            for _ in 0..<20_000 {
                // Half the draws from a few frequent items, so counts spread out and ties
                // at the smallest count come and go.
                let draw = generator.next()
                let hash = Hash64.hash("item-\(draw % 2 == 0 ? draw % 5 : draw % UInt64(items))")
                sketch.add(hash: hash)
                if let position = reference.firstIndex(where: { $0.hash == hash }) {
                    reference[position].count += 1
                } else if reference.count < capacity {
                    reference.append((hash, 1, 0))
                } else {
                    var victim = 0
                    for candidate in reference.indices where reference[candidate].count < reference[victim].count { victim = candidate }
                    let floor = reference[victim].count
                    reference[victim] = (hash, floor + 1, floor)
                }
            }
            let expected = reference.map { "#" + String($0.hash, radix: 16) + " \($0.count) \($0.error)" }.sorted()
            let found = sketch.top(capacity).map { "\($0.name) \($0.count) \($0.error)" }.sorted()
            #expect(found == expected, "seed \(seed): \(items) items, \(capacity) counters")
        }
    }

    @Test("a full summary's index keeps its size however many items pass through, and finds every tracked item")
    func topContentIndexBounded() {
        var sketch = TopK(capacity: 64)
        var generator = SplitMix64(seed: 5)
        // Thousands of distinct items, each replacing a counter and leaving its entry.
        for step in 0..<50_000 {
            let draw = generator.next()
            sketch.add(hash: Hash64.hash(step % 3 == 0 ? "hot-\(draw % 20)" : "item-\(draw % 20_000)"))
        }
        #expect(sketch.indexSlotCount == 4 * 64)
        // Every tracked item is found, not entered again: counting each once more adds 1.
        let before = sketch.top(64)
        for item in before { sketch.add(hash: UInt64(item.name.dropFirst(), radix: 16) ?? 0) }
        #expect(sketch.top(64).map { "\($0.name) \($0.count) \($0.error)" }.sorted()
                == before.map { "\($0.name) \($0.count + 1) \($0.error)" }.sorted())
    }

    @Test("a summary restored from its binary form evicts as the original would: same counters, same bytes")
    func topContentRestored() throws {
        var original = TopK(capacity: 16)
        for item in 0..<16 { original.add(hash: Hash64.hash("tied-\(item)")) }
        var writer = BinaryWriter()
        original.encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        var restored = try TopK.decode(from: &reader)
        // All 16 counters tie at 1: the first new item replaces the first of them by
        // position, so the restored summary must keep the original's positions.
        var generator = SplitMix64(seed: 11)
        for _ in 0..<2_000 {
            let draw = generator.next()
            let hash = Hash64.hash(draw % 10 < 6 ? "hot-\(draw % 8)" : "rare-\(draw % 40)")
            original.add(hash: hash)
            restored.add(hash: hash)
            #expect(restored.top(16) == original.top(16))
            if restored.top(16) != original.top(16) { break }
        }
        var originalBytes = BinaryWriter()
        original.encode(into: &originalBytes)
        var restoredBytes = BinaryWriter()
        restored.encode(into: &restoredBytes)
        #expect(restoredBytes.bytes == originalBytes.bytes)
    }

    @Test("the top k items are the first k of all items by count, ties by name, however many counts tie")
    func topItemsWithTies() {
        var random = SplitMix64(seed: 7)
        for round in 0..<200 {
            // Few distinct counts, so many counters tie at the cut; some items named.
            var summary = TopK(capacity: 16)
            let pool = 4 + Int(random.next() % 40)
            for _ in 0..<(Int(random.next() % 120)) { summary.add(hash: 1 + random.next() % UInt64(pool)) }
            summary.attachNames { $0 % 3 == 0 ? nil : "item-\($0 % 7)-\($0)" }
            let all = summary.top(summary.capacity)
            for k in 0...(summary.capacity + 2) {
                #expect(summary.top(k) == Array(all.prefix(k)), "round \(round), k \(k)")
            }
            // The reference itself: counts descending, ties by name.
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.count > $1.count || ($0.count == $1.count && $0.name < $1.name) })
        }
    }

    @Test("heavy hitters of a Zipf stream are found with exact counts for the top items")
    func topContent() throws {
        var generator = SplitMix64(seed: 3)
        // Zipf(1.1) over 5,000 articles.
        let weights = (1...5_000).map { 1 / pow(Double($0), 1.1) }
        let total = weights.reduce(0, +)
        var cumulative: [Double] = []
        var sum = 0.0
        for weight in weights {
            sum += weight / total
            cumulative.append(sum)
        }
        var exact: [String: Int64] = [:]
        var sketch = TopK(capacity: 64)
        var halves = [TopK(capacity: 64), TopK(capacity: 64)]
        for index in 0..<100_000 {
            let u = Double(generator.next() % 1_000_000) / 1_000_000
            let article = "article-\(cumulative.firstIndex { $0 >= u } ?? 4_999)"
            exact[article, default: 0] += 1
            sketch.add(hash: Hash64.hash(article))
            halves[index % 2].add(hash: Hash64.hash(article))
        }
        let namesByHash = Dictionary(uniqueKeysWithValues: exact.keys.map { (Hash64.hash($0), $0) })
        sketch.attachNames { namesByHash[$0] }
        halves[0].attachNames { namesByHash[$0] }
        halves[1].attachNames { namesByHash[$0] }
        let trueTop = exact.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(10)
        let found = sketch.top(10)
        #expect(found.map(\.name) == trueTop.map(\.key))
        for item in found { #expect(item.count - item.error <= exact[item.name] ?? 0 && exact[item.name] ?? 0 <= item.count) }
        var merged = halves[0]
        merged.merge(halves[1])
        #expect(Set(merged.top(5).map(\.name)) == Set(trueTop.prefix(5).map(\.key)))
        var writer = BinaryWriter()
        sketch.encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        var decoded = try TopK.decode(from: &reader)
        #expect(decoded == sketch)
        // A decoded summary counts and merges on as the original does (its index is built
        // on first use), evictions included.
        var decodedHalves = try halves.map { half in
            var halfWriter = BinaryWriter()
            half.encode(into: &halfWriter)
            var halfReader = BinaryReader(halfWriter.bytes)
            return try TopK.decode(from: &halfReader)
        }
        for item in 0..<2_000 {
            let hash = Hash64.hash("late-\(item % 300)")
            sketch.add(hash: hash)
            decoded.add(hash: hash)
            halves[item % 2].add(hash: hash)
            decodedHalves[item % 2].add(hash: hash)
        }
        #expect(decoded == sketch)
        merged = halves[0]
        merged.merge(halves[1])
        decodedHalves[0].merge(decodedHalves[1])
        #expect(decodedHalves[0] == merged)
        // The same item twice is refused.
        var twice = BinaryWriter()
        twice.write(UInt8(2))
        twice.writeVarint(64)
        twice.writeVarint(2)
        for _ in 0..<2 {
            twice.writeFixed64(42)
            twice.writeString("article-1")
            twice.writeSigned(3)
            twice.writeSigned(0)
        }
        var twiceReader = BinaryReader(twice.bytes)
        #expect(throws: BinaryReader.Error.self) { try TopK.decode(from: &twiceReader) }
    }

    /// A summary's counters in their positions, read from its binary form.
    static func positions(of sketch: TopK) throws -> [(hash: UInt64, count: Int64, error: Int64)] {
        var writer = BinaryWriter()
        sketch.encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        _ = try reader.read()
        _ = try reader.readVarint()
        return try (0..<reader.readVarint()).map { _ in
            let hash = try reader.readFixed64()
            _ = try reader.readString()
            return (hash, try reader.readSigned(), try reader.readSigned())
        }
    }

    @Test("a merge past the capacity keeps the largest counts, ties by hash, in that order (as sorting every counter would)")
    func topContentMergeCut() throws {
        // (seed, summaries merged, capacity, items drawn from): few draws per item, so many
        // counters tie; 40 summaries as a 10-minute window's slices from 4 partitions; items
        // from a range so wide that nearly every count is 1 and the hash decides.
        for (seed, parts, capacity, items) in [(UInt64(1), 5, 16, 128), (2, 12, 64, 512), (3, 6, 1, 8), (4, 3, 7, 56), (5, 40, 64, 512),
                                               (6, 9, 256, 2_048), (7, 30, 32, 1 << 40)] {
            var generator = SplitMix64(seed: seed)
            var summaries: [TopK] = []
            for _ in 0..<parts {
                var summary = TopK(capacity: capacity)
                for _ in 0..<(capacity * 6) { summary.add(hash: Hash64.hash("item-\(generator.next() % UInt64(items))")) }
                summaries.append(summary)
            }
            var union: [UInt64: (count: Int64, error: Int64)] = [:]
            for summary in summaries {
                for counter in try Self.positions(of: summary) {
                    union[counter.hash, default: (0, 0)].count += counter.count
                    union[counter.hash, default: (0, 0)].error += counter.error
                }
            }
            #expect(union.count > capacity, "seed \(seed): the merge must cut")
            let expected = union.sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
                .prefix(capacity).map { "\($0.key) \($0.value.count) \($0.value.error)" }
            var merged = TopK(capacity: capacity)
            merged.merge(summaries)
            #expect(try Self.positions(of: merged).map { "\($0.hash) \($0.count) \($0.error)" } == Array(expected), "seed \(seed)")
        }
    }
}
