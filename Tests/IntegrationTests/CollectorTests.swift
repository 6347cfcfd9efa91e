import Foundation
import Kafka
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The HTTP collector of a running `pulse serve`, against the real broker.
@Suite("The HTTP collector", .serialized)
struct CollectorTests {
    static let key = "test-key-0123456789abcdef"

    static func start(_ scenario: ServiceScenario, extra: [String: String] = [:], command: String = "serve") async throws -> ServiceProcess {
        let service = try scenario.start(instance: "h1", environment: ["PULSE_COLLECTOR__API_KEYS__TESTS": key].merging(extra) { $1 }, command: command)
        #expect(try await service.waitForHTTP("/healthz", status: 200, timeout: .seconds(30)))
        return service
    }

    static func post(
        _ service: ServiceProcess, _ body: String, key: String? = CollectorTests.key, contentType: String = "application/json",
        method: String = "POST", headers: [String: String] = [:]
    ) async -> (status: Int, body: String, headers: [AnyHashable: Any])? {
        guard let url = URL(string: "http://127.0.0.1:\(service.httpPort)/v1/events") else { return nil }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if method == "POST" { request.httpBody = Data(body.utf8) }
        request.timeoutInterval = 30
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        return (http.statusCode, String(decoding: data, as: UTF8.self), http.allHeaderFields)
    }

    static func event(_ id: String, user: String = "u1", type: String = "click") -> String {
        #"{"event_id":"\#(id)","type":"\#(type)","user_id":"\#(user)","timestamp":\#(Int64(Date().timeIntervalSince1970 * 1000))}"#
    }

    static func readInput(_ scenario: ServiceScenario, count: Int) async throws -> [KafkaConsumerMessage] {
        try await ServiceExactResultsTests.read(scenario.input, patience: .seconds(10)) { $0.count >= count }
    }

    @Test("accepted events are in the topic once with key and headers; rejected ones are not; each event gets its answer")
    func acceptsAndRejects() async throws {
        let scenario = try await ServiceScenario(prefix: "collect", partitions: 2, events: 1)
        let service = try await Self.start(scenario)
        defer { service.kill() }

        let batch = "[" + [Self.event("a1", user: "alice"), #"{"type":"click"}"#, Self.event("a2", user: "bob"), "42"].joined(separator: ",") + "]"
        let answer = try #require(await Self.post(service, batch))
        #expect(answer.status == 202, "\(answer.body)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        #expect(json["accepted"] as? Int == 2 && json["rejected"] as? Int == 2)
        let results = try #require(json["results"] as? [[String: Any]])
        #expect(results.map { $0["status"] as? String } == ["accepted", "rejected", "accepted", "rejected"])
        #expect(results[1]["reason"] as? String == "missing_field:event_id")
        #expect(results[3]["reason"] as? String == "not_an_object")

        let single = try #require(await Self.post(service, Self.event("a3", user: "carol")))
        #expect(single.status == 202)
        let ndjson = try #require(await Self.post(service, Self.event("a4", user: "dave") + "\n\n" + Self.event("a5", user: "erin") + "\n", contentType: "application/x-ndjson"))
        #expect(ndjson.status == 202, "\(ndjson.body)")

        let messages = try await Self.readInput(scenario, count: 5)
        #expect(messages.count == 5, "exactly the five accepted events")
        let byKey = Dictionary(uniqueKeysWithValues: messages.map { ($0.keyString ?? "", $0) })
        #expect(Set(byKey.keys) == ["alice", "bob", "carol", "dave", "erin"], "keyed by user_id")
        #expect(byKey["alice"]?.valueString.contains(#""event_id":"a1""#) == true)
        #expect(messages.allSatisfy { $0.header("pulse.source") == "tests" && Int64($0.header("pulse.received_at") ?? "") != nil })

        let metrics = await service.get("/metrics")?.body ?? ""
        #expect(metrics.contains("pulse_collector_events_accepted_total 5\n"))
        #expect(metrics.contains(#"pulse_collector_events_rejected_total{reason="missing_field:event_id"} 1"#))
        #expect(metrics.contains(#"pulse_collector_requests_total{route="/v1/events",status="202"} 3"#))
    }

    @Test("401 without a valid key, 413 for a body over the limit or too many events, 400 for malformed or all-invalid bodies")
    func refusals() async throws {
        let scenario = try await ServiceScenario(prefix: "refuse", partitions: 1, events: 1)
        let service = try await Self.start(scenario, extra: ["PULSE_COLLECTOR__MAX_BODY_BYTES": "4096", "PULSE_COLLECTOR__MAX_EVENTS_PER_REQUEST": "3"])
        defer { service.kill() }
        #expect(await Self.post(service, Self.event("r1"), key: nil)?.status == 401)
        #expect(await Self.post(service, Self.event("r1"), key: "wrong-key-0123456789")?.status == 401)
        #expect(await Self.post(service, "[" + String(repeating: Self.event("big") + ",", count: 60) + Self.event("x") + "]")?.status == 413)
        #expect(await Self.post(service, "[" + (1...4).map { Self.event("n\($0)") }.joined(separator: ",") + "]")?.status == 413)
        for body in ["", "   ", "[1,,2]", "[{\"a\":1}", "hello", #"[{"type":"click"}]"#] {
            #expect(await Self.post(service, body)?.status == 400, "\(body.debugDescription) is refused with 400")
        }
        let nothing = try await ServiceExactResultsTests.read(scenario.input, patience: .seconds(3)) { _ in false }
        #expect(nothing.isEmpty, "nothing refused reached the topic")
    }

    @Test("pulse collect: the collector alone writes accepted events and drains on SIGTERM")
    func collectAlone() async throws {
        let scenario = try await ServiceScenario(prefix: "alone", partitions: 2, events: 1)
        let collector = try await Self.start(scenario, command: "collect")
        #expect(try await collector.waitForHTTP("/readyz", status: 200, timeout: .seconds(10)))
        let answer = try #require(await Self.post(collector, "[" + (1...50).map { Self.event("alone-\($0)", user: "u\($0)") }.joined(separator: ",") + "]"))
        #expect(answer.status == 202)
        #expect(try await collector.terminate(timeout: .seconds(20)) == 0, "SIGTERM: exit 0")
        let messages = try await Self.readInput(scenario, count: 50)
        #expect(messages.count == 50)
        #expect(collector.logCount("stage 1") == 0, "no pipeline runs in pulse collect")
    }

    @Test("CORS: an allowed origin gets its preflight and response headers, another origin gets none")
    func cors() async throws {
        let scenario = try await ServiceScenario(prefix: "cors", partitions: 1, events: 1)
        let service = try await Self.start(scenario, extra: ["PULSE_COLLECTOR__CORS__ALLOWED_ORIGINS": "[https://shop.example]"])
        defer { service.kill() }
        let preflight = try #require(await Self.post(service, "", key: nil, method: "OPTIONS", headers: ["Origin": "https://shop.example", "Access-Control-Request-Method": "POST"]))
        #expect(preflight.status == 204)
        #expect(preflight.headers["Access-Control-Allow-Origin"] as? String == "https://shop.example")
        #expect((preflight.headers["Access-Control-Allow-Headers"] as? String)?.contains("Authorization") == true)
        let posted = try #require(await Self.post(service, Self.event("cors1"), headers: ["Origin": "https://shop.example"]))
        #expect(posted.status == 202 && posted.headers["Access-Control-Allow-Origin"] as? String == "https://shop.example")
        let foreign = try #require(await Self.post(service, "", key: nil, method: "OPTIONS", headers: ["Origin": "https://evil.example", "Access-Control-Request-Method": "POST"]))
        #expect(foreign.headers["Access-Control-Allow-Origin"] == nil, "no CORS headers for other origins")
    }

    @Test("50 concurrent clients: every event answered 202 is in the topic, exactly once")
    func concurrentClients() async throws {
        let scenario = try await ServiceScenario(prefix: "concurrent", partitions: 4, events: 1)
        let service = try await Self.start(scenario)
        defer { service.kill() }
        let accepted = try await withThrowingTaskGroup(of: Int.self) { group in
            for client in 0..<50 {
                group.addTask {
                    var accepted = 0
                    for request in 0..<10 {
                        let body = "[" + (0..<20).map { Self.event("c\(client)-\(request)-\($0)", user: "u\(client)") }.joined(separator: ",") + "]"
                        if await Self.post(service, body)?.status == 202 { accepted += 20 }
                    }
                    return accepted
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(accepted == 10_000, "every request was accepted")
        let messages = try await Self.readInput(scenario, count: accepted)
        #expect(messages.count == accepted)
        #expect(Set(messages.map(\.valueString)).count == accepted, "no event twice")
    }
}

extension ServiceCrashTests {
    @Test("Collector during a broker outage: 503 with Retry-After within the delivery timeout; after recovery nothing acknowledged is missing")
    func collectorOutage() async throws {
        let broker = try await PrivateBroker()
        do {
            try await TestBroker.$overrideServers.withValue(broker.bootstrapServers) {
                let scenario = try await ServiceScenario(prefix: "collect-outage", partitions: 2, events: 1)
                let service = try await CollectorTests.start(scenario, extra: ["PULSE_COLLECTOR__DELIVERY_TIMEOUT": "2s"])
                defer { service.kill() }
                var acknowledged: Set<String> = []
                let before = try #require(await CollectorTests.post(service, CollectorTests.event("o-before")))
                #expect(before.status == 202)
                acknowledged.insert("o-before")
                broker.proxy.cut()
                let began = ContinuousClock.now
                let during = try #require(await CollectorTests.post(service, CollectorTests.event("o-during")))
                let waited = ContinuousClock.now - began
                #expect(during.status == 503, "\(during.body)")
                #expect(during.headers["Retry-After"] as? String == "1")
                #expect(waited < .seconds(10), "answered within the delivery timeout (took \(waited))")
                broker.proxy.restore()
                var after = 0
                let deadline = ContinuousClock.now + .seconds(60)
                while after != 202 && ContinuousClock.now < deadline {
                    after = await CollectorTests.post(service, CollectorTests.event("o-after"))?.status ?? 0
                    if after != 202 { try await Task.sleep(for: .milliseconds(500)) }
                }
                #expect(after == 202, "accepted again after the outage")
                acknowledged.insert("o-after")
                let messages = try await ServiceExactResultsTests.read(scenario.input, patience: .seconds(10)) { _ in false }
                let ids = Set(messages.compactMap { message in acknowledged.first { message.valueString.contains(#""event_id":"\#($0)""#) } })
                #expect(ids == acknowledged, "every acknowledged event is in the topic")
            }
        } catch {
            try await broker.stop()
            throw error
        }
        try await broker.stop()
    }
}
