import Testing

@testable import AudiencePulse

@Suite("When a stage commits")
struct StageCommitterTests {
    @Test("without awaited outputs at the commit interval; with updates or finals waiting after the prompt spacing")
    func commitIsDue() {
        let last = ContinuousClock.now
        let spacing = StageCommitter.promptCommitSpacing
        let interval: Int64 = 250
        func due(after elapsed: Duration, awaited: Bool) -> Bool {
            StageCommitter.isDue(lastCommit: last, now: last.advanced(by: elapsed), interval: interval, awaitedOutputs: awaited)
        }
        #expect(spacing < .milliseconds(interval))
        // Only offsets to commit: the interval decides.
        #expect(!due(after: spacing, awaited: false))
        #expect(!due(after: .milliseconds(interval - 1), awaited: false))
        #expect(due(after: .milliseconds(interval), awaited: false))
        // Updates or finals waiting: committed once the last commit is the spacing old.
        #expect(!due(after: .zero, awaited: true))
        #expect(!due(after: spacing - .milliseconds(1), awaited: true))
        #expect(due(after: spacing, awaited: true))
        #expect(due(after: .milliseconds(interval), awaited: true))
    }
}
