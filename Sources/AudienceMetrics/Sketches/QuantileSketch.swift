import Foundation

/// A DDSketch (Masson, Rim, Lee, VLDB 2019) of non-negative values: quantiles within a
/// relative error of ``relativeAccuracy`` (default 1 %), mergeable by adding bucket counts.
///
/// Values below 1 are counted as zero. Bucket `i` holds values in (γ^(i−1), γ^i] with
/// γ = (1+α)/(1−α); a quantile is answered with the bucket's midpoint 2γ^i/(γ+1), which is
/// within α of every value in the bucket. Count and sum are exact.
///
/// Memory: up to ``sparseLimit`` non-empty buckets are kept as sorted 8-byte (bucket,
/// count) entries; beyond that (or once a bucket counts 2³² values) as one 8-byte counter
/// per bucket between the smallest and largest value seen (ln(600,000)/ln γ ≈ 665 buckets
/// for 1 ms … 10 min at 1 %). Which form a sketch has depends only on what it counts, so
/// equal contents compare equal.
public struct QuantileSketch: Sendable, Equatable {
    /// Most non-empty buckets kept as sparse entries.
    public static let sparseLimit = 64

    public let relativeAccuracy: Double
    private let logGamma: Double
    /// Dense: the count of each bucket from `minIndex` on. Sparse: `bucket << 32 | count`
    /// per non-empty bucket, ascending.
    private var bins: [UInt64] = []
    private var minIndex = 0
    private var isDense = false
    public private(set) var zeroCount: UInt64 = 0
    /// Number of values added.
    public private(set) var count: UInt64 = 0
    /// Exact sum of values added.
    public private(set) var sum: Int64 = 0

    private static let countMask: UInt64 = 0xFFFF_FFFF
    /// Highest bucket index read from the binary form (2¹⁸ covers every Int64 value down
    /// to an accuracy of 0.01 %).
    private static let maxIndex = 1 << 18

    public init(relativeAccuracy: Double = 0.01) {
        precondition(relativeAccuracy >= 0.0001 && relativeAccuracy < 1, "relative accuracy must lie in [0.0001, 1)")
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

    /// Counts a value in ``count`` and ``sum`` only, for a deployment without quantiles
    /// (a sketch fed only this way answers no quantile).
    @inline(__always)
    public mutating func addToTotals(_ value: Int64) {
        count += 1
        sum &+= max(0, value)
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
        if isDense {
            addDense(index, 1)
            return
        }
        let position = sparsePosition(of: index)
        if position < bins.count, Int(bins[position] >> 32) == index {
            if bins[position] & Self.countMask != Self.countMask {
                bins[position] += 1
                return
            }
        } else if bins.count < Self.sparseLimit {
            bins.insert(UInt64(index) << 32 | 1, at: position)
            return
        }
        densify()
        addDense(index, 1)
    }

    /// The mean, exact; `nil` when empty.
    public var mean: Double? { count == 0 ? nil : Double(sum) / Double(count) }

    /// The value at quantile `q` (0…1), within the relative accuracy; `nil` when empty.
    public func quantile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = UInt64((q * Double(count - 1)).rounded(.down))
        if rank < zeroCount { return 0 }
        var seen = zeroCount
        var found: Int?
        forEachBucket { index, binCount in
            seen += binCount
            if seen > rank { found = index }
            return found == nil
        }
        guard let found else { return nil }
        return 2 * exp(Double(found) * logGamma) / (exp(logGamma) + 1)
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
            isDense = other.isDense
            return
        }
        if !isDense, !other.isDense, let merged = Self.mergedSparse(bins, other.bins) {
            bins = merged
            return
        }
        if !isDense { densify() }
        if other.isDense {
            extendDense(from: other.minIndex, through: other.minIndex + other.bins.count - 1)
            for (offset, binCount) in other.bins.enumerated() { bins[other.minIndex - minIndex + offset] += binCount }
        } else {
            extendDense(from: Int(other.bins[0] >> 32), through: Int(other.bins[other.bins.count - 1] >> 32))
            for entry in other.bins { bins[Int(entry >> 32) - minIndex] += entry & Self.countMask }
        }
    }

    public var memoryBytes: Int { bins.capacity * 8 }

    // MARK: Forms

    /// The first sparse entry whose bucket is at least `index`.
    @inline(__always)
    private func sparsePosition(of index: Int) -> Int {
        let key = UInt64(index) << 32
        var low = 0
        var high = bins.count
        while low < high {
            let middle = (low + high) / 2
            if bins[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// Both sparse entry lists added up, or `nil` when the sum is not sparse.
    private static func mergedSparse(_ left: [UInt64], _ right: [UInt64]) -> [UInt64]? {
        var merged: [UInt64] = []
        merged.reserveCapacity(min(left.count + right.count, sparseLimit))
        var l = 0
        var r = 0
        while l < left.count || r < right.count {
            let entry: UInt64
            if r == right.count || (l < left.count && left[l] >> 32 < right[r] >> 32) {
                entry = left[l]
                l += 1
            } else if l == left.count || right[r] >> 32 < left[l] >> 32 {
                entry = right[r]
                r += 1
            } else {
                let sum = (left[l] & countMask) + (right[r] & countMask)
                guard sum <= countMask else { return nil }
                entry = (left[l] >> 32) << 32 | sum
                l += 1
                r += 1
            }
            guard merged.count < sparseLimit else { return nil }
            merged.append(entry)
        }
        return merged
    }

    /// Turns the sparse entries into dense counters.
    private mutating func densify() {
        let entries = bins
        isDense = true
        bins = []
        minIndex = 0
        guard let first = entries.first, let last = entries.last else { return }
        minIndex = Int(first >> 32)
        bins = [UInt64](repeating: 0, count: Int(last >> 32) - minIndex + 1)
        for entry in entries { bins[Int(entry >> 32) - minIndex] = entry & Self.countMask }
    }

    /// Widens the dense counters to cover `low...high`.
    private mutating func extendDense(from low: Int, through high: Int) {
        if bins.isEmpty {
            minIndex = low
            bins = [UInt64](repeating: 0, count: high - low + 1)
            return
        }
        if low < minIndex {
            bins.insert(contentsOf: repeatElement(0, count: minIndex - low), at: 0)
            minIndex = low
        }
        if high >= minIndex + bins.count {
            bins.append(contentsOf: repeatElement(0, count: high - minIndex - bins.count + 1))
        }
    }

    @inline(__always)
    private mutating func addDense(_ index: Int, _ amount: UInt64) {
        extendDense(from: index, through: index)
        bins[index - minIndex] += amount
    }

    /// Calls `body` with each non-empty bucket in ascending order until it returns false.
    private func forEachBucket(_ body: (Int, UInt64) -> Bool) {
        if isDense {
            for (offset, binCount) in bins.enumerated() where binCount > 0 {
                guard body(minIndex + offset, binCount) else { return }
            }
        } else {
            for entry in bins {
                guard body(Int(entry >> 32), entry & Self.countMask) else { return }
            }
        }
    }

    /// Brings dense counters read from the binary form into the canonical form: empty
    /// buckets at either end dropped, sparse when few enough buckets are non-empty.
    private mutating func normalizeDense() {
        guard let first = bins.firstIndex(where: { $0 > 0 }), let last = bins.lastIndex(where: { $0 > 0 }) else {
            bins = []
            minIndex = 0
            isDense = false
            return
        }
        var nonEmpty = 0
        var largest: UInt64 = 0
        for binCount in bins[first...last] where binCount > 0 {
            nonEmpty += 1
            largest = max(largest, binCount)
        }
        if nonEmpty <= Self.sparseLimit, largest <= Self.countMask {
            var entries: [UInt64] = []
            entries.reserveCapacity(nonEmpty)
            for offset in first...last where bins[offset] > 0 { entries.append(UInt64(minIndex + offset) << 32 | bins[offset]) }
            bins = entries
            minIndex = 0
            isDense = false
        } else if first > 0 || last < bins.count - 1 {
            bins = Array(bins[first...last])
            minIndex += first
        }
    }

    // MARK: Binary form

    /// Version 2: a form byte, then sparse (non-empty buckets as index gap and count) or
    /// dense (first bucket, span, every count). Version 1, always dense, is still read.
    static let formatVersion: UInt8 = 2

    public func encode(into writer: inout BinaryWriter) {
        writer.write(QuantileSketch.formatVersion)
        writer.writeDouble(relativeAccuracy)
        writer.writeVarint(count)
        writer.writeSigned(sum)
        writer.writeVarint(zeroCount)
        if isDense {
            writer.write(UInt8(1))
            writer.writeSigned(Int64(minIndex))
            writer.writeVarint(bins.count)
            for binCount in bins { writer.writeVarint(binCount) }
        } else {
            writer.write(UInt8(0))
            writer.writeVarint(bins.count)
            var previous = 0
            for entry in bins {
                writer.writeVarint(Int(entry >> 32) - previous)
                writer.writeVarint(entry & Self.countMask)
                previous = Int(entry >> 32)
            }
        }
    }

    public static func decode(from reader: inout BinaryReader) throws(BinaryReader.Error) -> QuantileSketch {
        let version = try reader.readVersion(1...formatVersion, of: "quantile sketch")
        let accuracy = try reader.readDouble()
        guard accuracy >= 0.0001, accuracy < 1 else { throw BinaryReader.Error(message: "accuracy \(accuracy)") }
        var sketch = QuantileSketch(relativeAccuracy: accuracy)
        sketch.count = try reader.readVarint()
        sketch.sum = try reader.readSigned()
        sketch.zeroCount = try reader.readVarint()
        let form = version == 1 ? 1 : try reader.read()
        guard form <= 1 else { throw BinaryReader.Error(message: "quantile sketch form \(form)") }
        if form == 1 {
            let first = try reader.readSigned()
            let span = try reader.readCount(limit: 1 << 16)
            guard first >= 0, first + Int64(span) <= maxIndex else { throw BinaryReader.Error(message: "buckets \(first) + \(span)") }
            sketch.minIndex = Int(first)
            sketch.bins.reserveCapacity(span)
            for _ in 0..<span { sketch.bins.append(try reader.readVarint()) }
            sketch.isDense = true
            sketch.normalizeDense()
        } else {
            let nonEmpty = try reader.readCount(limit: sparseLimit)
            sketch.bins.reserveCapacity(nonEmpty)
            var index = 0
            for position in 0..<nonEmpty {
                let gap = try reader.readVarint()
                guard gap <= UInt64(maxIndex), position == 0 || gap > 0 else { throw BinaryReader.Error(message: "bucket gap \(gap)") }
                index += Int(gap)
                let binCount = try reader.readVarint()
                guard index <= maxIndex, binCount > 0, binCount <= countMask else {
                    throw BinaryReader.Error(message: "bucket \(index) count \(binCount)")
                }
                sketch.bins.append(UInt64(index) << 32 | binCount)
            }
        }
        return sketch
    }
}
