/// The versioned binary form of a counter.
extension UniqueCounter {
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
    static func registers(placing values: UnsafeBufferPointer<UInt8>, at bitmap: ArraySlice<UInt8>, precision: Int) -> [UInt8] {
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
