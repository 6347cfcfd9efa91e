import Synchronization

/// A bounded run's end (`processing.until_end`): the process stops once every stage-1
/// worker has read its input partitions to their ends (each partition's watermark then
/// moved to the clock, ``StageOne/finish(_:state:)``) and committed what that closed, and
/// stage 2 holds those end watermarks from every one of them and has committed the final
/// records they completed. Each stage reports after each of its cycles, and every stage's
/// loop stops once the run has ended (then drains as on SIGTERM: checkpoints, commits,
/// leaves its group).
final class BoundedRun: Sendable {
    /// Where stage 2 stands.
    enum Merging: Equatable {
        /// Not done: some end watermark has not arrived, a marker waits for finals, or the
        /// finals are not committed yet.
        case waiting
        /// Done against the end watermarks `ends` (``endWatermarks`` when it checked).
        case finished(ends: [Int32: Int64])
        /// It got its partitions and holds none (more processes than partials
        /// partitions): only stage 1 decides.
        case ownsNothing
    }

    private struct State {
        /// Per stage-1 worker: nil while it is not done; once done, the watermark each of
        /// its input partitions ended with.
        var workers: [[Int32: Int64]?]
        var merging = Merging.waiting
        var timeline = Timeline()
    }

    /// When the run's steps happened, for the benchmark's account of where its last
    /// moments go.
    struct Timeline: Sendable {
        /// The last input partition was read to its end.
        var inputEnded: ContinuousClock.Instant?
        /// Every stage-1 worker had committed what its partitions' ends closed.
        var stageOneDone: ContinuousClock.Instant?
        /// Stage 2 held every end watermark (and then committed what they completed).
        var stageTwoHeld: ContinuousClock.Instant?
        /// The run ended: the final records those end watermarks completed are committed.
        var ended: ContinuousClock.Instant?
    }

    private let state: Mutex<State>
    private let ended = Atomic<Bool>(false)

    init(workers: Int) {
        state = Mutex(State(workers: Array(repeating: nil, count: workers)))
    }

    /// Stage-1 worker `worker` has read all its partitions to their ends, with these
    /// watermarks, and committed what that produced; nil: it has not (or no longer).
    /// Returns true for the report that ends the run.
    @discardableResult
    func report(worker: Int, ends: [Int32: Int64]?) -> Bool {
        complete { $0.workers[worker] = ends }
    }

    /// A stage-1 worker read one of its input partitions to its end.
    func partitionEnded() {
        state.withLock { $0.timeline.inputEnded = .now }
    }

    /// Stage 2 holds every end watermark (its first cycle that does).
    func stageTwoHolds() {
        state.withLock { $0.timeline.stageTwoHeld = $0.timeline.stageTwoHeld ?? .now }
    }

    /// Returns true for the report that ends the run.
    @discardableResult
    func report(merging: Merging) -> Bool {
        complete { $0.merging = merging }
    }

    /// Once every worker is done: the watermark each of their input partitions ended with;
    /// nil before.
    var endWatermarks: [Int32: Int64]? {
        state.withLock { Self.ends(of: $0.workers) }
    }

    /// Whether the run has ended: the stages stop.
    var hasEnded: Bool { ended.load(ordering: .acquiring) }

    var timeline: Timeline { state.withLock { $0.timeline } }

    private static func ends(of workers: [[Int32: Int64]?]) -> [Int32: Int64]? {
        var merged: [Int32: Int64] = [:]
        for ends in workers {
            guard let ends else { return nil }
            merged.merge(ends) { max($0, $1) }
        }
        return merged
    }

    private func complete(_ change: (inout State) -> Void) -> Bool {
        state.withLock { state -> Bool in
            change(&state)
            guard !ended.load(ordering: .relaxed) else { return false }
            guard let ends = Self.ends(of: state.workers) else {
                state.timeline.stageOneDone = nil  // a worker finished again since
                return false
            }
            if state.timeline.stageOneDone == nil { state.timeline.stageOneDone = .now }
            switch state.merging {
            case .waiting: return false
            case .finished(let checked) where checked != ends: return false  // a worker finished again since
            case .finished, .ownsNothing: break
            }
            state.timeline.ended = .now
            ended.store(true, ordering: .releasing)
            return true
        }
    }
}
