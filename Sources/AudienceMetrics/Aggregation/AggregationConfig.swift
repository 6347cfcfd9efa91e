/// What to compute and how: windows, lateness, segments, sessions, metric definitions and
/// state bounds. Shared by both processing stages; both must use the same values.
public struct AggregationConfig: Sendable, Hashable {
    /// Windows computed, all at once. Default: 1-minute tumbling.
    public var windows: [WindowSpec]
    /// The smallest advance of any window: a watermark that moved less closes nothing new.
    public var smallestAdvance: Int64 { windows.map(\.advance).min() ?? 60_000 }
    /// Watermark = newest event time − this. Default 5 s.
    public var maxOutOfOrderness: Int64
    /// A window stays open this long after the watermark passed its end. Default 0.
    public var allowedLateness: Int64
    public var segments: SegmentSpec
    public var sessions: SessionRules
    /// Types counted as engagement. Default like, share, comment.
    public var engagementTypes: EventTypeSet
    /// Types counted as conversion. Default conversion.
    public var conversionTypes: EventTypeSet
    /// Counters kept for top content (the record lists the top ``topContentSize``).
    public var topContentCapacity: Int
    /// Items listed in `top_content`. Default 10.
    public var topContentSize: Int
    /// How long event ids are remembered for de-duplication (event time). Default 10 min.
    public var deduplicationHorizon: Int64
    /// Most event ids remembered per partition. Default 2,000,000.
    public var deduplicationMaxEntries: Int
    /// Users inactive this long are forgotten. Default 30 days.
    public var userTTL: Int64
    /// Most users tracked per partition. Default 5,000,000.
    public var maxUsersPerPartition: Int
    /// Hopping windows whose size is a whole number of advances are built from
    /// `advance`-long slices, so an event updates one slice instead of every window
    /// containing it (``PartitionAggregator``). Default true; false keeps every window
    /// whole (the same results, up to top content's merges; for comparisons).
    public var slicesHoppingWindows: Bool
    /// Stage 1 sends a sliced size's slices once each, and of its windows (and of the
    /// tumbling windows sharing its slices) only what each holds of its own; stage 2
    /// assembles every window from them. False: stage 1 assembles the windows and sends
    /// each whole. The service sends slices; both give the same final records.
    public var sendsSlices: Bool
    /// The optional metric families computed. Default all.
    public var metrics: MetricFamilies

    /// Per window size, the sliced size whose slices make up its windows: itself for a
    /// sliced hopping size, the sliced size whose advance is its size for a tumbling size
    /// sharing those slices; nil where windows are whole.
    public var sliceSources: [Int?] {
        let sliced = windows.map { spec in slicesHoppingWindows && !spec.isTumbling && spec.size % spec.advance == 0 }
        return windows.indices.map { index in
            if sliced[index] { return index }
            guard windows[index].isTumbling else { return nil }
            return windows.indices.first { sliced[$0] && windows[$0].advance == windows[index].size }
        }
    }

    public init(
        windows: [WindowSpec] = [WindowSpec(size: 60_000)],
        maxOutOfOrderness: Int64 = 5_000,
        allowedLateness: Int64 = 0,
        segments: SegmentSpec = SegmentSpec(),
        sessions: SessionRules = SessionRules(),
        engagementTypes: EventTypeSet = .defaultEngagement,
        conversionTypes: EventTypeSet = .defaultConversion,
        topContentCapacity: Int = 64,
        topContentSize: Int = 10,
        deduplicationHorizon: Int64 = 600_000,
        deduplicationMaxEntries: Int = 2_000_000,
        userTTL: Int64 = 30 * 86_400_000,
        maxUsersPerPartition: Int = 5_000_000,
        slicesHoppingWindows: Bool = true,
        sendsSlices: Bool = false,
        metrics: MetricFamilies = .all
    ) {
        self.windows = windows
        self.maxOutOfOrderness = maxOutOfOrderness
        self.allowedLateness = allowedLateness
        self.segments = segments
        self.sessions = sessions
        self.engagementTypes = engagementTypes
        self.conversionTypes = conversionTypes
        self.topContentCapacity = topContentCapacity
        self.topContentSize = topContentSize
        self.deduplicationHorizon = deduplicationHorizon
        self.deduplicationMaxEntries = deduplicationMaxEntries
        self.userTTL = userTTL
        self.maxUsersPerPartition = maxUsersPerPartition
        self.slicesHoppingWindows = slicesHoppingWindows
        self.sendsSlices = sendsSlices
        self.metrics = metrics
    }
}

/// One window's aggregates for some segments, as stage 1 emits them.
public struct WindowPartial: Sendable, Equatable {
    /// Index into ``AggregationConfig/windows``.
    public var windowIndex: Int
    public var start: Int64
    public var end: Int64
    /// Segment name → aggregate, sorted by name.
    public var segments: [(name: String, aggregate: SegmentAggregate)]
    /// Events that went to the `other` segment because of the segment cap.
    public var overflowedEvents: Int64
    /// The window is closed: these are its final values.
    public var isFinal: Bool
    /// What of the window this is (``AggregationConfig/sendsSlices``).
    public var part: Part = .window

    public init(windowIndex: Int, start: Int64, end: Int64, segments: [(name: String, aggregate: SegmentAggregate)], overflowedEvents: Int64,
                isFinal: Bool, part: Part = .window) {
        self.windowIndex = windowIndex
        self.start = start
        self.end = end
        self.segments = segments
        self.overflowedEvents = overflowedEvents
        self.isFinal = isFinal
        self.part = part
    }

    /// A whole window; a window's own part, to which stage 2 adds its slices; a slice of
    /// a sliced size (`windowIndex`), `start` to `end` = start + advance.
    public enum Part: UInt8, Sendable, Hashable {
        case window = 0
        case own = 1
        case slice = 2
    }

    public static func == (lhs: WindowPartial, rhs: WindowPartial) -> Bool {
        lhs.windowIndex == rhs.windowIndex && lhs.start == rhs.start && lhs.end == rhs.end && lhs.isFinal == rhs.isFinal && lhs.part == rhs.part
            && lhs.overflowedEvents == rhs.overflowedEvents && lhs.segments.map(\.name) == rhs.segments.map(\.name)
            && lhs.segments.map(\.aggregate) == rhs.segments.map(\.aggregate)
    }
}
