import AudienceMetrics
import AudiencePulse
import Testing

@Suite("Latency percentiles of the latency benchmark (HdrHistogram)")
struct LatencyPercentilesTests {
    @Test("percentiles within 0.1 % of the exact ones over the same values, the maximum exact, -1 when empty, negative as 0")
    func againstExactPercentiles() {
        var empty = LatencyPercentiles()
        #expect(empty.count == 0 && empty.percentile(50) == -1 && empty.max == -1)
        empty.record(-3)
        #expect(empty.count == 1 && empty.percentile(99) == 0 && empty.max == 0, "a negative value counts as 0")

        // A skewed spread like the benchmark's: most around a second, a tail to 4 s.
        var generator = SplitMix64(seed: 42)
        var values: [Int64] = []
        var histogram = LatencyPercentiles()
        for _ in 0..<200_000 {
            let base = Int64(generator.next() % 1_000) + 400
            let value = generator.next() % 100 == 0 ? base * 4 : base
            values.append(value)
            histogram.record(value)
        }
        values.sort()
        #expect(histogram.count == values.count)
        #expect(histogram.max == values[values.count - 1])
        for percentile in [50.0, 90.0, 99.0, 99.9] {
            // The exact value at the percentile: the smallest with at least that share at or below it.
            let exact = values[Int((percentile / 100 * Double(values.count)).rounded(.up)) - 1]
            let reported = histogram.percentile(percentile)
            #expect(abs(Double(reported - exact)) <= Double(exact) * 0.001 + 1, "p\(percentile): \(reported) against \(exact)")
        }
    }
}
