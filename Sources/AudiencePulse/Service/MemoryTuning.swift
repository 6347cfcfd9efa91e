import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// glibc malloc settings for a service whose threads (stage workers, librdkafka's) build
/// large, short-lived buffers (checkpoints, batches). By default glibc gives each thread
/// an arena of its own (up to 8 per core) and raises its mmap threshold after each large
/// free, so freed large buffers can stay resident in whichever arena held them. A fixed
/// 1 MB threshold maps and unmaps large buffers; with it and two arenas the peak RSS with
/// a million tracked users went from 607–612 to 470–543 MB (docs/operations.md).
///
/// Arenas: 4 per core, half glibc's default. Two arenas cost throughput: a stage-1
/// worker frees every consumed message, which the client allocated on its own thread,
/// and with two arenas those threads and the stages queue for each other's arena locks.
/// On 2 cores, eight arenas against two: the full benchmark job faster in 11 of 14
/// alternating runs (medians 490,461 → 549,838 events/s). Free memory is handed back
/// every few seconds (``startTrimming(every:)``), and the state step's peak with eight
/// was 263–282 MB against 257–279 MB with two (docs/benchmarks.md). Either setting is left
/// alone when its environment variable (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`) is
/// set, so operators keep the last word.
public enum MemoryTuning {
    /// Arenas for a machine with `cores` cores.
    public static func arenas(cores: Int = ProcessInfo.processInfo.activeProcessorCount) -> Int32 {
        Int32(clamping: 4 * max(cores, 1))
    }
    public static let mmapThreshold: Int32 = 1 << 20

    /// Applies the settings; call before starting threads. Returns whether glibc's
    /// `mallopt` was found (it is looked up at run time: `malloc.h` is not part of the
    /// Glibc module).
    @discardableResult
    public static func apply(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        #if canImport(Glibc)
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        // The parameter numbers of glibc's malloc.h.
        let arenaMax: Int32 = -8
        let mmapThresholdParameter: Int32 = -3
        if environment["MALLOC_ARENA_MAX"] == nil { _ = mallopt(arenaMax, arenas()) }
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = mallopt(mmapThresholdParameter, mmapThreshold) }
        return true
        #else
        return false
        #endif
    }

    /// The trims of this process so far (for `/metrics`).
    public struct TrimCounts: Sendable, Equatable {
        /// Whether a trimming thread runs in this process.
        public var running = false
        public var trims = 0
        /// Time the trims took in all, seconds.
        public var seconds = 0.0
    }

    private static let trimState = Mutex(TrimCounts())

    public static var trimCounts: TrimCounts { trimState.withLock { $0 } }

    /// Starts a thread that hands the memory glibc's allocator holds free back to the
    /// system (`malloc_trim(0)`) every `interval`. Freed memory otherwise stays resident
    /// in the arenas: the stages free tables, checkpoints and windows in the middle of
    /// memory still in use, and only the end of an arena is returned by itself. Reading
    /// the benchmark's backlog of about 950,000 users, the arenas held 20–120 MB free
    /// (median 55 MB, `malloc_stats` every 0.5 s); trimming every 5 s lowered the peak RSS
    /// from 289–326 MB to 273–281 MB (docs/benchmarks.md). A trim took 0.8 ms at the
    /// median and up to 41 ms, holding each arena's lock in turn.
    ///
    /// One thread per process: the first call starts it, later calls (another service in
    /// the same process) change nothing and return false, as does a zero interval or a C
    /// library without `malloc_trim`.
    @discardableResult
    public static func startTrimming(every interval: Duration) -> Bool {
        guard interval > .zero, trimFunction != nil else { return false }
        let starts = trimState.withLock { counts in
            defer { counts.running = true }
            return !counts.running
        }
        guard starts else { return false }
        let seconds = interval.secondsDouble
        let thread = Thread {
            ThreadName.setCurrent("pulse-trim")
            while true {
                Thread.sleep(forTimeInterval: seconds)
                trim()
            }
        }
        thread.start()
        return true
    }

    /// Hands the allocator's free memory back to the system now (counted in
    /// ``trimCounts``). Returns false where glibc's `malloc_trim` is not available.
    @discardableResult
    public static func trim() -> Bool {
        guard let trimFunction else { return false }
        let began = ContinuousClock.now
        _ = trimFunction(0)
        let spent = (ContinuousClock.now - began).secondsDouble
        trimState.withLock { counts in
            counts.trims += 1
            counts.seconds += spent
        }
        return true
    }

    private typealias Trim = @convention(c) (Int) -> Int32

    /// glibc's `malloc_trim`, looked up at run time like `mallopt`.
    private static let trimFunction: Trim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: Trim.self)
        #else
        return nil
        #endif
    }()
}
