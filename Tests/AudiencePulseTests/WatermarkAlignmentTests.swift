@testable import AudiencePulse
import Testing

@Suite("Watermark alignment")
struct WatermarkAlignmentTests {
    @Test("a partition more than the drift ahead pauses; it resumes at half the drift; the slowest never pauses")
    func decisions() {
        let alignment = WatermarkAlignment(maxDrift: 10_000)
        #expect(alignment.decide(watermark: 1_000, slowest: 1_000, paused: false) == .keep)
        #expect(alignment.decide(watermark: 11_000, slowest: 1_000, paused: false) == .keep, "exactly the drift ahead")
        #expect(alignment.decide(watermark: 11_001, slowest: 1_000, paused: false) == .pause)
        #expect(alignment.decide(watermark: 7_000, slowest: 1_000, paused: true) == .keep, "more than half the drift ahead stays paused")
        #expect(alignment.decide(watermark: 6_000, slowest: 1_000, paused: true) == .resume)
        #expect(alignment.decide(watermark: 1_000, slowest: 1_000, paused: true) == .resume, "the slowest itself")
        #expect(alignment.decide(watermark: 50_000, slowest: nil, paused: true) == .resume, "nothing left to wait for")
        #expect(alignment.decide(watermark: .min, slowest: 1_000, paused: false) == .keep, "no watermark yet")
    }

    @Test("the slowest watermark is the minimum over the workers still reading")
    func slowestOverWorkers() {
        let alignment = WatermarkAlignment(maxDrift: 60_000)
        #expect(alignment.publish(worker: 0, slowest: 5_000) == 5_000)
        #expect(alignment.publish(worker: 1, slowest: 3_000) == 3_000)
        #expect(alignment.publish(worker: 0, slowest: 9_000) == 3_000)
        #expect(alignment.publish(worker: 1, slowest: nil) == 9_000, "a worker with nothing to read holds no one back")
        #expect(alignment.publish(worker: 0, slowest: nil) == nil)
        #expect(!WatermarkAlignment(maxDrift: 0).isEnabled)
    }
}
