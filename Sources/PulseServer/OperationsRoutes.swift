import AudiencePulse
import Hummingbird

/// `/healthz` (the process is alive and no stage failed), `/readyz` (joined, assigned,
/// restored, not draining) and `/metrics` (Prometheus text format). Without a pipeline
/// (`pulse collect`) the process is ready once it serves.
enum OperationsRoutes {
    static func add(to router: Router<some RequestContext>, pipeline: PulseService?, collector: Collector?) {
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
            return text((pipeline?.prometheusText() ?? "") + out.text, contentType: "text/plain; version=0.0.4; charset=utf-8")
        }
    }

    static func text(_ body: String, status: HTTPResponse.Status = .ok, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
