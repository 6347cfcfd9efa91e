import AudienceMetrics
import Testing
@testable import AudiencePulse

@Suite("pulse bench core")
struct CoreBenchmarkTests {
    /// The benchmark's two stages (4 input partitions, partials through their binary form,
    /// 8 mergers) must compute what one local pipeline computes over the same events, or
    /// its figures measure the wrong work.
    @Test("both stages without Kafka give the final records of one local pipeline over the same events (the full job: the defaults; the example job: hopping windows and rules)",
          arguments: [SuiteBenchmark.fullJobBody, SuiteBenchmark.exampleJobBody])
    func pipelineMatchesLocalPipeline(body: String) throws {
        // 90 s of event time: the defaults' 1m windows close twice.
        let events = 45_000
        var corpus = ReferenceCorpus(count: 7_000)
        let run = try CoreThroughputBenchmark.pipeline(corpus: &corpus, events: events, updateEvery: 2_500, body: body)
        #expect(run.result.events == events)
        #expect(run.partials > run.finalRecords, "updates were sent besides the finals")
        #expect(run.records > run.finalRecords)
        #expect(run.checkpoints == 3 * (4 + 8), "4 aggregators and 8 mergers, three times (at 12,500, 25,000 and 37,500 events)")
        #expect(run.incrementalCheckpoints > 0 && run.incrementalCheckpoints <= 2 * (4 + 8), "later ones as increments where they fit: \(run.incrementalCheckpoints)")
        #expect(run.markers > 0 && run.markers < events / 5_000 * 4, "markers only when stage 1 would send one, not after every batch: \(run.markers)")

        let configuration = try PulseConfiguration.load(
            yaml: "kafka:\n  bootstrap.servers: 127.0.0.1:9092\ntopics:\n  input: events\n" + body)
        let local = LocalPipeline(config: configuration.aggregation, trend: configuration.trend)
        var fresh = ReferenceCorpus(count: 7_000)
        var expected: [MetricRecord] = []
        for sequence in 0..<events {
            let index = fresh.prepare(sequence)
            #expect(fresh.messages[index].withUnsafeBytes { local.feed($0) } == nil)
            expected += local.takeFinals()
        }
        expected += local.finish()
        #expect(local.counts.valid == events)

        // Top content is left out: above 64 items (the corpus has 500) merged summaries
        // may track other tail items than one summary over all events.
        func summary(_ records: [MetricRecord]) -> [String] {
            records.map { r in
                "\(r.window.name) \(r.start) \(r.segment): \(r.events) events, \(r.uniqueUsers) users (\(r.newUsers) new, "
                    + "\(r.retainedUsers) retained), \(r.engagementCount) engagements, \(r.convertingUsers) converting, "
                    + "\(r.dwellCount) dwell, \(r.sessionsStarted) sessions"
            }.sorted()
        }
        #expect(expected.count > 60, "two windows' records at least: \(expected.count)")
        #expect(summary(run.finals) == summary(expected))
    }

    /// The state measurement must encode tables holding every id and user it inserted
    /// (none pruned or evicted), or it measures smaller state than it reports.
    @Test("the checkpoint-encoding measurement encodes every id and user it reports")
    func stateEncodingsHoldWhatTheyReport() {
        let times = CoreThroughputBenchmark.stateEncodings(ids: 20_000, users: 5_000, rounds: 1)
        // An id: 8 bytes of hash and at least 1 of time; a user: its 8-byte key and state.
        #expect(times.deduplicatorBytes >= 20_000 * 9)
        #expect(times.userStateBytes >= 5_000 * 9)
        #expect(times.deduplicator > 0 && times.userStates > 0)
    }
}
