import ArgumentParser
import AudiencePulse
import Foundation
import Kafka
import Logging
import PulseServer

struct Collect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run only the HTTP collector (POST /v1/events → Kafka), without the processing pipeline.",
        discussion: """
            Same configuration file as pulse serve (collector.*, http.listen, kafka); see docs/collector.md. \
            Scale it separately from the pipeline, e.g. at the edge. /healthz, /readyz and /metrics answer too.
            Exit codes: 0 stopped by a signal, 1 runtime failure, 2 invalid configuration.
            """)

    @Option(name: .shortAndLong, help: "The YAML configuration file.") var config: String

    func run() throws {
        let configuration = try ConfigurationFile.load(config)
        let logger = Logging.bootstrapped(configuration)
        try ServiceMain.run(logger: logger, banner: "Audience Pulse collector starting", metadata: [
            "http": "\(configuration.httpHost):\(configuration.httpPort)", "topic": "\(configuration.collector.topic)",
        ]) {
            try await PulseServer.runCollector(configuration: configuration, logger: logger)
        }
    }
}
