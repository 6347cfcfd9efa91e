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
        let collector = configuration.collector.enabled ? try Collector(configuration: configuration, logger: logger) : nil
        defer { collector?.close() }
        let reader = configuration.api.enabled
            ? MetricsTopicReader(configuration: configuration, store: MetricsStore(limits: .init(retention: configuration.api.retention, maxSegments: configuration.api.maxSegments)), logger: logger)
            : nil
        let application = makeApplication(configuration: configuration, pipeline: pipeline, collector: collector, reader: reader, logger: logger)
        // Shutdown runs in reverse: the pipeline drains, live streams end, then the server stops.
        var services: [any Service] = [application]
        if let reader { services.append(ReadModelService(reader: reader)) }
        services.append(PipelineService(pipeline: pipeline, logger: logger))
        try await runGroup(services, configuration: configuration, logger: logger)
    }

    /// `pulse collect`: the HTTP collector (with health and metrics) without the pipeline.
    public static func runCollector(configuration: PulseConfiguration, logger: Logger) async throws {
        let collector = try Collector(configuration: configuration, logger: logger)
        defer { collector.close() }
        let application = makeApplication(configuration: configuration, pipeline: nil, collector: collector, reader: nil, logger: logger)
        try await runGroup([application], configuration: configuration, logger: logger)
    }

    /// Runs `services` until SIGTERM/SIGINT or a failure; shutdown goes in reverse order.
    private static func runGroup(_ services: [any Service], configuration: PulseConfiguration, logger: Logger) async throws {
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map {
                .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
            },
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = .milliseconds(configuration.shutdownTimeout)
        groupConfiguration.maximumCancellationDuration = .seconds(2)
        try await ServiceGroup(configuration: groupConfiguration).run()
    }

    /// The HTTP application of a running pipeline (routes only; the caller runs it).
    public static func makeApplication(configuration: PulseConfiguration, pipeline: PulseService?, collector: Collector?,
                                       reader: MetricsTopicReader?, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        OperationsRoutes.add(to: router, pipeline: pipeline, collector: collector, readModel: reader?.store)
        if let reader { ReadAPI(store: reader.store, reader: reader, token: configuration.api.token).add(to: router) }
        if let collector {
            let events = router.group("v1/events")
            if !configuration.collector.allowedOrigins.isEmpty {
                events.add(middleware: CORSAllowList(origins: Set(configuration.collector.allowedOrigins)))
            }
            events.post { request, context in try await collector.handle(request, context: context) }
            events.on("", method: .options) { _, _ in Response(status: .noContent) }
            if !configuration.collector.webhooks.isEmpty {
                let webhooks = WebhookReceiver(sources: configuration.collector.webhooks, collector: collector)
                router.post("v1/webhooks/:source") { request, context in try await webhooks.handle(request, context: context) }
            }
        }
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
