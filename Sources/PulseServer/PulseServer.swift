import AudiencePulse
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals

/// `pulse serve` as one ServiceGroup: the HTTP server (health, readiness, Prometheus) and
/// the processing pipeline. SIGTERM/SIGINT shut the pipeline down first (it commits and
/// leaves its groups while `/readyz` answers 503), then the HTTP server.
public enum PulseServer {
    /// Runs until a signal or a failure. Throws if a stage failed or the server could not start.
    public static func run(configuration: PulseConfiguration, instanceID: String, logger: Logger) async throws {
        let pipeline = PulseService(configuration: configuration, instanceID: instanceID, logger: logger)
        let application = makeApplication(configuration: configuration, pipeline: pipeline, logger: logger)
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: application, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
                .init(service: PipelineService(pipeline: pipeline, logger: logger),
                      successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(configuration.shutdownTimeout)
        groupConfiguration.maximumCancellationDuration = .seconds(2)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }

    /// The HTTP application of a running pipeline (routes only; the caller runs it).
    public static func makeApplication(configuration: PulseConfiguration, pipeline: PulseService, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        OperationsRoutes.add(to: router, pipeline: pipeline)
        let httpLogger = {
            var logger = logger
            logger[metadataKey: "component"] = "http"
            return logger
        }()
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "audience-pulse/\(PulseVersion.current)"),
            onServerRunning: { channel in
                httpLogger.info("HTTP server listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? configuration.httpHost)"])
            },
            logger: httpLogger)
    }
}
