import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// glibc malloc settings for a service whose threads (stage workers, librdkafka's) build
/// large, short-lived buffers (checkpoints, batches). By default glibc gives each thread
/// an arena of its own (up to 8 per core) and raises its mmap threshold after each large
/// free, so freed large buffers can stay resident in whichever arena held them. Two arenas
/// and a fixed 1 MB threshold (large buffers are mapped and unmapped) measured 607–612 →
/// 470–543 MB peak RSS with a million tracked users (docs/benchmarks.md). Either setting is
/// left alone when its environment variable (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`)
/// is set, so operators keep the last word.
public enum MemoryTuning {
    public static let arenas: Int32 = 2
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
        if environment["MALLOC_ARENA_MAX"] == nil { _ = mallopt(arenaMax, arenas) }
        if environment["MALLOC_MMAP_THRESHOLD_"] == nil { _ = mallopt(mmapThresholdParameter, mmapThreshold) }
        return true
        #else
        return false
        #endif
    }
}
