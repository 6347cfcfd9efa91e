import AudiencePulse
import Foundation
import Kafka
import Testing

@Suite("Bounded runs (processing.until_end) against the broker", .serialized)
struct BoundedRunTests {
    @Test("pulse serve --until-end reads each partition to its end (one of them empty), closes every window that ended before then with a 1 h idle timeout, and exits 0 with final records equal to an exact computation; a second run reads what arrived since")
    func twoRuns() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: ServiceProcess.binary.path), "build pulse first (swift build)")
        let app = TestBroker.uniqueName("bounded")
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 4)
        // 2,000 s of events ending about half an hour ago.
        let origin = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 60) * 60_000
        let first = KnownAudience(count: 20_000, users: 300, origin: origin, seed: 21, prefix: "a")
        let producer = try TestBroker.producer()
        // On partitions 0-2 (a key always on the same one, so retries meet their
        // originals); partition 3 is empty in the first run.
        for message in first.messages {
            let partition = Int32(message.key.utf8.reduce(0) { $0 + Int($1) } % 3)
            try producer.produce(KafkaProducerMessage(topic: input, partition: partition, key: Array(message.key.utf8), value: Array(message.value.utf8)),
                                 blockIfQueueFull: true)
        }
        try await producer.flush()

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(app)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let configFile = directory.appendingPathComponent("pulse.yaml")
        let yaml = try ServiceExactResultsTests.yaml(app: app, input: input, guarantee: "exactly_once", windows: "[10s]")
        try yaml.write(to: configFile, atomically: true, encoding: .utf8)
        let configuration = try PulseConfiguration.load(yaml: yaml)
        let log = directory.appendingPathComponent("bounded.log")
        // Windows close only at the input's end: no partition is idle for an hour.
        let environment = ["PULSE_TIME__IDLE_TIMEOUT": "1h"]
        let tenSeconds: [(name: String?, size: Int64, advance: Int64)] = [(name: nil, size: 10_000, advance: 10_000)]
        func finals(atLeast expected: Int) async throws -> [KafkaConsumerMessage] {
            try await ServiceExactResultsTests.read(configuration.metricsTopic, patience: .seconds(10)) { messages in
                Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count >= expected
            }
        }

        let firstRun = try ServiceProcess(config: configFile, instance: "b1", log: log, httpPort: ServiceProcess.freePort(), environment: environment,
                                          arguments: ["--until-end"])
        #expect(try await firstRun.exitStatus(within: .seconds(120)) == 0, "the first run exits by itself")
        #expect(firstRun.logCount("; its windows close") == 4, "every partition, the empty one too")
        #expect(firstRun.logCount("bounded run complete") == 1)
        let firstExpected = KnownAudience.expected(first.valid, windows: tenSeconds)
        ServiceExactResultsTests.expectFinals(try await finals(atLeast: firstExpected.count), equal: firstExpected)

        // Arriving after the first run, stamped after its end: read by the second run,
        // on all four partitions. Their windows have ended (by the clock, less the 5 s
        // out-of-orderness) before the second run starts.
        let ended = Int64(Date().timeIntervalSince1970 * 1000)
        let second = KnownAudience(count: 3_000, users: 100, origin: ended + 2_000, seed: 22, spacing: 5, prefix: "b")
        for message in second.messages {
            try producer.produce(KafkaProducerMessage(topic: input, key: message.key, value: message.value), blockIfQueueFull: true)
        }
        try await producer.flush()
        let newest = second.valid.map(\.time).max() ?? ended
        let waitUntil = (newest / 10_000 + 1) * 10_000 + 6_000
        try await Task.sleep(for: .milliseconds(max(0, waitUntil - Int64(Date().timeIntervalSince1970 * 1000))))
        let secondRun = try ServiceProcess(config: configFile, instance: "b1", log: log, httpPort: ServiceProcess.freePort(), environment: environment,
                                           arguments: ["--until-end"])
        #expect(try await secondRun.exitStatus(within: .seconds(120)) == 0, "the second run exits by itself")
        #expect(secondRun.logCount("bounded run complete") == 2)
        let bothExpected = KnownAudience.expected(first.valid + second.valid, windows: tenSeconds)
        #expect(bothExpected.count > firstExpected.count)
        ServiceExactResultsTests.expectFinals(try await finals(atLeast: bothExpected.count), equal: bothExpected)
    }
}
