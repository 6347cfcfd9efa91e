import AudiencePulse
import Testing

@Suite("Read model store")
struct MetricsStoreTests {
    static func record(_ segment: String, start: Int64, events: Int, final: Bool = true, size: String = "1m") -> String {
        """
        {"schema":"audience-pulse.metrics/v1","segment":"\(segment)","window":{"size":"\(size)","start":"x","end":"y","start_ms":\(start),"end_ms":\(start + 60_000)},\
        "final":\(final),"events":\(events),"users":{"unique":\(events / 2)},"engagement":{"rate":0.5},"conversion":{"rate":null},"trend":null}
        """
    }

    @Test("newest record per window wins, a final is never replaced by an update, history is ordered and bounded by time")
    func upserts() throws {
        let store = MetricsStore()
        #expect(store.ingest(Self.record("all", start: 120_000, events: 5, final: false)))
        #expect(store.ingest(Self.record("all", start: 60_000, events: 7)))
        #expect(store.ingest(Self.record("all", start: 120_000, events: 9)))
        #expect(store.ingest(Self.record("all", start: 120_000, events: 3, final: false)), "a late update is read but does not replace the final")
        let answer = try #require(store.records(segment: "all", window: nil))
        #expect(answer.window == "1m")
        #expect(answer.records == [Self.record("all", start: 60_000, events: 7), Self.record("all", start: 120_000, events: 9)])
        #expect(store.records(segment: "all", window: "1m", from: 61_000, to: 200_000)?.records.count == 1)
        #expect(store.records(segment: "nobody", window: nil) == nil)
        #expect(!store.ingest("{not json"))
        #expect(store.stats.unreadable == 1)
        let listing = store.segments()
        #expect(listing.map(\.segment) == ["all"])
        #expect(listing.first?.latest.first?.events == 9)
    }

    @Test("retention forgets windows that ended long before the newest; the segment cap drops and counts")
    func limits() {
        let store = MetricsStore(limits: .init(retention: 600_000, maxSegments: 2))
        for minute in 0..<30 { store.ingest(Self.record("all", start: Int64(minute) * 60_000, events: minute)) }
        let kept = store.records(segment: "all", window: nil)?.records.count ?? 0
        #expect(kept >= 10 && kept <= 12, "about 10 minutes of 1-minute windows kept, got \(kept)")
        store.ingest(Self.record("country=DE", start: 29 * 60_000, events: 1))
        store.ingest(Self.record("country=FR", start: 29 * 60_000, events: 1))
        #expect(store.segments().map(\.segment) == ["all", "country=DE"], "`all` first, then by name")
        #expect(store.stats.droppedRecords == 1)
        #expect(store.segments(matching: "de").map(\.segment) == ["country=DE"])
    }

    @Test("subscribers get the records of their segment as they arrive, and end when the store closes")
    func subscriptions() async {
        let store = MetricsStore()
        let everything = store.subscribe()
        let germany = store.subscribe(segment: "country=DE")
        store.ingest(Self.record("all", start: 0, events: 1))
        store.ingest(Self.record("country=DE", start: 0, events: 2))
        store.heartbeat()
        store.close()
        var all: [String] = []
        for await json in everything { all.append(json) }
        var de: [String] = []
        for await json in germany { de.append(json) }
        #expect(all == [Self.record("all", start: 0, events: 1), Self.record("country=DE", start: 0, events: 2), ""])
        #expect(de == [Self.record("country=DE", start: 0, events: 2), ""])
        #expect(store.stats.subscribers == 0)
        var late: [String] = []
        for await json in store.subscribe() { late.append(json) }
        #expect(late.isEmpty, "a subscription after close ends at once")
    }
}
