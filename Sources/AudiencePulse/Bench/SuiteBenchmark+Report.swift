import AudienceMetrics
import Foundation

/// A suite run's rounds and its report: the Markdown table and the JSON file.
extension SuiteBenchmark {
    /// One round: the ceiling, then the jobs.
    public struct Round: Sendable {
        public var ceiling: KafkaThroughputBenchmark.Result
        public var ceilingCPU: CPUTime
        public var jobs: [JobResult]

        /// A job's rate as a share of this round's ceiling.
        func ratio(_ job: JobResult) -> Double { job.eventsPerSecond / ceiling.messagesPerSecond }
    }

    /// Everything one run measured.
    public struct Report: Sendable {
        public var machine: String
        public var command: String
        public var date: String
        public var preload: KafkaThroughputBenchmark.Result
        public var rounds: [Round]
        public var stageOneWorkers: Int
        public var latency: [(rate: Int, result: LatencyBenchmark.Result)]
        public var state: StateResult?

        /// The position of the median of `values` (the lower one of the middle two); nil
        /// when there are none.
        static func medianIndex(_ values: [Double]) -> Int? {
            let order = values.indices.sorted { values[$0] < values[$1] }
            return order.isEmpty ? nil : order[(order.count - 1) / 2]
        }

        /// The round whose ceiling is the median.
        var ceilingRound: Round? { Self.medianIndex(rounds.map(\.ceiling.messagesPerSecond)).map { rounds[$0] } }

        /// Per job, in the order run: the round whose share of its ceiling is the median,
        /// and every round's result.
        var jobs: [(median: Round, job: JobResult, all: [(round: Round, job: JobResult)])] {
            (rounds.first?.jobs ?? []).compactMap { first in
                let all = rounds.compactMap { round in round.jobs.first { $0.name == first.name }.map { (round: round, job: $0) } }
                guard let median = Self.medianIndex(all.map { $0.round.ratio($0.job) }).map({ all[$0] }) else { return nil }
                return (median.round, median.job, all)
            }
        }

        func perMillion(_ seconds: Double, _ events: Int) -> Double { seconds / Double(max(events, 1)) * 1_000_000 }

        /// A job's peak RSS in its first round: the jobs run in this process, whose memory
        /// later rounds start from with the high-water marks of every job before.
        func firstPeakRSS(_ all: [(round: Round, job: JobResult)]) -> Double { all.first?.job.peakRSSMegabytes ?? 0 }

        /// A figure's range over the rounds, "low–high"; empty with one round.
        func spread(_ values: [Double], _ format: (Double) -> String) -> String {
            guard values.count > 1, let low = values.min(), let high = values.max() else { return "" }
            return "\(format(low))–\(format(high))"
        }

        /// The service's CPU s per million events by thread group: "; by thread: stage 1 …".
        func byThread(_ job: JobResult) -> String {
            guard !job.cpuByThread.isEmpty else { return "" }
            return "; by thread: " + job.cpuByThread.map { "\($0.group) \(Self.decimal(perMillion($0.seconds, job.events)))" }.joined(separator: ", ")
        }

        public var markdown: String {
            var out = "### \(date) — `\(command)`\n\n\(machine)\n\n"
            out += "| measure | result |\n|---|---|\n"
            out += "| preload (\(preload.messages) events, \(Self.integer(preload.messagesPerSecond)) events/s produced) | — |\n"
            if let median = ceilingRound {
                let ceiling = median.ceiling
                let ceilingRange = spread(rounds.map(\.ceiling.messagesPerSecond)) { Self.integer($0) }
                out += "| ceiling: bare consumer, counting\(rounds.count > 1 ? " (the median of \(rounds.count) rounds)" : "") | "
                    + "\(Self.integer(ceiling.messagesPerSecond)) events/s\(ceilingRange.isEmpty ? "" : " (\(ceilingRange) over the rounds)"), "
                    + "\(Self.decimal(perMillion(median.ceilingCPU.client, ceiling.messages))) CPU s per million events"
                    + "\(median.ceilingCPU.broker.map { " (broker \(Self.decimal(perMillion($0, ceiling.messages))))" } ?? "") |\n"
            }
            for (round, job, all) in jobs {
                let workers = stageOneWorkers == 1 ? "1 stage-1 worker" : "\(stageOneWorkers) stage-1 workers"
                let isBounded = job.name.hasSuffix("-bounded")
                let isStatic = job.name.hasSuffix("-static") || isBounded
                let title = isBounded ? "**\(job.name.dropLast("-bounded".count))** job, static assignment, bounded run (`processing.until_end`)"
                    : isStatic ? "**\(job.name.dropLast("-static".count))** job, static assignment" : "**\(job.name)** job, consumer groups"
                let overRounds = all.count > 1
                    ? "; the median of \(all.count) rounds by share of the ceiling (all rounds: \(spread(all.map { $0.round.ratio($0.job) * 100 }) { Self.integer($0, grouped: false) }) %, "
                        + "\(spread(all.map(\.job.eventsPerSecond)) { Self.integer($0) }) events/s, \(spread(all.map(\.job.cpuSecondsPerMillion)) { Self.decimal($0) }) CPU s per million events)"
                    : ""
                out += "| \(title), exactly-once, \(workers), process start → last final record | \(Self.integer(job.eventsPerSecond)) events/s "
                    + "(\(Self.percent(round.ratio(job))) of \(all.count > 1 ? "its round's" : "the") ceiling), \(Self.decimal(job.seconds)) s: start-up to first event \(Self.milliseconds(job.startupSeconds)) "
                    + "(\(isStatic ? "partitions" : "groups joined and partitions") restored at \(Self.milliseconds(job.readySeconds))), "
                    + "all consumed at \(Self.decimal(job.consumedSeconds)) s (\(Self.integer(job.processingRate)) events/s in between), "
                    + (job.bounded.map { "the last input partition ended at \(Self.decimal($0.inputEnded, places: 2)) s, stage 1 committed at \(Self.decimal($0.stageOneDone, places: 2)) s, "
                        + "stage 2 held the end watermarks at \(Self.decimal($0.stageTwoHeld, places: 2)) s and committed at \(Self.decimal(job.seconds, places: 2)) s, " } ?? "")
                    + "\(Self.decimal(job.cpuSecondsPerMillion)) CPU s per million events\(job.brokerCPUSecondsPerMillion.map { " (broker \(Self.decimal($0)))" } ?? "")"
                    + "\(byThread(job)), \(job.finalRecords) final records (\(job.records) records, \(job.partials) partials), peak RSS \(Self.integer(firstPeakRSS(all)))\(all.count > 1 ? " MB (its first round)" : " MB"), "
                    + "\(job.alignmentPauses) alignment pauses\(overRounds) |\n"
            }
            for (rate, result) in latency {
                out += "| latency at \(Self.integer(Double(rate))) events/s (\(result.measured) events measured) | event → updated metric p50 \(result.p50) ms, "
                    + "p99 \(result.p99) ms, max \(result.max) ms; window close → final record p50 \(result.finalP50) ms, max \(result.finalMax) ms (\(result.finals) records, \(result.finalWindows) windows) |\n"
            }
            if let state {
                out += "| state: \(Self.integer(Double(state.users))) users (\(Self.integer(Double(state.trackedUsers))) tracked), \(state.segments) segments, \(Self.integer(Double(state.events))) events | peak RSS "
                    + "\(Self.integer(state.peakRSSMegabytes)) MB (\(Self.integer(state.baselineRSSMegabytes)) MB before the service started), "
                    + "checkpoints \(Self.integer(state.checkpointMegabytes)) MB, restart → ready \(Self.decimal(state.restoreSeconds)) s, "
                    + "RSS of the restarted process: peak \(Self.integer(state.restorePeakRSSMegabytes)) MB while restoring, "
                    + "\(Self.integer(state.restoredRSSMegabytes)) MB restored and idle |\n"
            }
            return out
        }

        public var json: String {
            func object(_ pairs: [(String, String)]) -> String { "{" + pairs.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}" }
            func string(_ text: String) -> String {
                var out = ""
                JSONText.appendString(text, to: &out)
                return out
            }
            func jobObject(_ job: JobResult, of round: Round, peakRSS: Double? = nil) -> String {
                object([("name", string(job.name)), ("events", "\(job.events)"), ("seconds", Self.decimal(job.seconds)),
                        ("events_per_second", Self.integer(job.eventsPerSecond, grouped: false)), ("ratio_of_ceiling", Self.decimal(round.ratio(job), places: 3)),
                        ("startup_seconds", Self.decimal(job.startupSeconds, places: 3)), ("ready_seconds", Self.decimal(job.readySeconds, places: 3)), ("consumed_seconds", Self.decimal(job.consumedSeconds, places: 3)),
                        ("processing_events_per_second", Self.integer(job.processingRate, grouped: false)), ("cpu_seconds_per_million", Self.decimal(job.cpuSecondsPerMillion)),
                        ("broker_cpu_seconds_per_million", job.brokerCPUSecondsPerMillion.map { Self.decimal($0) } ?? "null"),
                        ("cpu_seconds_per_million_by_thread", object(job.cpuByThread.map { ($0.group, Self.decimal(perMillion($0.seconds, job.events))) })),
                        ("final_records", "\(job.finalRecords)"), ("records", "\(job.records)"), ("partials", "\(job.partials)"), ("peak_rss_mb", Self.integer(peakRSS ?? job.peakRSSMegabytes, grouped: false)),
                        ("alignment_pauses", "\(job.alignmentPauses)"),
                        ("input_ended_seconds", job.bounded.map { Self.decimal($0.inputEnded, places: 3) } ?? "null"),
                        ("stage_one_done_seconds", job.bounded.map { Self.decimal($0.stageOneDone, places: 3) } ?? "null"),
                        ("stage_two_held_seconds", job.bounded.map { Self.decimal($0.stageTwoHeld, places: 3) } ?? "null")])
            }
            func ceilingPairs(_ round: Round) -> [(String, String)] {
                [("ceiling_events_per_second", Self.integer(round.ceiling.messagesPerSecond, grouped: false)),
                 ("ceiling_cpu_seconds_per_million", Self.decimal(perMillion(round.ceilingCPU.client, round.ceiling.messages))),
                 ("ceiling_broker_cpu_seconds_per_million", round.ceilingCPU.broker.map { Self.decimal(perMillion($0, round.ceiling.messages)) } ?? "null")]
            }
            // Each job's median round, its ratio against that round's ceiling (its peak RSS
            // from its first round); then every round.
            let jobs = self.jobs.map { jobObject($0.job, of: $0.median, peakRSS: firstPeakRSS($0.all)) }
            let rounds = self.rounds.map { round in object(ceilingPairs(round) + [("jobs", "[" + round.jobs.map { jobObject($0, of: round) }.joined(separator: ",") + "]")]) }
            let latencies = latency.map { rate, result in
                object([("rate", "\(rate)"), ("produced", "\(result.produced)"), ("measured", "\(result.measured)"), ("p50_ms", "\(result.p50)"), ("p99_ms", "\(result.p99)"), ("max_ms", "\(result.max)"),
                        ("close_to_final_p50_ms", "\(result.finalP50)"), ("close_to_final_max_ms", "\(result.finalMax)"),
                        ("final_records", "\(result.finals)"), ("final_windows", "\(result.finalWindows)")])
            }
            var pairs = [("date", string(date)), ("machine", string(machine)), ("command", string(command)),
                         ("preload_events_per_second", Self.integer(preload.messagesPerSecond, grouped: false))]
                + (ceilingRound.map(ceilingPairs) ?? [])
                + [("stage1_workers", "\(stageOneWorkers)"), ("jobs", "[" + jobs.joined(separator: ",") + "]"),
                   ("rounds", "[" + rounds.joined(separator: ",") + "]"), ("latency", "[" + latencies.joined(separator: ",") + "]")]
            if let state {
                pairs.append(("state", object([("users", "\(state.users)"), ("tracked_users", "\(state.trackedUsers)"), ("segments", "\(state.segments)"), ("events", "\(state.events)"),
                                               ("peak_rss_mb", Self.integer(state.peakRSSMegabytes, grouped: false)),
                                               ("baseline_rss_mb", Self.integer(state.baselineRSSMegabytes, grouped: false)),
                                               ("checkpoint_mb", Self.decimal(state.checkpointMegabytes)), ("restore_seconds", Self.decimal(state.restoreSeconds)),
                                               ("restore_peak_rss_mb", Self.integer(state.restorePeakRSSMegabytes, grouped: false)),
                                               ("restored_rss_mb", Self.integer(state.restoredRSSMegabytes, grouped: false))])))
            }
            return object(pairs) + "\n"
        }

        static func integer(_ value: Double, grouped: Bool = true) -> String {
            let digits = String(Int(value.rounded()))
            guard grouped else { return digits }
            var out = ""
            for (index, character) in digits.reversed().enumerated() {
                if index > 0 && index % 3 == 0 && character != "-" { out.append(",") }
                out.append(character)
            }
            return String(out.reversed())
        }
        static func decimal(_ value: Double, places: Int = 1) -> String { String(format: "%.\(places)f", value) }
        static func percent(_ value: Double) -> String { String(format: "%.0f %%", value * 100) }
        static func milliseconds(_ seconds: Double) -> String { "\(Int((seconds * 1000).rounded())) ms" }
    }
}
