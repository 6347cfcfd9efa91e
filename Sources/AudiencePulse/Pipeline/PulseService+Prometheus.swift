import Synchronization

extension PulseService {
    /// Every series of the service in Prometheus text format (served at `/metrics`).
    public func prometheusText() -> String {
        var out = PrometheusWriter()
        let m = metrics
        let counters: [(String, String, Int)] = [
            ("pulse_events_consumed_total", "Input records read by stage 1.", m.consumed.load(ordering: .relaxed)),
            ("pulse_events_valid_total", "Input events accepted into the aggregates.", m.valid.load(ordering: .relaxed)),
            ("pulse_events_invalid_total", "Input records rejected by validation (sent to the dead-letter topic).", m.invalid.load(ordering: .relaxed)),
            ("pulse_events_duplicate_total", "Input events dropped as duplicates of an event id already seen.", m.duplicates.load(ordering: .relaxed)),
            ("pulse_events_late_total", "Input events later than their window's close (sent to the dead-letter topic).", m.late.load(ordering: .relaxed)),
            ("pulse_dead_letters_total", "Records produced to the dead-letter topic.", m.deadLettered.load(ordering: .relaxed)),
            ("pulse_partials_produced_total", "Partial aggregates produced by stage 1.", m.partialsProduced.load(ordering: .relaxed)),
            ("pulse_partials_consumed_total", "Partials and watermark markers read by stage 2.", m.partialsConsumed.load(ordering: .relaxed)),
            ("pulse_windows_closed_total", "Windows closed by stage 1's watermarks (per input partition).", m.windowsClosed.load(ordering: .relaxed)),
            ("pulse_records_produced_total", "Metric records produced (updates and finals).", m.recordsProduced.load(ordering: .relaxed)),
            ("pulse_final_records_total", "Final metric records produced.", m.finalRecords.load(ordering: .relaxed)),
            ("pulse_transaction_commits_total", "Kafka transactions committed.", m.transactionCommits.load(ordering: .relaxed)),
            ("pulse_transaction_aborts_total", "Cycles aborted and rewound to the last checkpoint after a Kafka error.", m.transactionAborts.load(ordering: .relaxed)),
            ("pulse_rebalances_total", "Partition assignments handled by either stage.", m.rebalances.load(ordering: .relaxed)),
            ("pulse_watermark_alignment_pauses_total", "Input partitions stage 1 paused for running more than time.max_watermark_drift ahead of the slowest one.", m.alignmentPauses.load(ordering: .relaxed)),
        ]
        for (name, help, value) in counters { out.counter(name, help: help, value: value) }
        let trims = MemoryTuning.trimCounts
        if trims.running {
            out.counter("pulse_memory_trims_total", help: "Times free allocator memory was handed back to the system (processing.memory_trim_interval).", value: trims.trims)
            out.sample("pulse_memory_trim_seconds_total", type: "counter", help: "Time those trims took (each holds the allocator's arenas in turn).",
                       value: trims.seconds)
        }
        let checkpoints = m.checkpoints.withLock { $0 }
        for (name, help, value) in [
            ("pulse_checkpoints_total", "Partition checkpoints written to the stage's changelog.", \PipelineMetrics.CheckpointCounts.written),
            ("pulse_incremental_checkpoints_total", "Of those, checkpoints written as increments on the one before.", \.incremental),
            ("pulse_checkpoint_bytes_total", "Bytes of those checkpoints (before the changelog's compression).", \.bytes),
        ] {
            for stage in [1, 2] {
                out.counter(name, help: help, labels: [("stage", String(stage))], value: checkpoints[stage]?[keyPath: value] ?? 0)
            }
        }
        let lagHelp = "Records of an assigned partition not read yet (from the last fetch's high watermark; -1 before the first fetch)."
        for (stage, lags) in [("1", m.stageOneLag), ("2", m.stageTwoLag.withLock { $0 })] {
            let topic = stage == "1" ? configuration.inputTopic : configuration.partialsTopic
            for (partition, lag) in lags.sorted(by: { $0.key < $1.key }) {
                out.gauge("pulse_consumer_lag", help: lagHelp, labels: [("stage", stage), ("topic", topic), ("partition", String(partition))], value: Double(lag))
            }
        }
        let state = readiness
        out.gauge("pulse_missing_final_partials",
                  help: "Final partials that close markers announced but stage 2 has not received; their windows wait (alert if it stays above 0).",
                  value: Double(m.missingFinalPartials.load(ordering: .relaxed)))
        out.gauge("pulse_paused_partitions", help: "Input partitions paused now for watermark alignment (time.max_watermark_drift).",
                  value: Double(m.pausedPartitions.withLock { $0.values.reduce(0, +) }))
        out.gauge("pulse_tracked_users",
                  help: "Users whose state stage 1 keeps (first and last seen) on this process's input partitions; its memory grows with them.",
                  value: Double(m.trackedUsers))
        out.gauge("pulse_ready", help: "1 when the service is ready (see /readyz).", value: state.ready ? 1 : 0)
        out.histogram("pulse_batch_processing_seconds", help: "Stage 1: time to process one polled batch of input records.", m.batchProcessing)
        out.histogram("pulse_input_delay_seconds", help: "Stage 1: from an input record's append time to its processing (each batch's first record).", m.inputDelay)
        out.histogram("pulse_event_to_metric_seconds", help: "End to end, per round of updated records: from the append time of the oldest input event first reflected to the records being produced.", m.eventToMetric)
        out.histogram("pulse_window_close_delay_seconds", help: "From a window's end (event time) to its final record; includes time.max_out_of_orderness and time.allowed_lateness.", m.windowCloseDelay)
        return out.text
    }
}
