import Synchronization

/// Keeps the input partitions a process reads within a bounded event-time distance of
/// each other while a backlog is read (watermark alignment).
///
/// Stage 2 finalizes a window only once the slowest input partition's watermark passed
/// it, so until then it holds every input partition's partials of every window in
/// between. Reading a backlog, partitions drift apart (tens of seconds of reading, and
/// with a long backlog hours of event time); without a bound stage 2 would hold nearly
/// every window of the backlog at once. Each stage-1 worker publishes the watermark of its
/// slowest partition still being read; a partition more than `maxDrift` ahead of the
/// slowest in the process pauses, and resumes once it is no more than half of that ahead.
/// Partitions read to their end (idle or live, waiting for new records) and partitions
/// without a watermark yet do not hold the others back. The slowest partition is never
/// paused, so reading always progresses.
final class WatermarkAlignment: Sendable {
    let maxDrift: Int64
    private let slowest: Mutex<[Int: Int64]> = Mutex([:])

    init(maxDrift: Int64) {
        self.maxDrift = maxDrift
    }

    var isEnabled: Bool { maxDrift > 0 }

    /// Records `worker`'s slowest watermark among its partitions still being read (nil:
    /// none) and returns the slowest in the process.
    func publish(worker: Int, slowest watermark: Int64?) -> Int64? {
        slowest.withLock { slowest in
            slowest[worker] = watermark
            return slowest.values.min()
        }
    }

    /// What to do with a partition `watermark` ahead of the process's slowest.
    enum Decision: Equatable { case keep, pause, resume }

    func decide(watermark: Int64, slowest: Int64?, paused: Bool) -> Decision {
        guard let slowest, watermark != .min else { return paused ? .resume : .keep }
        let ahead = watermark - slowest
        if paused { return ahead <= maxDrift / 2 ? .resume : .keep }
        return ahead > maxDrift ? .pause : .keep
    }
}
