import ArgumentParser
import Foundation
import Kafka

struct Tail: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print metric records from the metrics topic, one line each, as they arrive.")

    @OptionGroup var broker: BrokerOptions
    @Option(help: "The metrics topic.") var topic = "audience.metrics"
    @Option(help: "Only records of this segment (e.g. all, country=DE).") var segment: String?
    @Flag(help: "Only final records.") var finalOnly = false
    @Flag(help: "Start at the beginning of the topic instead of its end.") var fromBeginning = false
    @Flag(help: "Print the raw JSON records.") var json = false

    func run() throws {
        let common = try broker.configuration()
        let partitions = try KafkaAdmin(configuration: common).partitionIDs(of: topic)
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(common: common, groupID: "pulse-tail"))
        try consumer.assign(partitions.map {
            KafkaTopicPartition(topic: topic, partition: $0, offset: fromBeginning ? KafkaTopicPartition.beginning : KafkaTopicPartition.end)
        })
        while true {
            try consumer.poll(maxMessages: 1_000, timeout: .milliseconds(500)) { batch in
                for message in batch {
                    guard let record = try? JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any] else { continue }
                    let name = record["segment"] as? String ?? "?"
                    let isFinal = record["final"] as? Bool ?? false
                    if let segment, name != segment { continue }
                    if finalOnly && !isFinal { continue }
                    // Written unbuffered: a line appears as soon as its record arrives, also in pipes.
                    let line = json ? String(decoding: message.value, as: UTF8.self) : Tail.line(record, segment: name, isFinal: isFinal)
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                }
            }
        }
    }

    static func line(_ record: [String: Any], segment: String, isFinal: Bool) -> String {
        func number(_ section: String, _ key: String) -> String {
            guard let value = (record[section] as? [String: Any])?[key] as? Double else { return "-" }
            return value == value.rounded() ? String(Int(value)) : String(format: "%.3f", value)
        }
        let window = record["window"] as? [String: Any] ?? [:]
        let start = (window["start"] as? String ?? "").dropFirst(11).prefix(8)
        let anomaly = ((record["trend"] as? [String: Any])?["anomaly"] as? Bool ?? false) ? " ANOMALY" : ""
        return "\(isFinal ? "final  " : "update ") \(start) \(window["size"] as? String ?? "") \(segment): events=\(record["events"] as? Int ?? 0)"
            + " users=\(number("users", "unique")) engagement=\(number("engagement", "rate")) conversion=\(number("conversion", "rate"))"
            + " dwell_p50=\(number("dwell_ms", "p50")) bounce=\(number("sessions", "bounce_rate"))\(anomaly)"
    }
}
