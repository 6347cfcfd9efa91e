import AudiencePulse
import ServiceLifecycle

/// The read model as a service of the process's ServiceGroup: follows the metrics topic
/// until graceful shutdown, then ends every live stream so the HTTP server can finish.
struct ReadModelService: Service {
    let reader: MetricsTopicReader

    func run() async throws {
        reader.start()
        try? await gracefulShutdown()  // throws only on cancellation: stop either way
        let reader = self.reader
        try await Blocking.onThread(named: "pulse-read-model-stop") { reader.stop() }
    }
}
