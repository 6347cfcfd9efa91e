import AudienceMetrics
@testable import AudiencePulse
import Kafka
import Foundation
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let minimal = "kafka:\n  bootstrap.servers: 127.0.0.1:19092\n"

    @Test("the example file loads with every section as written")
    func example() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("pulse.example.yaml"), encoding: .utf8)
        let configuration = try PulseConfiguration.load(yaml: text)
        #expect(configuration.app == "audience-pulse")
        #expect(configuration.aggregation.windows.map(\.name) == ["1m", "10m/1m"])
        #expect(configuration.aggregation.segments.dimensions == [[], ["country"], ["device"], ["country", "device"], ["source"]])
        #expect(configuration.aggregation.segments.rules.map(\.name) == ["pro_mobile", "engaged_dach"])
        #expect(configuration.guarantee == .exactlyOnce)
        #expect(configuration.partialsTopic == "audience-pulse.partials")
        #expect(configuration.kafkaConfiguration.bootstrapServers == "127.0.0.1:19092")
        #expect(configuration.httpPort == 8080)
    }

    @Test("defaults apply to what the file leaves out")
    func defaults() throws {
        let configuration = try PulseConfiguration.load(yaml: Self.minimal)
        #expect(configuration.inputTopic == "audience.events")
        #expect(configuration.aggregation.maxOutOfOrderness == 5_000)
        #expect(configuration.aggregation.sessions.inactivityGap == 1_800_000)
        #expect(configuration.updateInterval == 1_000)
        #expect(configuration.stageOneWorkers == 1)
        #expect(configuration.assignment == .group)
        #expect(configuration.mapping == .contract)
        #expect(configuration.aggregation.metrics == .all)
        let lean = try PulseConfiguration.load(yaml: Self.minimal + "metrics:\n  include: [top_content, sessions]\n")
        #expect(lean.aggregation.metrics == [.topContent, .sessions])
        #expect(lean.summary.contains("optional metrics [sessions, top_content], "))
        #expect(!configuration.summary.contains("optional metrics"))
        #expect(try PulseConfiguration.load(yaml: Self.minimal + "metrics:\n  include: []\n").aggregation.metrics.isEmpty)
    }

    @Test("a static assignment deals every partition to exactly one worker slot and one stage 2, and names each slot's producer once")
    func staticShares() throws {
        for count in 1...4 {
            for workers in 1...3 {
                for partitions in 1...13 {
                    var stageOne: [Int32] = []
                    var stageTwo: [Int32] = []
                    var producers = Set<String>()
                    for index in 0..<count {
                        let yaml = Self.minimal + "processing:\n  assignment: static\n  instance_count: \(count)\n  instance_index: \(index)\n  stage1_workers: \(workers)\n"
                        let assignment = try PulseConfiguration.load(yaml: yaml).assignment
                        #expect(assignment == .fixed(index: index, count: count))
                        for worker in 0..<workers {
                            let share = try #require(assignment.stageOnePartitions(worker: worker, workers: workers, of: partitions))
                            #expect(share.allSatisfy { Int($0) % (count * workers) == index * workers + worker })
                            stageOne += share
                            producers.insert(assignment.stageOneTransactionalID(app: "a", worker: worker, workers: workers) ?? "")
                        }
                        stageTwo += try #require(assignment.stageTwoPartitions(of: partitions))
                        producers.insert(assignment.stageTwoTransactionalID(app: "a") ?? "")
                    }
                    #expect(stageOne.sorted() == (0..<Int32(partitions)).map { $0 }, "\(count) instances × \(workers) workers, \(partitions) partitions")
                    #expect(stageTwo.sorted() == (0..<Int32(partitions)).map { $0 })
                    #expect(producers.count == count * workers + count && !producers.contains(""), "one transactional id per slot")
                }
            }
        }
        #expect(PartitionAssignment.group.stageOneTransactionalID(app: "a", worker: 0, workers: 1) == nil, "groups keep instance-named producers")
        #expect(PartitionAssignment.group.stageOnePartitions(worker: 0, workers: 1, of: 4) == nil, "groups decide the partitions")
    }

    @Test("each misconfiguration names its key and the problem", arguments: [
        ("", "kafka.bootstrap.servers", "required"),
        ("kafka: [a]\n", "kafka", "expected a map"),
        (minimal + "time:\n  max_out_of_orderness: 5 seconds\n", "time.max_out_of_orderness", "not a duration"),
        (minimal + "window: [1m]\n", "window", "did you mean windows?"),
        (minimal + "processing:\n  guarantee: sometimes\n", "processing.guarantee", "not one of"),
        (minimal + "segments:\n  rules:\n    bad: plan = \"pro\"\n", "segments.rules.bad", "expected ==, != or in"),
        (minimal + "windows: [1m/2m]\n", "windows[0]", "not a window"),
        (minimal + "windows: [1m, 1m]\n", "windows", "listed twice"),
        (minimal + "metrics:\n  engagement_types: [like, poke]\n", "metrics.engagement_types", "'poke' is not a known event type"),
        (minimal + "metrics:\n  include: [sessions, sesions]\n", "metrics.include[1]", "'sesions' is not an optional metric family (retention, conversion, dwell_quantiles, sessions, top_content, trend)"),
        (minimal + "topics:\n  partials_partitions: 0\n", "topics.partials_partitions", "not an integer in 1…10000"),
        (minimal + "processing:\n  stage1_workers: 0\n", "processing.stage1_workers", "not an integer in 1…64"),
        (minimal + "processing:\n  assignment: manual\n", "processing.assignment", "not one of group, static"),
        (minimal + "processing:\n  assignment: static\n  instance_count: 2\n  instance_index: 2\n", "processing.instance_index", "not below processing.instance_count (2)"),
        (minimal + "app: \"my app\"\n", "app", "letters, digits"),
        (minimal + "http:\n  listen: localhost\n", "http.listen", "not host:port"),
        (minimal + "input:\n  mapping: csv\n", "input.mapping", "not one of contract, segment"),
        (minimal + "input:\n  limits:\n    max_depht: 4\n", "input.limits.max_depht", "did you mean input.limits.max_depth?"),
        ("kafka:\n  bootstrap.servers: x\nkafka:\n  client.id: y\n", "configuration", "duplicated key(s): 'kafka'"),
        ("- just\n- a list\n", "configuration", "top level must be a map"),
        ("key: [unclosed\n", "configuration", "not valid YAML"),
        (minimal + "http:\n  listen: 0.0.0.0:8080\n", "api.token", "not a loopback address"),
        (minimal + "api:\n  token: short\n", "api.token", "at least 16 characters"),
    ])
    func misconfiguration(yaml: String, key: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try PulseConfiguration.load(yaml: yaml) }
        #expect(error?.key == key)
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
    }

    @Test("environment variables override the file, kafka keys included")
    func environment() throws {
        let configuration = try PulseConfiguration.load(yaml: Self.minimal + "windows: [1m]\n", environment: [
            "PULSE_PROCESSING__GUARANTEE": "at_least_once",
            "PULSE_WINDOWS": "[1m, 1h]",
            "PULSE_KAFKA__BOOTSTRAP_SERVERS": "kafka-1:9092",
            "PULSE_KAFKA__SASL_USERNAME": "pulse",
            "PULSE_TIME__ALLOWED_LATENESS": "30s",
            "HOME": "/root",
        ])
        #expect(configuration.guarantee == .atLeastOnce)
        #expect(configuration.aggregation.windows.map(\.name) == ["1m", "1h"])
        #expect(configuration.kafka["bootstrap.servers"] == "kafka-1:9092")
        #expect(configuration.kafka["sasl.username"] == "pulse")
        #expect(configuration.aggregation.allowedLateness == 30_000)
        let error = #expect(throws: ConfigurationError.self) {
            try PulseConfiguration.load(yaml: Self.minimal, environment: ["PULSE_TIME__IDLE_TIMEOUT": "soon"])
        }
        #expect(error?.key == "time.idle_timeout")
    }

    @Test("a partition without a checkpoint or committed offset starts where auto.offset.reset says, given to the client directly")
    func resetOffsets() {
        #expect(CheckpointStore.resetOffset(nil) == KafkaTopicPartition.beginning, "the client's default: earliest")
        #expect(CheckpointStore.resetOffset("earliest") == KafkaTopicPartition.beginning)
        #expect(CheckpointStore.resetOffset("smallest") == KafkaTopicPartition.beginning)
        #expect(CheckpointStore.resetOffset("latest") == KafkaTopicPartition.end)
        #expect(CheckpointStore.resetOffset("largest") == KafkaTopicPartition.end)
        #expect(CheckpointStore.resetOffset("error") == KafkaTopicPartition.stored, "left to the client, which reports it")
    }

    @Test("docs/configuration.md lists exactly the keys the code reads")
    func referenceInDocs() throws {
        let docs = try String(contentsOf: Self.root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        #expect(docs.contains(PulseConfiguration.referenceMarkdown()), "regenerate with: pulse config reference")
    }
}
