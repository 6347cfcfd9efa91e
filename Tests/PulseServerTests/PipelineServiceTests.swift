import Foundation
import Logging
import PulseServer
import Synchronization
import Testing

/// A pipeline of stand-in stages: one fails right after the start, the others return only
/// when the test lets them (as a producer holding its commit would).
final class StuckPipeline: StagedPipeline {
    let drainTimeoutMs: Int64
    private let state = Mutex<(failures: [String], failureHandlers: [@Sendable () -> Void], stopped: [@Sendable () -> Void], returned: Bool)>(([], [], [], false))

    init(drainTimeoutMs: Int64) { self.drainTimeoutMs = drainTimeoutMs }

    func start() throws {
        // The failure is there from the start on; its handlers run on the stage's thread.
        let handlers = state.withLock { state in
            state.failures.append("stage-2: fenced")
            return state.failureHandlers
        }
        Thread.detachNewThread { for handler in handlers { handler() } }
    }

    func requestStop() {}

    func onStopped(_ body: @escaping @Sendable () -> Void) {
        let returned = state.withLock { state in
            state.stopped.append(body)
            return state.returned
        }
        if returned { body() }
    }

    func onFirstFailure(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.failureHandlers.append(body) }
    }

    var failureMessages: [String] { state.withLock { $0.failures } }

    /// The other stages return.
    func stagesReturn() {
        let bodies = state.withLock { state in
            state.returned = true
            return state.stopped
        }
        for body in bodies { body() }
    }
}

@Suite("Pipeline service")
struct PipelineServiceTests {
    /// Runs the service to its end and returns what it threw. The stages return after
    /// `delay`, or (so that the test ends either way) after `patience`.
    func runError(_ pipeline: StuckPipeline, stagesReturnAfter delay: Duration?, patience: Duration = .seconds(60)) async -> (any Error)? {
        let service = PipelineService(pipeline: pipeline, logger: Logger(label: "test"))
        let releaser = Task {
            try await Task.sleep(for: delay ?? patience)
            pipeline.stagesReturn()
        }
        defer { releaser.cancel() }
        do { try await service.run() } catch { return error }
        return nil
    }

    @Test("after a stage failed, the service ends within the drain time even if the other stages never return, naming the failure")
    func boundedAfterFailure() async throws {
        let pipeline = StuckPipeline(drainTimeoutMs: 1_000)
        let error = await runError(pipeline, stagesReturnAfter: nil)
        let failure = try #require(error as? PipelineFailure)
        #expect(failure.messages.first == "stage-2: fenced")
        #expect(failure.messages.contains { $0.contains("did not stop") }, "it ended at the drain time, not when the stages returned: \(failure.messages)")
    }

    @Test("after a stage failed, stages that drain in time end the service with the failure alone")
    func drainedAfterFailure() async throws {
        let pipeline = StuckPipeline(drainTimeoutMs: 600_000)
        let error = await runError(pipeline, stagesReturnAfter: .milliseconds(200))
        let failure = try #require(error as? PipelineFailure)
        #expect(failure.messages == ["stage-2: fenced"])
    }
}
