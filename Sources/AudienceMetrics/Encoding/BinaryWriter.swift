/// Appends a compact binary encoding (LEB128 varints, zigzag for signed values, raw
/// little-endian doubles) used for checkpoints and partial aggregates.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeVarint(_ value: Int) { writeVarint(UInt64(bitPattern: Int64(value))) }

    public mutating func writeSigned(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    public mutating func writeFixed64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeDouble(_ value: Double) { writeFixed64(value.bitPattern) }

    public mutating func writeBytes(_ value: some Collection<UInt8>) {
        writeVarint(value.count)
        bytes.append(contentsOf: value)
    }

    public mutating func writeString(_ value: String) { writeBytes(value.utf8) }

    /// Bytes written so far.
    public var count: Int { bytes.count }

    /// The ``Hash64`` of the bytes written from `start` on.
    public func hash(from start: Int) -> UInt64 {
        bytes.withUnsafeBytes { Hash64.hash(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }

    /// Drops the bytes written from `count` on.
    public mutating func truncate(to count: Int) {
        bytes.removeSubrange(count...)
    }

    /// Lets `body` write up to `maximumCount` bytes straight into the buffer (no
    /// per-byte appends) and keeps the number it returns.
    @inline(__always)
    public mutating func writeRaw(maximumCount: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) -> Int) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: maximumCount))
        let written = bytes.withUnsafeMutableBufferPointer { body(UnsafeMutableBufferPointer(rebasing: $0[start...])) }
        precondition((0...maximumCount).contains(written), "wrote beyond the reserved bytes")
        bytes.removeLast(maximumCount - written)
    }
}

/// Reads what ``BinaryWriter`` wrote; every read checks bounds and throws
/// ``BinaryReader/Error`` on truncated or corrupt input.
public struct BinaryReader {
    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public var message: String
        public init(message: String) { self.message = message }
        public var description: String { "corrupt binary state: \(message)" }
    }

    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    public var isAtEnd: Bool { offset == bytes.count }

    public mutating func read() throws(Error) -> UInt8 {
        guard offset < bytes.count else { throw Error(message: "unexpected end at \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readVarint() throws(Error) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try read()
            guard shift < 64 else { throw Error(message: "varint too long at \(offset)") }
            result |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    public mutating func readInt() throws(Error) -> Int {
        Int(Int64(bitPattern: try readVarint()))
    }

    /// A non-negative count no larger than `limit` (guards allocations from corrupt input).
    public mutating func readCount(limit: Int) throws(Error) -> Int {
        let value = try readVarint()
        guard value <= UInt64(limit) else { throw Error(message: "count \(value) exceeds \(limit) at \(offset)") }
        return Int(value)
    }

    public mutating func readSigned() throws(Error) -> Int64 {
        let raw = try readVarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    public mutating func readFixed64() throws(Error) -> UInt64 {
        guard bytes.count - offset >= 8 else { throw Error(message: "unexpected end at \(offset)") }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[offset + index]) << (8 * UInt64(index)) }
        offset += 8
        return value
    }

    public mutating func readDouble() throws(Error) -> Double { Double(bitPattern: try readFixed64()) }

    public mutating func readBytes(limit: Int = 1 << 24) throws(Error) -> ArraySlice<UInt8> {
        try readFixedBytes(count: try readCount(limit: limit))
    }

    /// The next `count` bytes (a length known from context, not written).
    public mutating func readFixedBytes(count: Int) throws(Error) -> ArraySlice<UInt8> {
        guard count >= 0, bytes.count - offset >= count else { throw Error(message: "unexpected end at \(offset)") }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func readString(limit: Int = 1 << 20) throws(Error) -> String {
        String(decoding: try readBytes(limit: limit), as: UTF8.self)
    }

    /// Checks a format version byte.
    public mutating func expectVersion(_ expected: UInt8, of what: String) throws(Error) {
        let version = try read()
        guard version == expected else { throw Error(message: "\(what) version \(version), expected \(expected)") }
    }

    /// Reads a format version byte that must lie in `supported`; returns it.
    public mutating func readVersion(_ supported: ClosedRange<UInt8>, of what: String) throws(Error) -> UInt8 {
        let version = try read()
        guard supported.contains(version) else { throw Error(message: "\(what) version \(version), expected \(supported.lowerBound)–\(supported.upperBound)") }
        return version
    }
}
