import Testing

@testable import AudiencePulse

@Suite("When a bounded run ends")
struct BoundedRunStateTests {
    @Test("once every stage-1 worker reported its end watermarks and stage 2 finished against those same ones; the report that ends it says so, once")
    func endsOnce() {
        let run = BoundedRun(workers: 2)
        #expect(run.endWatermarks == nil)
        #expect(!run.report(worker: 0, ends: [0: 100, 2: 120]))
        #expect(run.endWatermarks == nil, "worker 1 is still reading")
        #expect(!run.report(merging: .finished(ends: [0: 100, 2: 120])), "checked without worker 1's partitions")
        #expect(!run.report(worker: 1, ends: [1: 110, 3: 130]))
        #expect(run.endWatermarks == [0: 100, 1: 110, 2: 120, 3: 130])
        #expect(!run.hasEnded, "stage 2 last checked against other ends")
        #expect(run.report(merging: .finished(ends: [0: 100, 1: 110, 2: 120, 3: 130])))
        #expect(run.hasEnded)
        #expect(!run.report(merging: .finished(ends: [0: 100, 1: 110, 2: 120, 3: 130])), "it ends once")
    }

    @Test("a worker that reads again (a partition arrived, or it rewound) holds the run back until it finishes again, with new end watermarks")
    func workerReadsAgain() {
        let run = BoundedRun(workers: 1)
        #expect(!run.report(worker: 0, ends: [0: 100]))
        #expect(!run.report(worker: 0, ends: nil))
        #expect(!run.report(merging: .finished(ends: [0: 100])))
        #expect(!run.report(worker: 0, ends: [0: 150]), "stage 2 finished against the earlier end")
        #expect(!run.hasEnded)
        #expect(!run.report(merging: .waiting))
        #expect(run.report(merging: .finished(ends: [0: 150])))
    }

    @Test("a stage 2 that got no partition leaves the decision to stage 1; one still waiting holds it back")
    func stageTwoWithoutPartitions() {
        let run = BoundedRun(workers: 1)
        #expect(!run.report(merging: .waiting))
        #expect(!run.report(worker: 0, ends: [0: 100]))
        #expect(run.report(merging: .ownsNothing))
        #expect(run.hasEnded)
    }

    @Test("stage 2 forwards updates every 100 ms live and every update_interval (at least 100 ms) in a bounded run")
    func updateSpacing() {
        #expect(StageTwo.updateSpacing(updateInterval: 1_000, bounded: false) == .milliseconds(100))
        #expect(StageTwo.updateSpacing(updateInterval: 5_000, bounded: false) == .milliseconds(100))
        #expect(StageTwo.updateSpacing(updateInterval: 1_000, bounded: true) == .seconds(1))
        #expect(StageTwo.updateSpacing(updateInterval: 5_000, bounded: true) == .seconds(5))
        #expect(StageTwo.updateSpacing(updateInterval: 20, bounded: true) == .milliseconds(100))
    }
}
