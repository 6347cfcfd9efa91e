import ArgumentParser
import AudiencePulse
import Foundation
import Kafka
import Logging
import PulseServer
import Synchronization

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the processing service: events in, per-segment metrics out, exactly once.",
        discussion: """
            Configuration: a YAML file (see pulse.example.yaml, docs/configuration.md) plus PULSE_… environment overrides.
            HTTP (http.listen): /healthz, /readyz, /metrics (Prometheus).
            SIGTERM or SIGINT drains: the current transactions are committed, the consumer groups are left, and the process exits 0 (1 if a stage failed or draining took longer than processing.shutdown_timeout; after a stage failure the others get the same time).
            --until-end (processing.until_end): a bounded run, for backfills and catch-up jobs: each input partition is read until the consumer reaches its end and then counts as idle at once (its watermark moves to the clock, so every window that ended before that closes), and the process exits 0 once those final records are committed.
            Exit codes: 0 stopped by a signal or at the end of a bounded run, 1 runtime failure, 2 invalid configuration.
            """)

    @Option(name: .shortAndLong, help: "The YAML configuration file.") var config: String
    @Option(help: "Names this process's transactional producers; reuse it when restarting the same instance (default: $PULSE_INSTANCE_ID or the host name).")
    var instanceID: String?
    @Flag(help: "A bounded run: read each input partition to its end, close every window that ended before then, commit their final records and exit 0 (sets processing.until_end).")
    var untilEnd = false

    func run() throws {
        var loaded = try ConfigurationFile.load(config)
        if untilEnd { loaded.untilEnd = true }
        let configuration = loaded
        let logger = Logging.bootstrapped(configuration)
        let instance = instanceID ?? ProcessInfo.processInfo.environment["PULSE_INSTANCE_ID"] ?? ProcessInfo.processInfo.hostName
        try ServiceMain.run(logger: logger, banner: "Audience Pulse starting", metadata: [
            "instance": "\(instance)", "http": "\(configuration.httpHost):\(configuration.httpPort)", "configuration": "\(configuration.summary)",
        ]) {
            try await PulseServer.run(configuration: configuration, instanceID: instance, logger: logger)
        }
        logger.info("Audience Pulse stopped")
    }
}

enum Logging {
    /// Sets up swift-log as configured (JSON or text lines on standard error) once.
    static func bootstrapped(_ configuration: PulseConfiguration) -> Logger {
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        bootstrap(level: level, json: configuration.logFormat == "json")
        var logger = Logger(label: "audience-pulse")
        logger.logLevel = level
        return logger
    }

    /// Sets up swift-log once: lines from `level` up on standard error, as JSON or text.
    static func bootstrap(level: Logger.Level, json: Bool) {
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// What `serve` and `collect` share: the librdkafka version guard, the start-up banner,
/// and running the service on Swift concurrency while the main thread only waits.
/// Exit codes: 1 for a runtime failure, 2 for a missing input topic (configuration).
enum ServiceMain {
    static func run(logger: Logger, banner: String, metadata: Logger.Metadata, _ body: @escaping @Sendable () async throws -> Void) throws {
        do {
            try KafkaLibrary.checkVersion()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        logger.info("\(banner)", metadata: metadata.merging(["version": "\(PulseVersion.current)", "librdkafka": "\(KafkaLibrary.version)"]) { $1 })
        let failed = Atomic<Int32>(0)
        let finished = DispatchSemaphore(value: 0)
        Task {
            do {
                try await body()
            } catch let error as TopicSetup.MissingInput {
                logger.critical("configuration error at topics.input: \(error)")
                failed.store(2, ordering: .relaxed)
            } catch {
                logger.critical("stopped after a failure: \(error)")
                failed.store(1, ordering: .relaxed)
            }
            finished.signal()
        }
        finished.wait()
        let status = failed.load(ordering: .relaxed)
        if status != 0 { throw ExitCode(status) }
    }
}
