import Foundation
import Kafka
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension ServiceCrashTests {
    @Test("Read API: /v1/segments, history and the live stream serve exactly the records on the metrics topic; a token guards them")
    func readAPI() async throws {
        let scenario = try await ServiceScenario(prefix: "readapi", partitions: 2, events: 3_000, users: 150, seed: 41)
        let token = "read-token-0123456789"
        let service = try scenario.start(instance: "r1", environment: ["PULSE_API__TOKEN": token])
        #expect(try await service.waitForHTTP("/healthz", status: 200, timeout: .seconds(60)))
        #expect(await service.get("/v1/segments")?.status == 401, "no token")
        #expect(await service.get("/v1/segments?token=wrong-token-0000000")?.status == 401, "wrong token")
        #expect(await service.get("/")?.status == 200, "the dashboard page itself holds no data")
        #expect(await service.get("/dashboard.js")?.body.contains("EventSource") == true)

        let base = "http://127.0.0.1:\(service.httpPort)"
        let stream = try StreamRecorder(url: "\(base)/v1/stream?segment=all&token=\(token)", output: scenario.directory.appendingPathComponent("stream.txt"))
        // Right away: the audience's event time lies in the past, and an input that stays
        // empty past the idle timeout lets the watermark follow the clock beyond it.
        try await Task.sleep(for: .milliseconds(300))
        try await scenario.feed(slice: 500, pause: .milliseconds(300)).value
        let messages = try await scenario.awaitFinals()
        try scenario.verifyFinals(messages, "read api")

        // The newest final record of every (segment, window) on the topic.
        var expected: [String: [Int64: String]] = [:]
        for message in messages where message.valueString.contains("\"final\":true") {
            let record = try Self.object(message.valueString)
            let window = try #require(record["window"] as? [String: Any])
            expected[try #require(record["segment"] as? String), default: [:]][try #require(window["start_ms"] as? Int64)] = message.valueString
        }
        func served(_ segment: String, query: String = "") async throws -> (status: Int, records: [String: Any])? {
            let id = segment.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? segment
            guard let answer = await service.get("/v1/segments/\(id)/metrics?token=\(token)\(query)") else { return nil }
            return (answer.status, (try? Self.object(answer.body)) ?? [:])
        }
        func finals(_ answer: [String: Any]) throws -> [Int64: String] {
            var result: [Int64: String] = [:]
            for record in answer["records"] as? [[String: Any]] ?? [] where record["final"] as? Bool == true {
                let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
                result[(record["window"] as? [String: Any])?["start_ms"] as? Int64 ?? -1] = String(decoding: data, as: UTF8.self)
            }
            return result
        }
        func normalized(_ records: [Int64: String]) throws -> [Int64: String] {
            try records.mapValues { String(decoding: try JSONSerialization.data(withJSONObject: try Self.object($0), options: [.sortedKeys]), as: UTF8.self) }
        }
        // The read model follows the topic: wait until it serves every final record.
        let deadline = ContinuousClock.now + .seconds(30)
        var mismatched = Array(expected.keys)
        while !mismatched.isEmpty && ContinuousClock.now < deadline {
            var still: [String] = []
            for segment in mismatched {
                guard let answer = try await served(segment), answer.status == 200,
                      try finals(answer.records) == normalized(expected[segment] ?? [:]) else {
                    still.append(segment)
                    continue
                }
            }
            mismatched = still
            if !mismatched.isEmpty { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(mismatched.isEmpty, "segments whose served final records differ from the topic: \(mismatched.sorted())")

        // The listing: every segment, `all` first, headline = the newest record served.
        let listing = try Self.object(try #require(await service.get("/v1/segments?token=\(token)")).body)
        let entries = try #require(listing["segments"] as? [[String: Any]])
        #expect(Set(entries.compactMap { $0["segment"] as? String }) == Set(expected.keys))
        #expect(entries.first?["segment"] as? String == "all")
        #expect(listing["windows"] as? [String] == ["1m"])
        for entry in entries {
            let segment = try #require(entry["segment"] as? String)
            let headline = try #require((entry["windows"] as? [[String: Any]])?.first)
            let newest = try #require(expected[segment]?.max { $0.key < $1.key })
            let record = try Self.object(newest.value)
            #expect(headline["start_ms"] as? Int64 == newest.key, "\(segment): latest window")
            #expect(headline["events"] as? Int == record["events"] as? Int, "\(segment): events")
            #expect(headline["unique_users"] as? Int == (record["users"] as? [String: Any])?["unique"] as? Int, "\(segment): unique users")
        }
        let search = try Self.object(try #require(await service.get("/v1/segments?q=COUNTRY&token=\(token)")).body)
        #expect((search["segments"] as? [[String: Any]])?.allSatisfy { ($0["segment"] as? String)?.hasPrefix("country=") == true } == true)

        // Time bounds, unknown segments, bad bounds.
        let starts = try #require(expected["all"]?.keys.sorted())
        let bounded = try #require(try await served("all", query: "&from=\(starts[1])&to=\(starts[3])"))
        #expect(try finals(bounded.records).keys.sorted() == [starts[1], starts[2]])
        #expect(try await served("no-such-segment")?.status == 404)
        #expect(try await served("all", query: "&from=yesterday")?.status == 400)

        // The stream: every final record of `all` arrived, live, byte for byte.
        let events = await stream.stop()
        #expect(events.allSatisfy { $0.contains("\"segment\":\"all\"") }, "the stream is filtered by segment")
        #expect(Set(events.filter { $0.contains("\"final\":true") }) == Set(expected["all"]?.values ?? [:].values))
        let status = try await service.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM with an open stream still exits cleanly")
    }

    @Test("Dashboard in headless Chromium: live charts for the expected segment with non-zero values, updated without reloading; screenshot saved — also for a deployment without optional metric families",
          arguments: [false, true])
    func dashboardInBrowser(lean: Bool) async throws {
        let scenario = try await ServiceScenario(prefix: lean ? "dashboard-lean" : "dashboard", partitions: 2, events: 8_000, users: 300, seed: 43)
        // The audience's event time lies in the past: feed from the start, before an idle
        // (empty) input would let the watermark follow the clock past it. About 40 s of input.
        let feeding = scenario.feed(slice: 100, pause: .milliseconds(500))
        // Records without conversion, dwell quantiles, sessions, top content or trend.
        let service = try scenario.start(instance: "d1", environment: lean ? ["PULSE_METRICS__INCLUDE": "[]"] : [:])
        #expect(try await service.waitForHTTP("/readyz", status: 200, timeout: .seconds(60)))
        let browser = try await Browser()
        do {
            try await browser.open("http://127.0.0.1:\(service.httpPort)/")
            _ = try await browser.evaluate("window.pulseSameDocument = true; return true")
            let probe = """
                const text = (id) => document.getElementById(id).textContent;
                return JSON.stringify({
                  segment: text("segment-name"), events: text("stat-events"), users: text("stat-users"),
                  records: Number(document.body.dataset.records || 0), received: Number(document.body.dataset.received || 0),
                  lines: document.querySelectorAll("#chart-events path.series").length,
                  userLines: document.querySelectorAll("#chart-users path.series").length, duplicates: text("quality-duplicates"),
                  conversion: text("chart-conversion"), top: text("top-content"),
                  segments: [...document.querySelectorAll("#segments li")].map((li) => li.dataset.segment),
                  live: document.getElementById("connection").dataset.state, same: window.pulseSameDocument === true });
                """
            func look() async throws -> [String: Any] {
                try Self.object(try #require(try await browser.evaluate(probe) as? String))
            }
            var page: [String: Any] = [:]
            let deadline = ContinuousClock.now + .seconds(60)
            repeat {
                try await Task.sleep(for: .milliseconds(500))
                page = try await look()
            } while ContinuousClock.now < deadline
                && !((page["records"] as? Int ?? 0) >= 2 && (page["lines"] as? Int ?? 0) > 0 && !["–", "0"].contains(page["events"] as? String ?? "–"))
            #expect(page["segment"] as? String == "all", "the dashboard opens on the segment `all`: \(page)")
            #expect((page["records"] as? Int ?? 0) >= 2, "windows charted: \(page)")
            #expect((page["lines"] as? Int ?? 0) > 0, "the events chart is drawn")
            #expect((page["userLines"] as? Int ?? 0) > 0, "the unique-users chart is drawn (after the conversion figures)")
            #expect(page["duplicates"] as? String != "–", "the quality figures are filled in (after top content): \(page)")
            // A family the deployment leaves out says so instead of waiting for data.
            #expect(((page["conversion"] as? String)?.contains("not computed") == true) == lean, "\(page)")
            #expect(((page["top"] as? String)?.contains("not computed") == true) == lean, "\(page)")
            #expect(!["–", "0", nil].contains(page["events"] as? String), "non-zero events: \(page)")
            #expect(!["–", "0", nil].contains(page["users"] as? String), "non-zero unique users: \(page)")
            #expect((page["segments"] as? [String])?.contains { $0.hasPrefix("country=") } == true, "segment picker lists the countries")
            #expect(page["live"] as? String == "live")
            // Numbers keep moving from the stream, in the same document.
            let received = page["received"] as? Int ?? 0
            let later = Date().addingTimeInterval(30)
            repeat {
                try await Task.sleep(for: .milliseconds(500))
                page = try await look()
            } while Date() < later && (page["received"] as? Int ?? 0) <= received + 5
            #expect((page["received"] as? Int ?? 0) > received + 5, "records keep arriving over Server-Sent Events")
            #expect(page["same"] as? Bool == true, "updated without reloading")
            let png = try await browser.screenshot()
            let output = ServiceProcess.root.appendingPathComponent(".build/test-output")
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let file = output.appendingPathComponent(lean ? "dashboard-lean.png" : "dashboard.png")
            try png.write(to: file)
            #expect(png.count > 10_000, "a screenshot with content")
            print("dashboard screenshot: \(file.path)")
        } catch {
            await browser.close()
            throw error
        }
        await browser.close()
        try await feeding.value
        #expect(try await service.terminate(timeout: .seconds(30)) == 0)
    }

    static func object(_ json: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }
}

/// Records a Server-Sent Events stream with curl: the `data` of every `record` event.
final class StreamRecorder: @unchecked Sendable {
    // @unchecked: set once in init.
    private let process = Process()
    private let output: URL

    init(url: String, output: URL) throws {
        self.output = output
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-sN", url]
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
    }

    /// Ends the stream; returns the records received.
    func stop() async -> [String] {
        process.terminate()
        await process.exited(within: .seconds(10))
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        return text.components(separatedBy: "\n\n").compactMap { event in
            let lines = event.split(separator: "\n")
            guard lines.contains("event: record"), let data = lines.first(where: { $0.hasPrefix("data: ") }) else { return nil }
            return String(data.dropFirst("data: ".count))
        }
    }
}
