import AudienceMetrics
import AudiencePulse
import Foundation
import Kafka
import Logging
import Testing

@Suite("The service under hostile input", .serialized)
struct ServiceHostileInputTests {
    @Test("binary garbage, a 900 KB message, deep nesting and invalid UTF-8 never stop processing")
    func hostileStream() async throws {
        let app = TestBroker.uniqueName("hostile")
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 2)
        let origin = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 30) * 60_000
        var random = SplitMix64(seed: 3)
        var hostile: [[UInt8]] = []
        for _ in 0..<200 { hostile.append((0..<Int(random.next() % 512 + 1)).map { _ in UInt8(truncatingIfNeeded: random.next()) }) }
        hostile.append(Array(("{\"event_id\":\"big\",\"pad\":\"" + String(repeating: "x", count: 900_000) + "\"}").utf8))
        hostile.append(Array((String(repeating: "{\"a\":", count: 10_000) + "1" + String(repeating: "}", count: 10_000)).utf8))
        hostile.append(Array(String(repeating: "[", count: 100_000).utf8))
        hostile.append([0x7b, 0x22, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])
        hostile.append([])
        let producer = try TestBroker.producer()
        var valid = 0
        for index in 0..<1_000 {
            let json = #"{"event_id":"v\#(index)","type":"click","user_id":"u\#(index % 50)","timestamp":\#(origin + Int64(index) * 50)}"#
            try producer.produce(KafkaProducerMessage(topic: input, key: "u\(index % 50)", value: json), blockIfQueueFull: true)
            valid += 1
            if index % 4 == 0, !hostile.isEmpty {
                try producer.produce(KafkaProducerMessage(topic: input, key: Array("junk".utf8), value: hostile.removeLast()), blockIfQueueFull: true)
            }
        }
        for message in hostile { try producer.produce(KafkaProducerMessage(topic: input, key: Array("junk".utf8), value: message), blockIfQueueFull: true) }
        try await producer.flush()
        let invalid = 205

        let configuration = try ServiceExactResultsTests.configuration(app: app, input: input, guarantee: "exactly_once")
        var logger = Logger(label: "test.\(app)")
        logger.logLevel = .critical
        let service = PulseService(configuration: configuration, instanceID: "h1", logger: logger)
        try service.start()
        var counters = service.counters
        for _ in 0..<600 where (counters["valid"] ?? 0) + (counters["invalid"] ?? 0) < valid + invalid {
            try await Task.sleep(for: .milliseconds(100))
            counters = service.counters
        }
        #expect(service.stop(timeout: .seconds(20)))
        #expect(service.failureMessages.isEmpty)
        #expect(counters["valid"] == valid)
        #expect(counters["invalid"] == invalid)
        let deadLetters = try await ServiceExactResultsTests.read(configuration.deadLetterTopic, patience: .seconds(10)) { $0.count >= invalid }
        #expect(deadLetters.count == invalid)
        let reasons = Set(deadLetters.compactMap { $0.header("pulse.reason") })
        #expect(reasons.isSuperset(of: ["malformed_json", "too_large", "too_deep"]), "\(reasons)")
        #expect(deadLetters.contains { $0.value.count == 900_000 + 27 }, "the oversized message is dead-lettered unchanged")
    }
}
