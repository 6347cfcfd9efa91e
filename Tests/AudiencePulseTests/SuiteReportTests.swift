import Foundation
import Testing

@testable import AudiencePulse

@Suite("The suite's report over several rounds")
struct SuiteReportTests {
    static func job(_ name: String, seconds: Double, cpu: Double) -> SuiteBenchmark.JobResult {
        SuiteBenchmark.JobResult(name: name, events: 1_000_000, seconds: seconds, startupSeconds: 0.2, readySeconds: 0.1, consumedSeconds: seconds - 1,
                                 cpuSeconds: cpu, brokerCPUSeconds: nil, finalRecords: 10, peakRSSMegabytes: 100, alignmentPauses: 0)
    }

    static func round(ceiling seconds: Double, lean: Double, full: Double, peakRSS: Double = 100) -> SuiteBenchmark.Round {
        var jobs = [job("lean-static", seconds: lean, cpu: lean), job("full-static", seconds: full, cpu: full)]
        for index in jobs.indices { jobs[index].peakRSSMegabytes = peakRSS }
        return SuiteBenchmark.Round(ceiling: .init(role: "ceiling", messages: 1_000_000, bytes: 0, seconds: seconds),
                                    ceilingCPU: .init(client: 0.5, broker: nil), jobs: jobs)
    }

    static func report(_ rounds: [SuiteBenchmark.Round]) -> SuiteBenchmark.Report {
        SuiteBenchmark.Report(machine: "test", command: "pulse bench suite", date: "now", preload: .init(role: "preload", messages: 1_000_000, bytes: 0, seconds: 1),
                              rounds: rounds, stageOneWorkers: 2, latency: [], state: nil)
    }

    @Test("each job comes from the round where its share of that round's ceiling is the median, with the range over all rounds")
    func medianRoundPerJob() throws {
        // Ceilings 1.0, 0.5 and 0.8 M/s. Lean: 4 s, 4 s and 2 s → 25 %, 50 %, 62.5 % of its
        // round's ceiling: the median share is round 2's, though round 1 has the median rate.
        // Full: 10 s, 8 s, 12.5 s → 10 %, 25 %, 10 %: the lower middle is a 10 % round.
        let report = Self.report([
            Self.round(ceiling: 1.0, lean: 4, full: 10),
            Self.round(ceiling: 2.0, lean: 4, full: 8, peakRSS: 300),
            Self.round(ceiling: 1.25, lean: 2, full: 12.5, peakRSS: 300),
        ])
        #expect(report.ceilingRound?.ceiling.seconds == 1.25, "the median ceiling, 800,000 events/s")
        let jobs = report.jobs
        #expect(jobs.map(\.job.name) == ["lean-static", "full-static"])
        #expect(jobs[0].median.ceiling.seconds == 2.0 && jobs[0].median.ratio(jobs[0].job) == 0.5)
        #expect(jobs[1].median.ratio(jobs[1].job) == 0.1)
        let markdown = report.markdown
        #expect(markdown.contains("| ceiling: bare consumer, counting (the median of 3 rounds) | 800,000 events/s (500,000–1,000,000 over the rounds)"), "\(markdown)")
        #expect(markdown.contains("250,000 events/s (50 % of its round's ceiling)"), "\(markdown)")
        #expect(markdown.contains("the median of 3 rounds by share of the ceiling (all rounds: 25–63 %, 250,000–500,000 events/s, 2.0–4.0 CPU s per million events)"), "\(markdown)")
        // Later rounds start from the memory the jobs before them left: the first round's peak.
        #expect(markdown.contains("peak RSS 100 MB (its first round)") && !markdown.contains("300 MB"), "\(markdown)")

        let json = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(json["ceiling_events_per_second"] as? Int == 800_000)
        let medians = json["jobs"] as? [[String: Any]] ?? []
        #expect(medians.map { $0["ratio_of_ceiling"] as? Double } == [0.5, 0.1])
        #expect(medians.map { $0["peak_rss_mb"] as? Int } == [100, 100])
        let rounds = json["rounds"] as? [[String: Any]] ?? []
        #expect(rounds.map { $0["ceiling_events_per_second"] as? Int } == [1_000_000, 500_000, 800_000])
        #expect(rounds.map { ($0["jobs"] as? [[String: Any]])?.count } == [2, 2, 2])
    }

    @Test("one round reads as before: no ranges")
    func oneRound() {
        let markdown = Self.report([Self.round(ceiling: 1.0, lean: 4, full: 10)]).markdown
        #expect(markdown.contains("| ceiling: bare consumer, counting | 1,000,000 events/s, 0.5 CPU s per million events |"), "\(markdown)")
        #expect(markdown.contains("250,000 events/s (25 % of the ceiling)"), "\(markdown)")
        #expect(markdown.contains("peak RSS 100 MB, 0 alignment pauses |"), "\(markdown)")
        #expect(!markdown.contains("rounds"), "\(markdown)")
    }
}
