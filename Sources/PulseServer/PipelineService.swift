import AudiencePulse
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The processing pipeline as a service of the process's ServiceGroup: starts both stages
/// (topic checks run on their own thread, not on the cooperative pool), and on graceful
/// shutdown asks them to commit their transactions and leave their groups.
public struct PipelineService: Service {
    public let pipeline: PulseService
    private let logger: Logger

    public init(pipeline: PulseService, logger: Logger) {
        self.pipeline = pipeline
        self.logger = logger
    }

    public func run() async throws {
        let pipeline = self.pipeline
        try await withGracefulShutdownHandler {
            try await Self.onThread(named: "pulse-start") { try pipeline.start() }
            let waiter = StopWaiter()
            pipeline.onStopped { waiter.finish(stagesReturned: true) }
            await withTaskCancellationHandler {
                await waiter.wait()
            } onCancel: {
                // The group gave up waiting (shutdown timeout): stop waiting, not the stages.
                pipeline.requestStop()
                waiter.finish()
            }
            if !waiter.stagesReturned { throw PipelineFailure(messages: ["the stages did not stop within the shutdown timeout"]) }
        } onGracefulShutdown: {
            pipeline.requestStop()
        }
        if !pipeline.failureMessages.isEmpty {
            throw PipelineFailure(messages: pipeline.failureMessages)
        }
    }


    /// Runs blocking work on a new thread and awaits its result.
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

/// A one-shot wait that either the stages' return or a cancellation ends.
final class StopWaiter: Sendable {
    private struct State {
        var finished = false
        var stagesReturned = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    /// Whether `finish` came from the stages (not from cancellation).
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
