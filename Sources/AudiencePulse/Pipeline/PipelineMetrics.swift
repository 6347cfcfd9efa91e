import Synchronization

/// Counters, gauges and histograms of both stages, read by the Prometheus endpoint, the
/// readiness check and the logs. Any thread may read or record.
final class PipelineMetrics: Sendable {
    let consumed = Atomic<Int>(0)
    let valid = Atomic<Int>(0)
    let invalid = Atomic<Int>(0)
    let duplicates = Atomic<Int>(0)
    let late = Atomic<Int>(0)
    let deadLettered = Atomic<Int>(0)
    let partialsProduced = Atomic<Int>(0)
    let windowsClosed = Atomic<Int>(0)
    /// Partition checkpoints written, by stage (1, 2).
    let checkpoints = Mutex<[Int: CheckpointCounts]>([:])
    let transactionCommits = Atomic<Int>(0)
    let transactionAborts = Atomic<Int>(0)
    let partialsConsumed = Atomic<Int>(0)
    /// Stage 2: partials read (markers not counted; stale ones are).
    let partialsRead = Atomic<Int>(0)
    let recordsProduced = Atomic<Int>(0)
    let finalRecords = Atomic<Int>(0)
    let rebalances = Atomic<Int>(0)
    /// Stage 1: input partitions paused for watermark alignment (each pause counts once).
    let alignmentPauses = Atomic<Int>(0)
    /// Stage 1: input partitions paused for watermark alignment now, by worker.
    let pausedPartitions = Mutex<[Int: Int]>([:])
    /// Stage 1: users whose state its partitions keep now (first and last seen), by worker.
    let trackedUsersByWorker = Mutex<[Int: Int]>([:])

    /// Stage 1: wall time to process one polled batch (decode … partials).
    let batchProcessing = LatencyHistogram()
    /// Stage 1: input record's append time → processed (sampled per batch: its oldest record).
    let inputDelay = LatencyHistogram()
    /// Stage 2, per round of updated records: append time of the oldest input event first
    /// reflected in the round → the records produced.
    let eventToMetric = LatencyHistogram()
    /// Stage 2: window end (event time) → its final record produced. Includes the
    /// configured out-of-orderness and allowed lateness.
    let windowCloseDelay = LatencyHistogram()

    /// Per stage: assigned partitions → lag (records not yet read; -1 when not known yet);
    /// stage 1's by worker, each worker reporting the partitions it owns.
    let stageOneLagByWorker = Mutex<[Int: [Int32: Int64]]>([:])
    let stageTwoLag = Mutex<[Int32: Int64]>([:])
    /// Stage 2: final partials announced by close markers but not (yet) received, summed
    /// over assigned partials partitions; windows waiting for them are not finalized.
    let missingFinalPartials = Atomic<Int>(0)
    /// Stage 2 joined its group and restored what it was assigned (the first assignment,
    /// empty or not, was handled); false again while it rewinds after an error. Each
    /// stage-1 worker has its own (``StageOne/ready``).
    let stageTwoReady = Atomic<Bool>(false)

    struct CheckpointCounts {
        var written = 0
        /// Of those, written as increments on the one before.
        var incremental = 0
        var bytes = 0
    }

    /// Counts a partition checkpoint `stage` wrote.
    func checkpointed(stage: Int, bytes: Int, incremental: Bool) {
        checkpoints.withLock { counts in
            var count = counts[stage] ?? CheckpointCounts()
            count.written += 1
            count.incremental += incremental ? 1 : 0
            count.bytes += bytes
            counts[stage] = count
        }
    }

    /// Users stage 1 keeps state for, over all its workers (a user on two input
    /// partitions counts twice; the input is keyed by user, so few are).
    var trackedUsers: Int { trackedUsersByWorker.withLock { $0.values.reduce(0, +) } }

    /// Stage 1's lag over all its workers.
    var stageOneLag: [Int32: Int64] {
        stageOneLagByWorker.withLock { $0.values.reduce(into: [:]) { $0.merge($1) { _, new in new } } }
    }
}
