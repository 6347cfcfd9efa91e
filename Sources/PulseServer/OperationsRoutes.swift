import AudiencePulse
import Hummingbird

/// `/healthz` (the process is alive and no stage failed), `/readyz` (joined, assigned,
/// restored, not draining) and `/metrics` (Prometheus text format). Without a pipeline
/// (`pulse collect`) the process is ready once it serves.
enum OperationsRoutes {
    static func add(to router: Router<some RequestContext>, pipeline: PulseService?, collector: Collector?, readModel: MetricsStore?) {
        router.get("healthz") { _, _ -> Response in
            let failures = pipeline?.failureMessages ?? []
            return failures.isEmpty
                ? text("ok\n")
                : text("failed: " + failures.joined(separator: "; ") + "\n", status: .internalServerError)
        }
        router.get("readyz") { _, _ -> Response in
            let state = pipeline?.readiness ?? (ready: true, reasons: [])
            return state.ready
                ? text("ready\n")
                : text("not ready: " + state.reasons.joined(separator: "; ") + "\n", status: .serviceUnavailable)
        }
        router.get("metrics") { _, _ -> Response in
            var out = PrometheusWriter()
            collector?.metrics.write(into: &out)
            if let stats = readModel?.stats {
                out.gauge("pulse_read_model_segments", help: "Segments the read model holds.", value: Double(stats.segments))
                out.gauge("pulse_read_model_records", help: "Records (segment, window) the read model holds.", value: Double(stats.records))
                out.counter("pulse_read_model_ingested_total", help: "Metric records the read model read.", value: stats.ingested)
                out.counter("pulse_read_model_dropped_total", help: "Records not kept because api.max_segments was reached.", value: stats.droppedRecords)
                out.gauge("pulse_stream_subscribers", help: "Open /v1/stream connections.", value: Double(stats.subscribers))
            }
            return text((pipeline?.prometheusText() ?? "") + out.text, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    static func text(_ body: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
