import ArgumentParser
import AudiencePulse
import Dispatch
import Foundation
import Kafka
import Logging

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the processing service: events in, per-segment metrics out, exactly once.",
        discussion: "Configuration: a YAML file (see pulse.example.yaml, docs/configuration.md) plus PULSE_… environment overrides. SIGTERM or SIGINT drains: the current transaction is committed, the consumer groups are left, and the process exits 0.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.") var config: String
    @Option(help: "Names this process's transactional producers; reuse it when restarting the same instance (default: $PULSE_INSTANCE_ID or the host name).")
    var instanceID: String?

    func run() throws {
        // Block SIGTERM and SIGINT before any thread exists, so every thread inherits the
        // mask; one dedicated thread takes them with sigwait (below). No other thread can
        // receive, and lose, them.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGTERM)
        sigaddset(&blocked, SIGINT)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        let configuration = try ConfigurationFile.load(config)
        let logger = Logging.bootstrapped(configuration)
        let instance = instanceID ?? ProcessInfo.processInfo.environment["PULSE_INSTANCE_ID"] ?? ProcessInfo.processInfo.hostName
        do {
            try KafkaLibrary.checkVersion()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
        logger.info("Audience Pulse starting", metadata: [
            "version": "\(PulseVersion.current)", "librdkafka": "\(KafkaLibrary.version)", "instance": "\(instance)",
            "configuration": "\(configuration.summary)",
        ])
        let service = PulseService(configuration: configuration, instanceID: instance, logger: logger)
        // Signal handling is in place before anything starts, so a SIGTERM during start-up
        // is not lost: stopping a service whose stages have not started returns at once.
        let waited = blocked
        let waiter = Thread {
            var set = waited
            var signalNumber: Int32 = 0
            sigwait(&set, &signalNumber)
            logger.info("signal \(signalNumber): draining")
            let stopped = service.stop(timeout: .milliseconds(configuration.shutdownTimeout))
            if !stopped { logger.error("stages did not stop within \(configuration.shutdownTimeout) ms; exiting") }
            Foundation.exit(stopped && service.failureMessages.isEmpty ? 0 : 1)
        }
        waiter.name = "pulse-signals"
        waiter.start()
        do {
            try service.start()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        service.wait()
        if !service.failureMessages.isEmpty {
            logger.critical("stopped after a failure: \(service.failureMessages)")
            throw ExitCode(1)
        }
    }
}

enum Logging {
    /// Sets up swift-log as configured (JSON or text lines on standard error) once.
    static func bootstrapped(_ configuration: PulseConfiguration) -> Logger {
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let json = configuration.logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "audience-pulse")
        logger.logLevel = level
        return logger
    }
}
