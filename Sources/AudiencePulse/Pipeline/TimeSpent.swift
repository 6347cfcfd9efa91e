/// Wall time of the stage loop by activity: waiting in polls, processing records, closing
/// windows, emitting updates, committing transactions, writing checkpoints.
struct TimeSpent {
    var poll = Duration.zero
    var process = Duration.zero
    var close = Duration.zero
    var updates = Duration.zero
    var commit = Duration.zero
    var checkpoint = Duration.zero
    /// Commits between checkpoints (their time is ``commit``).
    var commits = 0

    /// Does what the stage's cadence says is due (``StageCommitter/due(at:checkpointInterval:commitInterval:)``),
    /// a checkpoint or a commit, and adds the time it took.
    mutating func perform(_ step: StageCommitter.Step?, clock: ContinuousClock, checkpoint: () throws -> Void, commit: () throws -> Void) throws {
        let started = clock.now
        switch step {
        case .checkpoint:
            try checkpoint()
            self.checkpoint += clock.now - started
        case .commit:
            try commit()
            self.commit += clock.now - started
            commits += 1
        case nil:
            break
        }
    }
}
