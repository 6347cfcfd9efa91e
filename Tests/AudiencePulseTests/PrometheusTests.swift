import AudiencePulse
import Testing

@Suite("Prometheus exposition")
struct PrometheusTests {
    @Test("counters, labelled gauges and histograms in the text format, HELP/TYPE once per name")
    func textFormat() {
        let histogram = LatencyHistogram(bounds: [0.1, 1])
        histogram.observe(seconds: 0.05)
        histogram.observe(seconds: 0.5)
        histogram.observe(seconds: 3)
        histogram.observe(milliseconds: -5)  // clock skew counts as zero
        var writer = PrometheusWriter()
        writer.counter("x_total", help: "Xs.", value: 42)
        writer.gauge("lag", help: "Lag.", labels: [("topic", "a\"b\\c\nd"), ("partition", "0")], value: 7)
        writer.gauge("lag", help: "Lag.", labels: [("topic", "t"), ("partition", "1")], value: -1)
        writer.histogram("delay_seconds", help: "Delay.", histogram)
        #expect(writer.text == """
            # HELP x_total Xs.
            # TYPE x_total counter
            x_total 42
            # HELP lag Lag.
            # TYPE lag gauge
            lag{topic="a\\"b\\\\c\\nd",partition="0"} 7
            lag{topic="t",partition="1"} -1
            # HELP delay_seconds Delay.
            # TYPE delay_seconds histogram
            delay_seconds_bucket{le="0.1"} 2
            delay_seconds_bucket{le="1"} 3
            delay_seconds_bucket{le="+Inf"} 4
            delay_seconds_sum 3.55
            delay_seconds_count 4

            """)
    }
}
