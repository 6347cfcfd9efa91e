import Crypto
import Foundation
import Kafka
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Signed webhooks of a running `pulse serve`, against the real broker.
@Suite("Signed webhooks")
struct WebhookTests {
    static let secret = "shop-secret-0123456789"
    static let settings = [
        "PULSE_COLLECTOR__WEBHOOKS__SHOP__SECRET": secret,
        "PULSE_COLLECTOR__WEBHOOKS__SHOP__EVENTS_PATH": "data.events",
        "PULSE_COLLECTOR__WEBHOOKS__SHOP__MAPPING":
            "{event_id: id, type: kind, user_id: customer.id, timestamp: at, value: amount, attributes.country: customer.country}",
    ]

    static func signature(_ body: String, timestamp: Int64, secret: String = WebhookTests.secret) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Array("\(timestamp).\(body)".utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return "sha256=" + code.map { String(format: "%02x", $0) }.joined()
    }

    static func send(_ service: ServiceProcess, source: String = "shop", _ body: String, headers: [String: String]) async -> Int? {
        guard let url = URL(string: "http://127.0.0.1:\(service.httpPort)/v1/webhooks/\(source)") else { return nil }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return nil }
        return (response as? HTTPURLResponse)?.statusCode
    }

    @Test("valid, invalid, missing, stale and replayed signatures; the mapped events reach the topic")
    func signatures() async throws {
        let scenario = try await ServiceScenario(prefix: "webhook", partitions: 2, events: 1)
        let service = try await CollectorTests.start(scenario, extra: Self.settings)
        defer { service.kill() }
        let now = Int64(Date().timeIntervalSince1970)
        let body = #"{"data":{"events":[{"id":"w1","kind":"conversion","customer":{"id":"c1","country":"DE"},"at":\#(now * 1000),"amount":19.99},"#
            + #"{"id":"w2","kind":"page_view","customer":{"id":"c2","country":"FR"},"at":\#(now * 1000)}]}}"#
        let good = ["X-Pulse-Timestamp": "\(now)", "X-Pulse-Signature": Self.signature(body, timestamp: now)]

        #expect(await Self.send(service, body, headers: good) == 202, "a valid signature is accepted")
        #expect(await Self.send(service, body, headers: good) == 409, "the same signed request again is a replay")
        #expect(await Self.send(service, body, headers: ["X-Pulse-Timestamp": "\(now)"]) == 401, "no signature")
        #expect(await Self.send(service, body, headers: ["X-Pulse-Timestamp": "\(now)", "X-Pulse-Signature": Self.signature(body, timestamp: now, secret: "another-secret-0123456")]) == 401, "wrong secret")
        #expect(await Self.send(service, body + " ", headers: good) == 401, "body changed after signing")
        let stale = now - 600
        #expect(await Self.send(service, body, headers: ["X-Pulse-Timestamp": "\(stale)", "X-Pulse-Signature": Self.signature(body, timestamp: stale)]) == 401, "timestamp outside the tolerance")
        #expect(await Self.send(service, source: "nobody", body, headers: good) == 404, "unknown source")

        let messages = try await ServiceExactResultsTests.read(scenario.input, patience: .seconds(5)) { $0.count >= 2 }
        #expect(messages.count == 2, "the two mapped events, once")
        let first = try #require(messages.first { $0.keyString == "c1" })
        let event = try #require(try JSONSerialization.jsonObject(with: Data(first.value)) as? [String: Any])
        #expect(event["event_id"] as? String == "w1" && event["type"] as? String == "conversion" && event["user_id"] as? String == "c1")
        #expect((event["attributes"] as? [String: Any])?["country"] as? String == "DE")
        #expect(first.header("pulse.source") == "webhook:shop")
    }
}
