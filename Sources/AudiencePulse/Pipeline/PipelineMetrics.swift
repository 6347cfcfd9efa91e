import Synchronization

/// Counters of both stages, read by the Prometheus endpoint and the logs. Atomic; any
/// thread may read or add.
final class PipelineMetrics: Sendable {
    let consumed = Atomic<Int>(0)
    let valid = Atomic<Int>(0)
    let invalid = Atomic<Int>(0)
    let duplicates = Atomic<Int>(0)
    let late = Atomic<Int>(0)
    let deadLettered = Atomic<Int>(0)
    let partialsProduced = Atomic<Int>(0)
    let windowsClosed = Atomic<Int>(0)
    let checkpoints = Atomic<Int>(0)
    let transactionCommits = Atomic<Int>(0)
    let transactionAborts = Atomic<Int>(0)
    let partialsConsumed = Atomic<Int>(0)
    let recordsProduced = Atomic<Int>(0)
    let finalRecords = Atomic<Int>(0)
}
