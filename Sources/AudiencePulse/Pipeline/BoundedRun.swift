import Synchronization

/// A bounded run's end (`processing.until_end`): the process stops once every stage-1
/// worker has read its input partitions to their ends and committed what that closed,
/// and stage 2 has produced the final record of every window its partitions hold (every
/// input partition's end marker arrived, nothing waits). Each stage reports after each of
/// its cycles, and every stage's loop stops once the run has ended (then drains as on
/// SIGTERM: checkpoints, commits, leaves its group).
final class BoundedRun: Sendable {
    /// Where stage 2 stands.
    enum Merging: Equatable {
        /// An input partition's end marker or a window's final record is missing, or the
        /// finals are not committed yet.
        case waiting
        /// Every window of its partitions is final and committed.
        case finished
        /// It got its partitions and holds none (more processes than partials
        /// partitions): only stage 1 decides.
        case ownsNothing
    }

    private struct State {
        var workers: [Bool]
        var merging = Merging.waiting
    }

    private let state: Mutex<State>
    private let ended = Atomic<Bool>(false)

    init(workers: Int) {
        state = Mutex(State(workers: Array(repeating: false, count: workers)))
    }

    /// Stage-1 worker `worker` has (or no longer has) read all its partitions to their
    /// ends and committed what that produced. Returns true for the report that ends the run.
    @discardableResult
    func report(worker: Int, finished: Bool) -> Bool {
        complete { $0.workers[worker] = finished }
    }

    /// Returns true for the report that ends the run.
    @discardableResult
    func report(merging: Merging) -> Bool {
        complete { $0.merging = merging }
    }

    /// Whether the run has ended: the stages stop.
    var hasEnded: Bool { ended.load(ordering: .acquiring) }

    private func complete(_ change: (inout State) -> Void) -> Bool {
        state.withLock { state -> Bool in
            change(&state)
            guard !ended.load(ordering: .relaxed), state.merging != .waiting, !state.workers.contains(false) else { return false }
            ended.store(true, ordering: .releasing)
            return true
        }
    }
}
