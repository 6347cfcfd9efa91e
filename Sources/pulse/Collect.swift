import ArgumentParser
import AudiencePulse
import Foundation
import Kafka
import Logging
import PulseServer
import Synchronization

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
        do {
            try KafkaLibrary.checkVersion()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        logger.info("Audience Pulse collector starting", metadata: [
            "version": "\(PulseVersion.current)", "librdkafka": "\(KafkaLibrary.version)",
            "http": "\(configuration.httpHost):\(configuration.httpPort)", "topic": "\(configuration.collector.topic)",
        ])
        let failed = Atomic<Bool>(false)
        let finished = DispatchSemaphore(value: 0)
        Task {
            do {
                try await PulseServer.runCollector(configuration: configuration, logger: logger)
            } catch {
                logger.critical("stopped after a failure: \(error)")
                failed.store(true, ordering: .relaxed)
            }
            finished.signal()
        }
        finished.wait()
        if failed.load(ordering: .relaxed) { throw ExitCode(1) }
    }
}
