import AudiencePulse
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What ``PipelineService`` runs: stages on threads of their own that it starts, asks to
/// stop, and hears from when they all returned or one failed.
public protocol StagedPipeline: Sendable {
    /// Time the stages get to drain, after SIGTERM or after one of them failed (ms).
    var drainTimeoutMs: Int64 { get }
    /// Starts the stages (blocking work: topic checks); returns once they run.
    func start() throws
    /// Asks every stage to finish its transaction and stop; returns at once.
    func requestStop()
    /// Calls `body` once every stage returned.
    func onStopped(_ body: @escaping @Sendable () -> Void)
    /// Calls `body` when the first stage fails (registered before ``start()``).
    func onFirstFailure(_ body: @escaping @Sendable () -> Void)
    /// Stage failures so far.
    var failureMessages: [String] { get }
}

extension PulseService: StagedPipeline {
    public var drainTimeoutMs: Int64 { configuration.shutdownTimeout }
}

/// The processing pipeline as a service of the process's ServiceGroup: starts the stages
/// (topic checks run on their own thread, not on the cooperative pool), and on graceful
/// shutdown asks them to commit their transactions and leave their groups. After a stage
/// failed, the others get the same time to drain before the service ends with the failure.
public struct PipelineService<Pipeline: StagedPipeline>: Service {
    public let pipeline: Pipeline
    private let logger: Logger

    public init(pipeline: Pipeline, logger: Logger) {
        self.pipeline = pipeline
        self.logger = logger
    }

    public func run() async throws {
        let pipeline = self.pipeline
        let drainTimeout = pipeline.drainTimeoutMs
        let logger = self.logger
        try await withGracefulShutdownHandler {
            let waiter = StopWaiter()
            // After a stage failed, the others drain as on SIGTERM, within the same time:
            // a fenced or cut-off producer can otherwise hold its commit for a minute and more.
            pipeline.onFirstFailure {
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(drainTimeout))) {
                    guard !waiter.isFinished else { return }
                    logger.critical("the other stages did not drain within processing.shutdown_timeout (\(drainTimeout) ms) after a stage failed; exiting without them")
                    waiter.finish()
                }
            }
            try await Blocking.onThread(named: "pulse-start") { try pipeline.start() }
            pipeline.onStopped { waiter.finish(stagesReturned: true) }
            await withTaskCancellationHandler {
                await waiter.wait()
            } onCancel: {
                // The group gave up waiting (shutdown timeout): stop waiting, not the stages.
                pipeline.requestStop()
                waiter.finish()
            }
            if !waiter.stagesReturned {
                throw PipelineFailure(messages: pipeline.failureMessages + ["the stages did not stop within the shutdown timeout"])
            }
        } onGracefulShutdown: {
            pipeline.requestStop()
        }
        if !pipeline.failureMessages.isEmpty {
            throw PipelineFailure(messages: pipeline.failureMessages)
        }
    }
}

/// Blocking work off the cooperative pool.
enum Blocking {
    /// Runs `body` on a new thread and awaits its result.
    static func onThread<T: Sendable>(named name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try body() })
            }
            thread.name = name
            thread.start()
        }
    }
}

/// A stage of the pipeline stopped with an error.
public struct PipelineFailure: Error, CustomStringConvertible {
    public let messages: [String]
    public var description: String { "pipeline failed: " + messages.joined(separator: "; ") }
}

/// A one-shot wait that the stages' return, a cancellation or a deadline ends.
final class StopWaiter: Sendable {
    private struct State {
        var finished = false
        var stagesReturned = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    var isFinished: Bool { state.withLock { $0.finished } }

    /// Whether `finish` came from the stages (not from cancellation or a deadline).
    var stagesReturned: Bool { state.withLock { $0.stagesReturned } }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.finished { return true }
                state.continuation = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func finish(stagesReturned: Bool = false) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if stagesReturned { state.stagesReturned = true }
            guard !state.finished else { return nil }
            state.finished = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }
}
