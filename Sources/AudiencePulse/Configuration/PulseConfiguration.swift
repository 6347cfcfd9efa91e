import AudienceMetrics
import Foundation
import Kafka

/// Everything `pulse serve` is configured with: one YAML file plus `PULSE_…`
/// environment overrides, validated as a whole at start. Every key, its default and its
/// meaning are declared once, in ``load(yaml:file:environment:)``; docs/configuration.md
/// is generated from there (`pulse config reference`).
public struct PulseConfiguration: Sendable {
    public enum Guarantee: String, Sendable { case exactlyOnce = "exactly_once", atLeastOnce = "at_least_once" }

    /// Consumer group of stage 1 and prefix of internal topics.
    public var app: String
    /// librdkafka properties, verbatim.
    public var kafka: [String: String]
    public var inputTopic: String
    public var metricsTopic: String
    public var deadLetterTopic: String
    public var partialsPartitions: Int
    public var metricsPartitions: Int
    public var replicationFactor: Int
    public var mappingName: String
    public var mapping: InputMapping
    public var limits: EventLimits
    public var aggregation: AggregationConfig
    public var trend: TrendConfig
    public var idleTimeout: Int64
    /// Stage 1 pauses an input partition whose watermark runs more than this (ms) ahead of
    /// the slowest partition the process reads; 0: never.
    public var maxWatermarkDrift: Int64
    public var guarantee: Guarantee
    public var updateInterval: Int64
    /// A bounded run: read each input partition to its end, let it count as idle at once,
    /// produce the final records that closes and stop (`processing.until_end`).
    public var untilEnd: Bool
    /// Stage-1 workers (threads, group members) in this process.
    public var stageOneWorkers: Int
    /// How the stages get their partitions: consumer groups, or a fixed share.
    public var assignment: PartitionAssignment
    public var checkpointInterval: Int64
    public var commitInterval: Int64
    public var shutdownTimeout: Int64
    /// How often (ms) the allocator's free memory is handed back to the system; 0: never.
    public var memoryTrimInterval: Int64
    public var httpHost: String
    public var httpPort: Int
    public var collector: CollectorConfiguration
    public var api: APIConfiguration
    public var logFormat: String
    public var logLevel: String

    /// Internal topic of stage-1 partials and watermark markers.
    public var partialsTopic: String { "\(app).partials" }
    /// Compacted changelog of stage-1 checkpoints.
    public var stageOneChangelog: String { "\(app).stage1-changelog" }
    /// Compacted changelog of stage-2 checkpoints.
    public var stageTwoChangelog: String { "\(app).stage2-changelog" }
    /// Consumer group of stage 2.
    public var mergeGroup: String { "\(app)-merge" }

    /// One line for banners and checks: app, topics, windows, segments, optional metric
    /// families (when not all), guarantee.
    public var summary: String {
        let families = aggregation.metrics == .all
            ? "" : "optional metrics [\(MetricFamilies.named.filter { aggregation.metrics.contains($0.family) }.map(\.name).joined(separator: ", "))], "
        return "app \(app), input \(inputTopic) → metrics \(metricsTopic) (dead letters \(deadLetterTopic)), windows "
            + aggregation.windows.map(\.name).joined(separator: ", ")
            + ", \(aggregation.segments.dimensions.count) dimension combinations, \(aggregation.segments.rules.count) rules, "
            + families + "mapping \(mappingName), \(guarantee.rawValue)"
    }

    /// The Kafka settings as a client configuration.
    public var kafkaConfiguration: KafkaConfiguration {
        var properties = kafka
        let servers = properties.removeValue(forKey: "bootstrap.servers") ?? ""
        return KafkaConfiguration(bootstrapServers: servers, properties: properties)
    }

    /// Settings for the stages' consumers: as ``kafkaConfiguration``, with three defaults
    /// unless `kafka:` sets them: librdkafka's prefetch buffer capped at 16 MB
    /// (`queued.max.messages.kbytes`, 64 MB by default) and 20,000 records per partition
    /// (`queued.min.messages`, 100,000 by default) — the stages process records as fast
    /// as they arrive, and a larger buffer only adds resident memory (docs/operations.md
    /// has the figures); and fetches that wait at most 100 ms for data
    /// (`fetch.wait.max.ms`, 500 ms by default) — an update passes two stage consumers, and
    /// on the local broker the longer wait showed in its latency.
    public var stageKafkaConfiguration: KafkaConfiguration {
        var configuration = kafkaConfiguration
        for (key, value) in [("queued.max.messages.kbytes", "16384"), ("queued.min.messages", "20000"), ("fetch.wait.max.ms", "100")]
        where configuration.properties[key] == nil {
            configuration.properties[key] = value
        }
        return configuration
    }

    /// Loads and validates a configuration.
    /// - Throws: ``ConfigurationError`` naming the first key that is wrong.
    public static func load(yaml: String, file: String = "configuration", environment: [String: String] = [:]) throws(ConfigurationError) -> PulseConfiguration {
        var tree = try ConfigurationTree.parse(yaml: yaml, file: file)
        guard case .map = tree else { throw ConfigurationError(key: file, message: "the top level must be a map of keys") }
        try tree.applyEnvironment(environment)
        var reader = ConfigurationReader(tree: tree)
        let configuration = try read(&reader)
        if let unknown = reader.unknownKeys().first {
            let hint = reader.suggestion(for: unknown).map { " (did you mean \($0)?)" } ?? ""
            throw ConfigurationError(key: unknown, message: "unknown key\(hint); see docs/configuration.md for every key")
        }
        return configuration
    }

    /// The reference of every key (for docs/configuration.md).
    public static func referenceMarkdown() -> String {
        var reader = ConfigurationReader(tree: .map([("kafka", .map([("bootstrap.servers", .scalar("x"))]))]))
        _ = try? read(&reader)
        var lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
        for entry in reader.reference {
            lines.append("| `\(entry.key)` | \(entry.type) | \(entry.defaultValue) | \(entry.meaning) |")
        }
        return lines.joined(separator: "\n")
    }

    private static func read(_ r: inout ConfigurationReader) throws(ConfigurationError) -> PulseConfiguration {
        let app = try r.string("app", default: "audience-pulse", "Name of the deployment: stage 1's consumer group, prefix of internal topics (`<app>.partials`, `<app>.stage1-changelog`, `<app>.stage2-changelog`) and of stage 2's group (`<app>-merge`).")
        guard app.range(of: "^[A-Za-z0-9._-]{1,200}$", options: .regularExpression) != nil else {
            throw ConfigurationError(key: "app", message: "'\(app)' must be 1–200 letters, digits, '.', '_' or '-' (it names Kafka topics and groups)")
        }
        let kafkaEntries = try r.stringMap("kafka", "librdkafka properties, passed through verbatim (`bootstrap.servers`, `security.protocol`, `sasl.*`, `ssl.*`, timeouts, …). `bootstrap.servers` is required. Secrets belong in `PULSE_KAFKA__…` environment variables, not in the file.")
        var kafka: [String: String] = [:]
        for (key, value) in kafkaEntries { kafka[key] = value }
        guard let servers = kafka["bootstrap.servers"], !servers.isEmpty else {
            throw ConfigurationError(key: "kafka.bootstrap.servers", message: "required: the Kafka cluster's host:port list (or set PULSE_KAFKA__BOOTSTRAP_SERVERS)")
        }
        let inputTopic = try r.string("topics.input", default: "audience.events", "Topic of input events (must exist; keyed by user_id).")
        let metricsTopic = try r.string("topics.metrics", default: "audience.metrics", "Topic the metric records go to (created compacted if missing).")
        let deadLetterTopic = try r.string("topics.dead_letter", default: "audience.events.dlq", "Topic for rejected input, unchanged, with reason headers (created if missing).")
        let partialsPartitions = try r.integer("topics.partials_partitions", default: 8, range: 1...10_000, "Partitions of `<app>.partials`: how far stage 2 scales out.")
        let metricsPartitions = try r.integer("topics.metrics_partitions", default: 4, range: 1...10_000, "Partitions of the metrics topic when it is created.")
        let replicationFactor = try r.integer("topics.replication_factor", default: -1, range: -1...32, "Replication of created topics; -1 uses the broker's default.")

        let mappingName = try r.choice("input.mapping", default: "contract", ["contract", "segment"], "How input JSON maps to the event contract: `contract` (the Audience Pulse field names) or `segment` (Segment-spec track/page events; see docs/events.md).")
        let limits = EventLimits(
            maxMessageBytes: try r.integer("input.limits.max_message_bytes", default: 65_536, range: 256...10_485_760, "Largest accepted message, bytes."),
            maxAttributes: try r.integer("input.limits.max_attributes", default: 64, range: 1...10_000, "Most attributes per event."),
            maxStringBytes: try r.integer("input.limits.max_string_bytes", default: 512, range: 8...65_536, "Longest id, type or attribute value, bytes."),
            maxDepth: try r.integer("input.limits.max_depth", default: 16, range: 2...256, "Deepest JSON nesting."))

        let dimensions = try r.nestedStringList("segments.dimensions", default: [[], ["country"], ["device"], ["country", "device"]], "Dimension combinations: each list of attribute names makes one segment per distinct value tuple; `[]` is the segment `all`.")
        var rules: [(name: String, rule: SegmentRule)] = []
        for (name, source) in try r.stringMap("segments.rules", "Named segments by rule, e.g. `pro_mobile: plan == \"pro\" and device != \"desktop\"` (language in docs/events.md).") {
            do {
                rules.append((name, try SegmentRule.compile(source)))
            } catch {
                throw ConfigurationError(key: "segments.rules.\(name)", message: "\(error)")
            }
        }
        let maxSegments = try r.integer("segments.max_per_window", default: 10_000, range: 1...10_000_000, "Most distinct segments per window; more go to `other`.")

        var windows: [WindowSpec] = []
        for (index, text) in try r.stringList("windows", default: ["1m"], "Event-time windows computed at once: `1m` (tumbling) or `10m/1m` (hopping: size/advance).").enumerated() {
            guard let spec = WindowSpec(parsing: text) else {
                throw ConfigurationError(key: "windows[\(index)]", message: "'\(text)' is not a window (write 1m for tumbling, 10m/1m for size/advance)")
            }
            windows.append(spec)
        }
        guard !windows.isEmpty else { throw ConfigurationError(key: "windows", message: "at least one window is needed") }
        guard Set(windows).count == windows.count else { throw ConfigurationError(key: "windows", message: "a window is listed twice") }

        let maxOutOfOrderness = try r.duration("time.max_out_of_orderness", default: "5s", "Watermark = newest event time of a partition − this.")
        let allowedLateness = try r.duration("time.allowed_lateness", default: "0s", "A window stays open this long after the watermark passed its end.")
        let idleTimeout = try r.duration("time.idle_timeout", default: "30s", minimum: 100, "An input partition without events this long (processing time) advances its watermark with the clock, so windows still close.")
        let maxWatermarkDrift = try r.duration("time.max_watermark_drift", default: "0s", "While a backlog is read, an input partition whose watermark runs more than this ahead of the slowest partition still being read (in this process) pauses until that one catches up, so stage 2 holds the partials of fewer windows; a paused partition's fetched records wait in the client meanwhile. `0s` (the default): never pause.")

        func types(_ key: String, _ defaults: [String], _ meaning: String) throws(ConfigurationError) -> EventTypeSet {
            var result: [KnownEventType] = []
            for name in try r.stringList(key, default: defaults, meaning) {
                guard let type = KnownEventType(name: name) else {
                    throw ConfigurationError(key: key, message: "'\(name)' is not a known event type (\(KnownEventType.allCases.map(\.name).joined(separator: ", ")))")
                }
                result.append(type)
            }
            return EventTypeSet(result)
        }
        let engagement = try types("metrics.engagement_types", ["like", "share", "comment"], "Event types counted as engagement.")
        let conversion = try types("metrics.conversion_types", ["conversion"], "Event types counted as conversion.")
        let topContent = try r.integer("metrics.top_content", default: 10, range: 1...100, "Items listed in `top_content`.")
        let sessions = SessionRules(
            inactivityGap: try r.duration("metrics.sessions.inactivity_gap", default: "30m", minimum: 1_000, "Inactivity that ends a session."),
            engagedAfter: try r.duration("metrics.sessions.engaged_after", default: "10s", "A session longer than this is engaged."),
            engagedPageViews: try r.integer("metrics.sessions.engaged_page_views", default: 2, range: 1...1_000, "A session with this many page views is engaged."),
            engagedOnConversion: try r.boolean("metrics.sessions.engaged_on_conversion", default: true, "A session with a conversion is engaged."))
        let trend = TrendConfig(
            historyLength: try r.integer("metrics.trend.history", default: 24, range: 5...10_000, "Final windows of history per segment for trends."),
            anomalyThreshold: try r.number("metrics.trend.anomaly_threshold", default: 3.5, range: 0.5...100, "|robust z-score| above which a window is an anomaly."))
        var include: MetricFamilies = []
        let familyNames = MetricFamilies.named.map(\.name)
        for (index, name) in try r.stringList("metrics.include", default: familyNames, "Optional metric families computed and written to records: `retention` (`users.new`, `returning`, `retained`, `retention_rate`; per-user state), `conversion`, `dwell_quantiles` (`dwell_ms.p50`, `p90`, `p99`), `sessions` (per-user state), `top_content`, `trend`. Left out, a family's per-event work is skipped and its fields are absent from records; always present: `events`, `by_type`, `users.unique`, `users.unique_exact`, `engagement`, `dwell_ms.count` and `mean`, `quality`. Without `retention` and `sessions` no per-user state is kept.").enumerated() {
            guard let family = MetricFamilies(name: name) else {
                throw ConfigurationError(key: "metrics.include[\(index)]", message: "'\(name)' is not an optional metric family (\(familyNames.joined(separator: ", ")))")
            }
            include.insert(family)
        }

        let aggregation = AggregationConfig(
            windows: windows, maxOutOfOrderness: maxOutOfOrderness, allowedLateness: allowedLateness,
            segments: SegmentSpec(dimensions: dimensions, rules: rules, maxSegmentsPerWindow: maxSegments), sessions: sessions,
            engagementTypes: engagement, conversionTypes: conversion, topContentCapacity: max(64, topContent * 4), topContentSize: topContent,
            deduplicationHorizon: try r.duration("state.deduplication_horizon", default: "10m", "Event ids are remembered this long (event time) to drop duplicates."),
            deduplicationMaxEntries: try r.integer("state.deduplication_max_entries", default: 2_000_000, range: 1_000...1_000_000_000, "Most event ids remembered per input partition."),
            userTTL: try r.duration("state.user_ttl", default: "30d", minimum: 60_000, "Users inactive this long (event time) are forgotten; they count as new when they return."),
            maxUsersPerPartition: try r.integer("state.max_users_per_partition", default: 5_000_000, range: 1_000...1_000_000_000, "Most users tracked per input partition (least recently active are forgotten first)."),
            sendsSlices: true, metrics: include)

        let guarantee = Guarantee(rawValue: try r.choice("processing.guarantee", default: "exactly_once", ["exactly_once", "at_least_once"], "`exactly_once`: checkpoints, outputs and offsets also go in Kafka transactions; `at_least_once`: no transactions (a final record may repeat, with identical content).")) ?? .exactlyOnce
        let updateInterval = try r.duration("processing.update_interval", default: "1s", minimum: 10, "Non-final updates of a changed segment at most this often (stage 1 emits partials at this pace; stage 2 forwards them as they arrive, and in a bounded run every `update_interval`: reading a backlog, each input partition's final partials of a window arrive on their own, and forwarding the merge after each sent up to three non-final records per final one).")
        let untilEnd = try r.boolean("processing.until_end", default: false, "A bounded run (backfills, catch-up jobs): each input partition is read until the consumer reaches its end (records that arrive later are left for the next run) and then counts as idle at once: its watermark moves to the clock less `time.max_out_of_orderness` without waiting for `time.idle_timeout`, so every window that ended before that closes. The process stops by itself (exit 0) once those final records are committed. Non-final updates are forwarded every `processing.update_interval` (live: as stage 1's partials arrive). `pulse serve --until-end` sets it.")
        let stageOneWorkers = try r.integer("processing.stage1_workers", default: 1, range: 1...64, "Stage-1 workers in this process: each is a member of the input topic's consumer group with its own thread, consumer and transactional producer, so one process can use several cores. More workers than input partitions leaves some without partitions.")
        let assignment = try readAssignment(&r)
        let checkpointInterval = try r.duration("processing.checkpoint_interval", default: "5s", minimum: 100, "How often stage state is checkpointed (also on window close and shutdown). A restart replays the input since the last checkpoint.")
        let commitInterval = try r.duration("processing.commit_interval", default: "250ms", minimum: 10, "How often each stage commits what it produced (the transaction with `exactly_once`; a flush and an offset commit with `at_least_once`), between checkpoints too. Updates and final results are committed sooner, as soon as the last commit is 100 ms old — or nine times as old as that commit took, if longer, so that these commits keep a stage busy at most a tenth of its time — since `read_committed` subscribers and stage 2 see them only then; the interval paces the commits of everything else (dead letters, offsets).")
        let memoryTrimInterval = try r.duration("processing.memory_trim_interval", default: "5s", "How often memory the allocator holds free is handed back to the system (glibc's `malloc_trim`; one thread per process, the first service started sets it); `0s`: never. Without it, memory the stages freed between tables still in use stays resident.")
        let shutdownTimeout = try r.duration("processing.shutdown_timeout", default: "20s", minimum: 1_000, "SIGTERM, or a stage failed: time for the stages to finish the current transaction and leave the groups before the process exits.")

        let listen = try r.string("http.listen", default: "127.0.0.1:8080", "Address of the HTTP server (health, metrics, collector, API, dashboard).")
        let parts = listen.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 2, let port = Int(parts[parts.count - 1]), (0...65_535).contains(port) else {
            throw ConfigurationError(key: "http.listen", message: "'\(listen)' is not host:port")
        }
        let host = parts.dropLast().joined(separator: ":")
        let collector = try readCollector(&r, inputTopic: inputTopic)
        let api = try readAPI(&r, httpHost: host.isEmpty ? "0.0.0.0" : host)

        let logFormat = try r.choice("log.format", default: "json", ["json", "text"], "Log line format.")
        let logLevel = try r.choice("log.level", default: "info", ["trace", "debug", "info", "notice", "warning", "error", "critical"], "Lowest level logged.")

        return PulseConfiguration(
            app: app, kafka: kafka, inputTopic: inputTopic, metricsTopic: metricsTopic, deadLetterTopic: deadLetterTopic,
            partialsPartitions: partialsPartitions, metricsPartitions: metricsPartitions, replicationFactor: replicationFactor,
            mappingName: mappingName, mapping: mappingName == "segment" ? .segment : .contract, limits: limits,
            aggregation: aggregation, trend: trend, idleTimeout: idleTimeout, maxWatermarkDrift: maxWatermarkDrift, guarantee: guarantee,
            updateInterval: updateInterval, untilEnd: untilEnd, stageOneWorkers: stageOneWorkers, assignment: assignment, checkpointInterval: checkpointInterval, commitInterval: commitInterval, shutdownTimeout: shutdownTimeout,
            memoryTrimInterval: memoryTrimInterval, httpHost: host.isEmpty ? "0.0.0.0" : host, httpPort: port, collector: collector, api: api, logFormat: logFormat, logLevel: logLevel)
    }
}
