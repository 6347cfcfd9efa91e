/// A fast, well-mixed 64-bit hash of bytes (wyhash-style multiply–fold), used for user
/// ids (HyperLogLog), event ids (de-duplication), content ids and segment keys.
///
/// Stable across processes and versions: hashes are stored in checkpoints and partials,
/// so changing this function is a versioned change of the state format.
public enum Hash64 {
    static let seed: UInt64 = 0x2d35_8dcc_aa6c_78a5
    static let secret0: UInt64 = 0x8bb8_4b93_962e_acc9
    static let secret1: UInt64 = 0x4b33_a62e_d433_d4a3

    @inline(__always)
    static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    @inline(__always)
    static func load64(_ p: UnsafeRawPointer, _ offset: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// The hash of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return mix(seed ^ secret0, secret1) }
        return hash(base, bytes.count)
    }

    static func hash(_ base: UnsafeRawPointer, _ count: Int) -> UInt64 {
        hash(base, count, padded: false)
    }

    /// The hash of `count` (> 0) bytes at `base` that are followed by at least seven more
    /// readable bytes (a decoder's scratch memory): a tail of up to seven bytes is read
    /// with one load and masked, not byte by byte. Equal to ``hash(_:)`` of the same bytes.
    @inline(__always)
    static func hash(paddedBytes base: UnsafeRawPointer, count: Int) -> UInt64 {
        hash(base, count, padded: true)
    }

    @inline(__always)
    private static func hash(_ base: UnsafeRawPointer, _ count: Int, padded: Bool) -> UInt64 {
        var h = seed ^ mix(seed ^ secret0, UInt64(truncatingIfNeeded: count) ^ secret1)
        var offset = 0
        while count - offset >= 16 {
            h = mix(load64(base, offset) ^ secret0 ^ h, load64(base, offset + 8) ^ secret1)
            offset += 16
        }
        var a: UInt64 = 0
        var b: UInt64 = 0
        let rest = count - offset
        if rest >= 8 {
            a = load64(base, offset)
            b = load64(base, count - 8)
        } else if rest > 0 && padded {
            a = load64(base, offset) & ((1 << UInt64(8 * rest)) &- 1)
        } else if rest > 0 {
            // Up to 7 bytes: pack them little-endian.
            for index in 0..<rest { a |= UInt64(base.load(fromByteOffset: offset + index, as: UInt8.self)) << (8 * UInt64(index)) }
        }
        h = mix(a ^ secret0 ^ h, b ^ secret1)
        return mix(h ^ secret1, secret0 ^ UInt64(truncatingIfNeeded: count))
    }

    /// The hash of a string's UTF-8 bytes (equal to hashing the same bytes directly).
    public static func hash(_ string: String) -> UInt64 {
        var copy = string
        return copy.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    /// Combines two hashes (order matters).
    @inline(__always)
    public static func combine(_ a: UInt64, _ b: UInt64) -> UInt64 {
        mix(a ^ secret0, b ^ secret1) ^ a
    }
}
