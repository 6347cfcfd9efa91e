import Foundation
import Synchronization

/// The read side of `pulse serve`: the newest metric record of every (segment, window
/// size, window start) within the retention, as read from the metrics topic, plus live
/// subscriptions to every record that arrives. Every instance keeps the whole topic (it
/// is small), so any of them answers for every segment. Thread-safe.
public final class MetricsStore: Sendable {
    /// What `/v1/segments` shows of a record (read by ``HeadlineReader``; `Decodable` for
    /// clients of the API).
    public struct Headline: Sendable, Equatable, Decodable {
        public struct Window: Sendable, Equatable, Decodable {
            public var size: String
            public var start_ms: Int64
            public var end_ms: Int64
        }
        public struct Users: Sendable, Equatable, Decodable { public var unique: Int64 }
        public struct Rate: Sendable, Equatable, Decodable { public var rate: Double? }
        public struct Trend: Sendable, Equatable, Decodable { public var anomaly: Bool? }

        public var segment: String
        public var window: Window
        public var final: Bool
        public var events: Int64
        public var users: Users
        public var engagement: Rate
        /// Absent when the deployment leaves conversion out (`metrics.include`).
        public var conversion: Rate?
        public var trend: Trend?
    }

    public struct Limits: Sendable {
        /// Records whose window ended more than this before the newest window end seen
        /// are forgotten (ms, event time).
        public var retention: Int64
        /// Segments beyond this many are not kept (counted in ``Stats/droppedRecords``).
        public var maxSegments: Int
        /// Per-subscriber buffer; a subscriber that falls further behind loses the oldest.
        public var subscriberBuffer: Int

        public init(retention: Int64 = 3_600_000, maxSegments: Int = 10_000, subscriberBuffer: Int = 1_024) {
            self.retention = retention
            self.maxSegments = maxSegments
            self.subscriberBuffer = subscriberBuffer
        }
    }

    /// Counters kept as records arrive; `segments`, `records` and `subscribers` are
    /// counted when asked.
    public struct Stats: Sendable, Equatable {
        public var segments = 0
        public var records = 0
        public var ingested = 0
        public var unreadable = 0
        public var droppedRecords = 0
        public var subscribers = 0
    }

    struct Stored {
        var headline: Headline
        var json: String
    }

    struct Subscriber {
        var segment: String?
        var continuation: AsyncStream<String>.Continuation
    }

    struct State {
        /// segment → window size → window start → newest record.
        var segments: [String: [String: [Int64: Stored]]] = [:]
        var newestEnd: Int64 = .min
        var prunedThrough: Int64 = .min
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriber = 0
        var closed = false
        var stats = Stats()
    }

    public let limits: Limits
    private let state = Mutex(State())

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Adds one record (the JSON value of a metrics-topic message) and passes it to the
    /// matching subscribers. Returns false if it is not a metric record.
    @discardableResult
    public func ingest(_ json: String) -> Bool {
        guard let headline = HeadlineReader.read(json) else {
            state.withLock { $0.stats.unreadable += 1 }
            return false
        }
        let retention = limits.retention
        let maxSegments = limits.maxSegments
        state.withLock { state in
            state.stats.ingested += 1
            let segment = headline.segment
            if state.segments[segment] == nil && state.segments.count >= maxSegments {
                state.stats.droppedRecords += 1
                return
            }
            if state.newestEnd != .min && headline.window.end_ms < state.newestEnd - retention { return }
            let start = headline.window.start_ms
            if let existing = state.segments[segment]?[headline.window.size]?[start], existing.headline.final, !headline.final { return }
            state.segments[segment, default: [:]][headline.window.size, default: [:]][start] = Stored(headline: headline, json: json)
            if headline.window.end_ms > state.newestEnd {
                state.newestEnd = headline.window.end_ms
                // Prune once the horizon moved by a tenth of the retention, not per record.
                let horizon = state.newestEnd - retention
                if state.prunedThrough == .min || horizon - state.prunedThrough > retention / 10 { Self.prune(&state, before: horizon) }
            }
            for subscriber in state.subscribers.values where subscriber.segment == nil || subscriber.segment == segment {
                subscriber.continuation.yield(json)
            }
        }
        return true
    }

    private static func prune(_ state: inout State, before horizon: Int64) {
        for (segment, windows) in state.segments {
            var kept = windows
            for (size, records) in windows {
                let filtered = records.filter { $0.value.headline.window.end_ms >= horizon }
                kept[size] = filtered.isEmpty ? nil : filtered
            }
            state.segments[segment] = kept.isEmpty ? nil : kept
        }
        state.prunedThrough = horizon
    }

    /// Every segment (optionally only those containing `search`, case-insensitive) with
    /// the newest record of each window size: `all` first, then by name.
    public func segments(matching search: String? = nil) -> [(segment: String, latest: [Headline])] {
        let search = search.flatMap { $0.isEmpty ? nil : $0.lowercased() }
        let result = state.withLock { state in
            state.segments.compactMap { segment, windows -> (segment: String, latest: [Headline])? in
                if let search, !segment.lowercased().contains(search) { return nil }
                let latest = windows.keys.sorted().compactMap { size in windows[size]?.max { $0.key < $1.key }?.value.headline }
                return (segment, latest)
            }
        }
        return result.sorted { ($0.segment == "all" ? 0 : 1, $0.segment) < ($1.segment == "all" ? 0 : 1, $1.segment) }
    }

    /// The records of `segment` for window size `window` (the first configured if nil)
    /// whose window starts in `from..<to`, oldest first; nil if the segment is unknown.
    public func records(segment: String, window: String?, from: Int64 = .min, to: Int64 = .max) -> (window: String, records: [String])? {
        state.withLock { state in
            guard let windows = state.segments[segment] else { return nil }
            guard let size = window ?? windows.keys.sorted().first else { return nil }
            let records = (windows[size] ?? [:]).filter { $0.key >= from && $0.key < to }.sorted { $0.key < $1.key }.map(\.value.json)
            return (size, records)
        }
    }

    /// Window sizes seen so far.
    public var windowSizes: [String] {
        state.withLock { state in Set(state.segments.values.flatMap(\.keys)).sorted() }
    }

    public var stats: Stats {
        state.withLock { state in
            var stats = state.stats
            stats.segments = state.segments.count
            stats.records = state.segments.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
            stats.subscribers = state.subscribers.count
            return stats
        }
    }

    /// Every record ingested from now on (only `segment`'s if given) until the
    /// subscriber stops iterating or the store is closed; empty strings are keep-alives.
    public func subscribe(segment: String? = nil) -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(limits.subscriberBuffer))
        let id = state.withLock { state -> Int? in
            guard !state.closed else { return nil }
            state.nextSubscriber += 1
            state.subscribers[state.nextSubscriber] = Subscriber(segment: segment, continuation: continuation)
            return state.nextSubscriber
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Sends every subscriber an empty element (a keep-alive for idle streams).
    public func heartbeat() {
        state.withLock { state in
            for subscriber in state.subscribers.values { subscriber.continuation.yield("") }
        }
    }

    /// Ends every subscription (on shutdown); later subscriptions end at once.
    public func close() {
        let continuations = state.withLock { state in
            state.closed = true
            defer { state.subscribers = [:] }
            return state.subscribers.values.map(\.continuation)
        }
        for continuation in continuations { continuation.finish() }
    }
}
