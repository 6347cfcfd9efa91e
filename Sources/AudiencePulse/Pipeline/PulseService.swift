import AudienceMetrics
import Foundation
import Kafka
import Logging
import Synchronization

/// The processing service: both stages in one process, stage 2 and each stage-1 worker
/// on a thread of its own. Start more processes (same `app`) to scale out; Kafka's
/// consumer groups spread the work, or each process reads a fixed share
/// (`processing.assignment: static`).
public final class PulseService: Sendable {
    public let configuration: PulseConfiguration
    let metrics = PipelineMetrics()
    private let stageOne: [StageOne]
    private let stageTwo: StageTwo
    private let logger: Logger
    private let done = DispatchGroup()
    private let failures = Mutex<[String]>([])
    private let failureHandlers = Mutex<[@Sendable () -> Void]>([])
    private let draining = Atomic<Bool>(false)
    private let bounded: BoundedRun?

    /// - Parameter instanceID: names this process's transactional producers; a restarted
    ///   process should reuse its id so it fences its predecessor at once.
    public init(configuration: PulseConfiguration, instanceID: String, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        let metrics = metrics
        let alignment = WatermarkAlignment(maxDrift: configuration.maxWatermarkDrift)
        let bounded = configuration.untilEnd ? BoundedRun(workers: configuration.stageOneWorkers) : nil
        self.bounded = bounded
        stageOne = (0..<configuration.stageOneWorkers).map {
            StageOne(configuration: configuration, instanceID: instanceID, worker: $0, alignment: alignment, bounded: bounded, metrics: metrics, logger: logger)
        }
        stageTwo = StageTwo(configuration: configuration, instanceID: instanceID, bounded: bounded, metrics: metrics, logger: logger)
    }

    /// Checks and creates topics, then starts both stages. Returns at once.
    public func start() throws {
        let admin = try KafkaAdmin(configuration: configuration.kafkaConfiguration, logger: logger)
        try TopicSetup.ensure(configuration, admin: admin, logger: logger)
        if MemoryTuning.startTrimming(every: .milliseconds(configuration.memoryTrimInterval)) {
            logger.info("handing free allocator memory back to the system every \(DurationText.format(configuration.memoryTrimInterval))")
        }
        let workers: [(String, @Sendable () throws -> Void)] = stageOne.map { worker in
            let run: @Sendable () throws -> Void = { try worker.run() }
            return (stageOne.count == 1 ? "stage-1" : "stage-1.\(worker.worker)", run)
        }
        let merging: @Sendable () throws -> Void = { [stageTwo] in try stageTwo.run() }
        let stages = workers + [("stage-2", merging)]
        for (name, stage) in stages {
            done.enter()
            let thread = Thread { [self] in
                defer { done.leave() }
                ThreadName.setCurrent("pulse-\(name)")
                do {
                    try stage()
                } catch {
                    logger.critical("\(name) failed: \(error); stopping the other stages")
                    let isFirst = failures.withLock { failures in
                        failures.append("\(name): \(error)")
                        return failures.count == 1
                    }
                    // One stage alone cannot do the work: the others drain and stop, and
                    // the process ends with the failure (its supervisor restarts it).
                    requestStop()
                    if isFirst { for handler in failureHandlers.withLock({ $0 }) { handler() } }
                }
            }
            thread.name = "pulse-\(name)"
            thread.start()
        }
    }

    /// Asks both stages to finish their transactions and leave their groups, and waits up
    /// to `timeout` for them. Returns false if they did not stop in time.
    @discardableResult
    public func stop(timeout: Duration) -> Bool {
        requestStop()
        return done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) == .success
    }

    /// Asks both stages to finish their transactions and leave their groups; returns at once.
    public func requestStop() {
        draining.store(true, ordering: .relaxed)
        for worker in stageOne { worker.stop() }
        stageTwo.stop()
    }

    /// Calls `body` (on the failing stage's thread) when the first stage fails. Register
    /// before ``start()``.
    public func onFirstFailure(_ body: @escaping @Sendable () -> Void) {
        failureHandlers.withLock { $0.append(body) }
    }

    /// Blocks until both stages returned (after ``stop(timeout:)`` or a failure).
    public func wait() { done.wait() }

    /// Calls `body` (on a Dispatch thread) once both stages returned.
    public func onStopped(_ body: @escaping @Sendable () -> Void) {
        done.notify(queue: .global(), execute: body)
    }

    /// Whether the service should get traffic and partitions: both stages got their
    /// partitions (joined their groups, or took their fixed share) and restored their
    /// state, none is rewinding after an error, no stage failed, and it is not draining.
    /// `reasons` says what is missing.
    public var readiness: (ready: Bool, reasons: [String]) {
        var reasons: [String] = []
        if draining.load(ordering: .relaxed) { reasons.append("draining") }
        if bounded?.hasEnded == true { reasons.append("the bounded run has ended") }
        if !failureMessages.isEmpty { reasons.append("a stage failed") }
        for worker in stageOne where !worker.ready.load(ordering: .relaxed) {
            reasons.append(stageOne.count == 1 ? "stage 1 has not got its partitions and restored them"
                : "stage 1 worker \(worker.worker) has not got its partitions and restored them")
        }
        if !metrics.stageTwoReady.load(ordering: .relaxed) { reasons.append("stage 2 has not got its partitions and restored them") }
        return (reasons.isEmpty, reasons)
    }

    /// With `processing.until_end`: whether the run has read its input to the end and
    /// produced every final record (the stages are then draining or stopped).
    public var boundedRunEnded: Bool { bounded?.hasEnded == true }

    /// With `processing.until_end`: when the run's steps happened (nil otherwise).
    var boundedRunTimeline: BoundedRun.Timeline? { bounded?.timeline }

    /// Stage failures so far (empty while healthy).
    public var failureMessages: [String] { failures.withLock { $0 } }

    /// Counters as name → value (consumed, valid, invalid, duplicates, late, …).
    public var counters: [String: Int] {
        let counts = metrics.checkpoints.withLock { $0 }
        let checkpoints = (stageOne: counts[1] ?? .init(), stageTwo: counts[2] ?? .init())
        return [
            "consumed": metrics.consumed.load(ordering: .relaxed), "valid": metrics.valid.load(ordering: .relaxed),
            "invalid": metrics.invalid.load(ordering: .relaxed), "duplicates": metrics.duplicates.load(ordering: .relaxed),
            "late": metrics.late.load(ordering: .relaxed), "dead_lettered": metrics.deadLettered.load(ordering: .relaxed),
            "partials_produced": metrics.partialsProduced.load(ordering: .relaxed), "partials_read": metrics.partialsRead.load(ordering: .relaxed), "windows_closed": metrics.windowsClosed.load(ordering: .relaxed),
            "checkpoints": checkpoints.stageOne.written, "incremental_checkpoints": checkpoints.stageOne.incremental,
            "stage2_checkpoints": checkpoints.stageTwo.written, "stage2_incremental_checkpoints": checkpoints.stageTwo.incremental,
            "transaction_commits": metrics.transactionCommits.load(ordering: .relaxed),
            "transaction_aborts": metrics.transactionAborts.load(ordering: .relaxed), "records_produced": metrics.recordsProduced.load(ordering: .relaxed),
            "final_records": metrics.finalRecords.load(ordering: .relaxed), "alignment_pauses": metrics.alignmentPauses.load(ordering: .relaxed),
        ]
    }
}
