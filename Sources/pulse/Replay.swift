import ArgumentParser
import AudienceMetrics
import AudiencePulse
import Foundation
import Kafka

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a file of events through the pipeline (for backfills): final metric records out.",
        discussion: """
            Reads one event per line (NDJSON; '-' for standard input) in the order given, with the configuration's \
            mapping, limits, segments, windows and metrics — the same code as the service, in one process, so the \
            final records equal those the service produces for the same events. Records go to standard output, or \
            with --produce to the configured metrics topic (keyed segment|window_start like the service's; a replay \
            over events the service already processed writes identical records). Rejected lines can be kept with \
            --rejects (line number, reason, the line). A summary goes to standard error.
            Exit codes: 0 done, 1 cannot read or produce, 2 invalid configuration.
            """)

    @Argument(help: "The NDJSON file of events ('-' for standard input).") var file: String
    @Option(name: .shortAndLong, help: "The YAML configuration file (as for pulse serve).") var config: String
    @Flag(help: "Produce the records to the configured metrics topic instead of printing them.") var produce = false
    @Option(help: "Write rejected lines here, as: line number, tab, reason, tab, line.") var rejects: String?

    func run() throws {
        let configuration = try ConfigurationFile.load(config)
        guard let input = file == "-" ? FileHandle.standardInput : FileHandle(forReadingAtPath: file) else {
            FileHandle.standardError.write(Data("replay: cannot open \(file)\n".utf8))
            throw ExitCode(1)
        }
        let rejectFile = try rejects.map { path -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
                throw ValidationError("cannot create \(path)")
            }
            return handle
        }
        let output = try RecordOutput(configuration: configuration, produce: produce)
        let pipeline = LocalPipeline(config: configuration.aggregation, trend: configuration.trend, mapping: configuration.mapping, limits: configuration.limits)
        let clock = ContinuousClock()
        let began = clock.now
        var lines = 0
        var pending: [UInt8] = []
        var rejected: [UInt8] = []
        func consume(_ line: ArraySlice<UInt8>) throws {
            lines += 1
            guard !line.isEmpty else { return }
            let reason = line.withUnsafeBytes { pipeline.feed($0) }
            if let reason, rejectFile != nil {
                rejected.append(contentsOf: "\(lines)\t\(reason.code)\t".utf8)
                rejected.append(contentsOf: line)
                rejected.append(0x0A)
            }
        }
        while true {
            let chunk = input.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            pending.append(contentsOf: chunk)
            var lineStart = pending.startIndex
            while let newline = pending[lineStart...].firstIndex(of: 0x0A) {
                try consume(pending[lineStart..<newline])
                lineStart = newline + 1
            }
            pending.removeSubrange(..<lineStart)
            try output.write(pipeline.takeFinals())
            rejectFile?.write(Data(rejected))
            rejected.removeAll(keepingCapacity: true)
        }
        if !pending.isEmpty { try consume(pending[...]) }
        try output.write(pipeline.finish())
        rejectFile?.write(Data(rejected))
        try rejectFile?.close()
        try output.close()
        let counts = pipeline.counts
        let invalid = counts.invalid.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        FileHandle.standardError.write(Data((
            "replay: \(lines) lines in \(String(format3: (clock.now - began).secondsDouble)) s: valid \(counts.valid), duplicates \(counts.duplicates), "
            + "late \(counts.late), invalid \(counts.invalidTotal)\(invalid.isEmpty ? "" : " (\(invalid))"); \(output.written) final records "
            + (produce ? "produced to \(configuration.metricsTopic)" : "written") + "\n").utf8))
    }

    /// Final records to standard output or to the metrics topic.
    final class RecordOutput {
        private let producer: KafkaProducer?
        private let topic: KafkaProducerTopic?
        private let withWindowName: Bool
        private(set) var written = 0

        init(configuration: PulseConfiguration, produce: Bool) throws {
            withWindowName = configuration.aggregation.windows.count > 1
            if produce {
                let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(common: configuration.kafkaConfiguration))
                self.producer = producer
                topic = try producer.topic(configuration.metricsTopic)
            } else {
                producer = nil
                topic = nil
            }
        }

        func write(_ records: [MetricRecord]) throws {
            guard !records.isEmpty else { return }
            written += records.count
            guard let producer, let topic else {
                FileHandle.standardOutput.write(Data(records.map { $0.json + "\n" }.joined().utf8))
                return
            }
            for record in records {
                try Array(record.key(includeWindowName: withWindowName).utf8).withUnsafeBytes { key in
                    try record.jsonBytes.withUnsafeBytes { value in
                        try producer.produce(to: topic, key: key, value: value, timestamp: record.end, blockIfQueueFull: true)
                    }
                }
            }
        }

        func close() throws {
            guard let producer else { return }
            try producer.flush(timeout: .seconds(60))
            if producer.unhandledDeliveryFailures > 0, let error = producer.lastUnhandledDeliveryError {
                FileHandle.standardError.write(Data("replay: \(producer.unhandledDeliveryFailures) records were not delivered: \(error)\n".utf8))
                throw ExitCode(1)
            }
            producer.close(timeout: .seconds(5))
        }
    }
}
