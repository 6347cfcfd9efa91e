import AudiencePulse
import Foundation
import Kafka
import Testing

/// `pulse serve` as a child process that the test can kill.
final class ServiceProcess {
    let process = Process()
    let log: URL

    static var binary: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/debug/pulse")
    }

    init(config: URL, instance: String, log: URL) throws {
        self.log = log
        process.executableURL = Self.binary
        process.arguments = ["serve", "--config", config.path, "--instance-id", instance]
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Waits until the log shows `text` at least `count` times (all runs share the log).
    func waitForLog(_ text: String, count: Int, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let content = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            if content.components(separatedBy: text).count - 1 >= count { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then the exit status (nil if it did not exit within `timeout`).
    func terminate(timeout: Duration) async throws -> Int32? {
        process.terminate()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(100)) }
        guard !process.isRunning else {
            kill()
            return nil
        }
        return process.terminationStatus
    }
}

@Suite("The service survives crashes", .serialized)
struct ServiceCrashTests {
    @Test("SIGKILL at several points while events stream in: final records stay exact and identical on repeat", arguments: ["exactly_once", "at_least_once"])
    func killAndRestart(guarantee: String) async throws {
        #expect(FileManager.default.isExecutableFile(atPath: ServiceProcess.binary.path), "build pulse first (swift build)")
        let app = TestBroker.uniqueName("crash")
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 4)
        let configuration = try ServiceExactResultsTests.configuration(app: app, input: input, guarantee: guarantee)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(app)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configFile = directory.appendingPathComponent("pulse.yaml")
        try ServiceExactResultsTests.yaml(app: app, input: input, guarantee: guarantee).write(to: configFile, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("serve.log")

        let origin = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 30) * 60_000
        let audience = KnownAudience(count: 6_000, users: 200, origin: origin, seed: 7)
        let producer = try TestBroker.producer()
        // Events stream in over about 12 s while the service is killed and restarted.
        let feeding = Task {
            for (index, message) in audience.messages.enumerated() {
                try producer.produce(KafkaProducerMessage(topic: input, key: message.key, value: message.value), blockIfQueueFull: true)
                if index % 500 == 499 {
                    try await producer.flush()
                    try await Task.sleep(for: .seconds(1))
                }
            }
            try await producer.flush()
        }
        // Kill each run at a different moment after it got its partitions and began.
        for (round, runFor) in [Duration.milliseconds(1_500), .milliseconds(700), .milliseconds(2_500)].enumerated() {
            let service = try ServiceProcess(config: configFile, instance: "c1", log: log)
            let assigned = try await service.waitForLog("stage 1 assigned", count: round + 1, timeout: .seconds(60))
            #expect(assigned, "round \(round): the service got its partitions")
            try await Task.sleep(for: runFor)
            #expect(service.process.isRunning, "round \(round): the service is still running before the kill")
            service.kill()
        }
        try await feeding.value

        let final = try ServiceProcess(config: configFile, instance: "c1", log: log)
        let expected = audience.expected()
        let messages = try await ServiceExactResultsTests.read(configuration.metricsTopic, patience: .seconds(90)) { messages in
            Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count >= expected.count
        }
        let status = try await final.terminate(timeout: .seconds(30))
        #expect(status == 0, "SIGTERM drains and exits 0")

        var byKey: [String: Set<String>] = [:]
        for message in messages where message.valueString.contains("\"final\":true") {
            byKey[message.keyString ?? "", default: []].insert(message.valueString)
        }
        #expect(byKey.count == expected.count)
        for (key, values) in byKey {
            #expect(values.count == 1, "\(key): final records differ between runs: \(values.count) versions")
        }
        let records = try byKey.mapValues { try JSONSerialization.jsonObject(with: Data(($0.first ?? "{}").utf8)) as? [String: Any] ?? [:] }
        for (key, truth) in expected {
            let record = try #require(records[key], "final record for \(key)")
            #expect(record["events"] as? Int == truth.events, "\(key) events: no window double-counted or missing")
            #expect((record["users"] as? [String: Any])?["unique"] as? Int == truth.users.count, "\(key) users")
            #expect(record["by_type"] as? [String: Int] == truth.byType, "\(key) by_type")
        }
        print("service log (\(guarantee)): \(log.path)")
    }
}
