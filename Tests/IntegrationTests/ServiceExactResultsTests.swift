import AudiencePulse
import Foundation
import Kafka
import Logging
import Testing

/// A known audience with duplicates, malformed messages and out-of-order events, and the
/// exact metrics it must produce, computed here independently of the service.
struct KnownAudience {
    struct Event {
        var id: String
        var user: String
        var type: String
        var time: Int64
        var country: String
        var dwell: Int64?
        var valueCents: Int64?
    }

    var messages: [(key: String, value: String)] = []
    var valid: [Event] = []
    var duplicates = 0
    var malformed = 0

    /// `count` messages, one every `spacing` ms of event time from `origin`; event ids and
    /// users start with `prefix` (audiences with different prefixes share none).
    init(count: Int, users: Int, origin: Int64, seed: UInt64, spacing: Int64 = 100, prefix: String = "") {
        var random = seed
        func next() -> UInt64 {
            random = random &* 6364136223846793005 &+ 1442695040888963407
            return random >> 33
        }
        let types = ["page_view", "page_view", "click", "like", "share", "comment", "conversion"]
        let countries = ["DE", "US", "FR"]
        for index in 0..<count {
            if index % 97 == 5 {
                messages.append((key: "broken", value: index % 2 == 0 ? "{\"event_id\": \"x\"" : "not json at all"))
                malformed += 1
                continue
            }
            if index % 53 == 7, let previous = messages.last, previous.key != "broken" {
                messages.append(previous)  // a producer retry: same key, same bytes
                duplicates += 1
                continue
            }
            let userNumber = Int(next() % UInt64(users))
            let user = "\(prefix)u\(userNumber)"
            // Mostly increasing time with ±2 s jitter (within the 5 s out-of-orderness bound).
            let time = origin + Int64(index) * spacing + Int64(next() % 4_000) - 2_000
            let type = types[Int(next() % UInt64(types.count))]
            let country = countries[userNumber % countries.count]
            let dwell: Int64? = type == "page_view" ? Int64(next() % 60_000) : nil
            let cents: Int64? = type == "conversion" ? Int64(next() % 10_000) : nil
            var json = #"{"event_id":"\#(prefix)e\#(index)","type":"\#(type)","user_id":"\#(user)","timestamp":\#(time),"attributes":{"country":"\#(country)"}"#
            if let dwell { json += #","dwell_ms":\#(dwell)"# }
            if let cents { json += #","value":\#(cents / 100).\#(String(format: "%02d", cents % 100))"# }
            json += "}"
            messages.append((user, json))
            valid.append(Event(id: "\(prefix)e\(index)", user: user, type: type, time: time, country: country, dwell: dwell, valueCents: cents))
        }
    }

    struct Expected: Equatable {
        var events = 0
        var users = Set<String>()
        var byType: [String: Int] = [:]
        var engagement = 0
        var revenueCents: Int64 = 0
        var dwellCount = 0
    }

    /// Exact metrics per (segment, window start) for `all` and `country=…`, 1-minute windows.
    func expected() -> [String: Expected] { Self.expected(valid) }

    static func expected(_ events: [Event]) -> [String: Expected] {
        expected(events, windows: [(name: nil, size: 60_000, advance: 60_000)])
    }

    /// Exact metrics per (segment, window, start) for `all` and `country=…`: every window of
    /// each size (ms) that contains an event counts it. Keys are `segment|start`, or
    /// `segment|name|start` for a named window (the records' keys with several sizes).
    static func expected(_ events: [Event], windows: [(name: String?, size: Int64, advance: Int64)]) -> [String: Expected] {
        var result: [String: Expected] = [:]
        for event in events {
            for window in windows {
                var start = event.time - ((event.time % window.advance) + window.advance) % window.advance
                while start > event.time - window.size {
                    for segment in ["all", "country=\(event.country)"] {
                        let key = window.name.map { "\(segment)|\($0)|\(start)" } ?? "\(segment)|\(start)"
                        var entry = result[key] ?? Expected()
                        entry.events += 1
                        entry.users.insert(event.user)
                        entry.byType[event.type, default: 0] += 1
                        if ["like", "share", "comment"].contains(event.type) { entry.engagement += 1 }
                        entry.revenueCents += event.valueCents ?? 0
                        if event.dwell != nil { entry.dwellCount += 1 }
                        result[key] = entry
                    }
                    start -= window.advance
                }
            }
        }
        return result
    }
}

@Suite("The processing service against the broker", .serialized)
struct ServiceExactResultsTests {
    static func configuration(app: String, input: String, guarantee: String) throws -> PulseConfiguration {
        try PulseConfiguration.load(yaml: yaml(app: app, input: input, guarantee: guarantee))
    }

    /// A small, fast configuration (1-minute windows, `all` and `country`), listening for
    /// HTTP on `httpPort` (0: any free port).
    static func yaml(app: String, input: String, guarantee: String, httpPort: Int = 0, windows: String = "[1m]") throws -> String {
        """
            app: \(app)
            kafka:
              bootstrap.servers: \(try TestBroker.bootstrapServers())
              session.timeout.ms: "6000"
              heartbeat.interval.ms: "1000"
              max.poll.interval.ms: "10000"
            topics:
              input: \(input)
              metrics: \(app).metrics
              dead_letter: \(app).dlq
              partials_partitions: 4
            segments:
              dimensions: [[], [country]]
            windows: \(windows)
            time:
              idle_timeout: 2s
            processing:
              guarantee: \(guarantee)
              update_interval: 500ms
              checkpoint_interval: 1s
            http:
              listen: 127.0.0.1:\(httpPort)
            log:
              format: text
            """
    }

    /// The final records among `messages` equal `expected` (per segment and window start);
    /// a record repeated must be identical.
    static func expectFinals(_ messages: [KafkaConsumerMessage], equal expected: [String: KnownAudience.Expected]) {
        var records: [String: [String: Any]] = [:]
        for message in messages where message.valueString.contains("\"final\":true") {
            guard let key = message.keyString,
                  let json = try? JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any] else {
                Issue.record("unreadable final record")
                continue
            }
            if let earlier = records[key] {
                // Replays must be byte-identical; here, with nothing crashing, there are none.
                #expect(NSDictionary(dictionary: earlier).isEqual(to: json), "\(key) differs on repeat")
            }
            records[key] = json
        }
        #expect(records.count == expected.count)
        for (key, truth) in expected {
            guard let record = records[key] else {
                Issue.record("no final record for \(key)")
                continue
            }
            #expect(record["events"] as? Int == truth.events, "\(key) events")
            #expect((record["users"] as? [String: Any])?["unique"] as? Int == truth.users.count, "\(key) users")
            #expect(record["by_type"] as? [String: Int] == truth.byType, "\(key) by_type")
            #expect((record["engagement"] as? [String: Any])?["count"] as? Int == truth.engagement, "\(key) engagement")
            let revenue = (record["conversion"] as? [String: Any])?["revenue"] as? Double ?? -1
            #expect(Int64((revenue * 100).rounded()) == truth.revenueCents, "\(key) revenue")
            #expect((record["dwell_ms"] as? [String: Any])?["count"] as? Int == truth.dwellCount, "\(key) dwell count")
        }
    }

    /// Reads every record of a topic from the beginning until `done` says enough (or
    /// `patience` passes without new records).
    static func read(_ topic: String, patience: Duration = .seconds(60), until done: ([KafkaConsumerMessage]) -> Bool) async throws -> [KafkaConsumerMessage] {
        let consumer = try TestBroker.consumer(group: TestBroker.uniqueName("reader"))
        let admin = try KafkaAdmin(configuration: TestBroker.common())
        let partitions = try await admin.describeTopic(topic).partitions
        try consumer.assign(partitions.map { KafkaTopicPartition(topic: topic, partition: $0, offset: KafkaTopicPartition.beginning) })
        var messages: [KafkaConsumerMessage] = []
        var lastProgress = ContinuousClock.now
        while !done(messages) && ContinuousClock.now - lastProgress < patience {
            let batch = try await consumer.poll(timeout: .milliseconds(200))
            if !batch.messages.isEmpty { lastProgress = .now }
            messages += batch.messages
        }
        return messages
    }

    /// What one run of the service on a pre-loaded audience gave.
    struct Run {
        let input: String
        let configuration: PulseConfiguration
        let counters: [String: Int]
        let finals: [KafkaConsumerMessage]
    }

    /// Pre-loads `audience` into a new 4-partition topic and runs the service (`windows`)
    /// on it until `expected` final records arrived; stops it.
    static func run(_ audience: KnownAudience, app: String, guarantee: String, windows: String = "[1m]", expected: Int) async throws -> Run {
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 4)
        let producer = try TestBroker.producer()
        for message in audience.messages {
            try producer.produce(KafkaProducerMessage(topic: input, key: message.key, value: message.value), blockIfQueueFull: true)
        }
        try await producer.flush()

        let configuration = try PulseConfiguration.load(yaml: yaml(app: app, input: input, guarantee: guarantee, windows: windows))
        var logger = Logger(label: "test.\(app)")
        logger.logLevel = .warning
        let service = PulseService(configuration: configuration, instanceID: "i1", logger: logger)
        try service.start()
        let finals = try await read(configuration.metricsTopic) { messages in
            Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count >= expected
        }
        #expect(service.stop(timeout: .seconds(20)))
        #expect(service.failureMessages.isEmpty)
        return Run(input: input, configuration: configuration, counters: service.counters, finals: finals)
    }

    /// The start of the minute 30 minutes ago (events from there on are not late).
    static var origin: Int64 { (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 30) * 60_000 }

    @Test("final records equal an exact computation; invalid events reach the dead-letter topic", arguments: ["exactly_once", "at_least_once"])
    func exactResults(guarantee: String) async throws {
        let audience = KnownAudience(count: 3_000, users: 150, origin: Self.origin, seed: 42)
        let expected = audience.expected()
        let run = try await Self.run(audience, app: TestBroker.uniqueName("pulse"), guarantee: guarantee, expected: expected.count)
        Self.expectFinals(run.finals, equal: expected)

        let counters = run.counters
        #expect(counters["valid"] == audience.valid.count)
        #expect(counters["invalid"] == audience.malformed)
        #expect(counters["duplicates"] == audience.duplicates)
        #expect(counters["late"] == 0)
        #expect((counters["valid"] ?? 0) + (counters["invalid"] ?? 0) + (counters["duplicates"] ?? 0) == audience.messages.count)

        let deadLetters = try await Self.read(run.configuration.deadLetterTopic, patience: .seconds(10)) { $0.count >= audience.malformed }
        #expect(deadLetters.count == audience.malformed)
        #expect(Set(deadLetters.compactMap { $0.header("pulse.reason") }) == ["malformed_json"])
        #expect(deadLetters.allSatisfy { $0.header("pulse.source.topic") == run.input && $0.header("pulse.source.offset") != nil })
    }

    @Test("1-minute windows sharing the slices of 3m/1m hopping windows: the final records of both sizes equal an exact computation")
    func sharedSlices() async throws {
        let audience = KnownAudience(count: 3_000, users: 150, origin: Self.origin, seed: 43)
        let expected = KnownAudience.expected(audience.valid, windows: [(name: "1m", size: 60_000, advance: 60_000), (name: "3m/1m", size: 180_000, advance: 60_000)])
        #expect(expected.keys.contains { $0.contains("|3m/1m|") } && expected.keys.contains { $0.contains("|1m|") })
        let run = try await Self.run(audience, app: TestBroker.uniqueName("slices"), guarantee: "exactly_once", windows: "[1m, 3m/1m]", expected: expected.count)
        Self.expectFinals(run.finals, equal: expected)
        #expect(run.counters["late"] == 0)
    }

    @Test("Watermark alignment: a partition far ahead in event time pauses until the slowest catches up; final records stay exact")
    func watermarkAlignment() async throws {
        let app = TestBroker.uniqueName("align")
        let input = "\(app).events"
        try await TestBroker.createTopic(input, partitions: 2)
        // The same 30 minutes of event time: sparse on partition 0 (two of the stage's
        // batches), dense on partition 1 (eight), so partition 0 runs far ahead and is
        // paused with records left to read.
        let origin = (Int64(Date().timeIntervalSince1970 * 1000) / 60_000 - 40) * 60_000
        let sparse = KnownAudience(count: 8_000, users: 120, origin: origin, seed: 7, spacing: 225, prefix: "s")
        let dense = KnownAudience(count: 40_000, users: 300, origin: origin, seed: 8, spacing: 45, prefix: "d")
        let producer = try TestBroker.producer()
        for (partition, audience) in [(Int32(0), sparse), (1, dense)] {
            for message in audience.messages {
                try producer.produce(KafkaProducerMessage(topic: input, partition: partition, key: Array(message.key.utf8), value: Array(message.value.utf8)), blockIfQueueFull: true)
            }
        }
        try await producer.flush()

        let configuration = try PulseConfiguration.load(yaml: Self.yaml(app: app, input: input, guarantee: "exactly_once"),
                                                        environment: ["PULSE_TIME__MAX_WATERMARK_DRIFT": "10s"])
        var logger = Logger(label: "test.\(app)")
        logger.logLevel = .warning
        let service = PulseService(configuration: configuration, instanceID: "i1", logger: logger)
        try service.start()
        let expected = KnownAudience.expected(sparse.valid + dense.valid)
        let finals = try await Self.read(configuration.metricsTopic) { messages in
            Set(messages.filter { $0.valueString.contains("\"final\":true") }.compactMap(\.keyString)).count >= expected.count
        }
        let counters = service.counters
        let metricsText = service.prometheusText()
        #expect(service.stop(timeout: .seconds(20)))
        #expect(service.failureMessages.isEmpty)

        #expect(counters["alignment_pauses", default: 0] > 0, "partition 0 was paused at least once: \(counters)")
        #expect(metricsText.contains("pulse_watermark_alignment_pauses_total \(counters["alignment_pauses", default: -1])"))
        Self.expectFinals(finals, equal: expected)
        #expect(counters["valid"] == sparse.valid.count + dense.valid.count)
        #expect(counters["duplicates"] == sparse.duplicates + dense.duplicates)
        #expect(counters["late"] == 0)
        #expect(counters["consumed"] == sparse.messages.count + dense.messages.count, "every record read once")
    }
}
