import Foundation

/// A DDSketch (Masson, Rim, Lee, VLDB 2019) of non-negative values: quantiles within a
/// relative error of ``relativeAccuracy`` (default 1 %), mergeable by adding bucket counts.
///
/// Values below 1 are counted as zero. Bucket `i` holds values in (γ^(i−1), γ^i] with
/// γ = (1+α)/(1−α); a quantile is answered with the bucket's midpoint 2γ^i/(γ+1), which is
/// within α of every value in the bucket. Memory: one 8-byte counter per bucket between
/// the smallest and largest value seen (ln(600,000)/ln γ ≈ 665 buckets for 1 ms … 10 min at 1 %).
/// Count and sum are exact.
public struct QuantileSketch: Sendable, Equatable {
    public let relativeAccuracy: Double
    private let logGamma: Double
    private var bins: [UInt64] = []
    private var minIndex = 0
    public private(set) var zeroCount: UInt64 = 0
    /// Number of values added.
    public private(set) var count: UInt64 = 0
    /// Exact sum of values added.
    public private(set) var sum: Int64 = 0

    public init(relativeAccuracy: Double = 0.01) {
        self.relativeAccuracy = relativeAccuracy
        logGamma = log((1 + relativeAccuracy) / (1 - relativeAccuracy))
    }

    /// Adds a value (negative values are clamped to zero).
    @inline(__always)
    public mutating func add(_ value: Int64) {
        add(value, bucket: bucket(of: value))
    }

    /// The bucket index of `value` (compute once, add to several sketches of the same
    /// accuracy with ``add(_:bucket:)``).
    @inline(__always)
    public func bucket(of value: Int64) -> Int {
        value >= 1 ? Int((log(Double(value)) / logGamma).rounded(.up)) : .min
    }

    /// Adds a value whose bucket was computed by ``bucket(of:)``.
    @inline(__always)
    public mutating func add(_ value: Int64, bucket index: Int) {
        count += 1
        sum &+= max(0, value)
        guard value >= 1 else {
            zeroCount += 1
            return
        }
        if bins.isEmpty {
            minIndex = index
            bins = [1]
            return
        }
        if index < minIndex {
            bins.insert(contentsOf: repeatElement(0, count: minIndex - index), at: 0)
            minIndex = index
        } else if index >= minIndex + bins.count {
            bins.append(contentsOf: repeatElement(0, count: index - minIndex - bins.count + 1))
        }
        bins[index - minIndex] += 1
    }

    /// The mean, exact; `nil` when empty.
    public var mean: Double? { count == 0 ? nil : Double(sum) / Double(count) }

    /// The value at quantile `q` (0…1), within the relative accuracy; `nil` when empty.
    public func quantile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = UInt64((q * Double(count - 1)).rounded(.down))
        if rank < zeroCount { return 0 }
        var seen = zeroCount
        for (offset, binCount) in bins.enumerated() where binCount > 0 {
            seen += binCount
            if seen > rank {
                let gamma = exp(logGamma)
                return 2 * exp(Double(minIndex + offset) * logGamma) / (gamma + 1)
            }
        }
        return nil
    }

    /// Adds everything `other` holds (same accuracy required).
    public mutating func merge(_ other: QuantileSketch) {
        precondition(relativeAccuracy == other.relativeAccuracy, "cannot merge sketches of different accuracy")
        count += other.count
        sum &+= other.sum
        zeroCount += other.zeroCount
        guard !other.bins.isEmpty else { return }
        if bins.isEmpty {
            bins = other.bins
            minIndex = other.minIndex
            return
        }
        let low = min(minIndex, other.minIndex)
        let high = max(minIndex + bins.count, other.minIndex + other.bins.count)
        if low < minIndex { bins.insert(contentsOf: repeatElement(0, count: minIndex - low), at: 0) }
        minIndex = low
        if bins.count < high - low { bins.append(contentsOf: repeatElement(0, count: high - low - bins.count)) }
        for (offset, binCount) in other.bins.enumerated() { bins[other.minIndex - minIndex + offset] += binCount }
    }

    public var memoryBytes: Int { bins.capacity * 8 }

    // MARK: Binary form

    static let formatVersion: UInt8 = 1

    public func encode(into writer: inout BinaryWriter) {
        writer.write(QuantileSketch.formatVersion)
        writer.writeDouble(relativeAccuracy)
        writer.writeVarint(count)
        writer.writeSigned(sum)
        writer.writeVarint(zeroCount)
        writer.writeSigned(Int64(minIndex))
        writer.writeVarint(bins.count)
        for binCount in bins { writer.writeVarint(binCount) }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> QuantileSketch {
        try reader.expectVersion(formatVersion, of: "quantile sketch")
        let accuracy = try reader.readDouble()
        guard accuracy > 0, accuracy < 1 else { throw BinaryReader.Error(message: "accuracy \(accuracy)") }
        var sketch = QuantileSketch(relativeAccuracy: accuracy)
        sketch.count = try reader.readVarint()
        sketch.sum = try reader.readSigned()
        sketch.zeroCount = try reader.readVarint()
        sketch.minIndex = Int(try reader.readSigned())
        let binCount = try reader.readCount(limit: 1 << 16)
        sketch.bins = []
        sketch.bins.reserveCapacity(binCount)
        for _ in 0..<binCount { sketch.bins.append(try reader.readVarint()) }
        return sketch
    }
}
