import Dispatch
import Foundation
import Synchronization

/// A dedicated OS thread for librdkafka calls that block.
///
/// Swift's cooperative pool has one thread per core (two here); a blocking `poll`,
/// `flush` or transaction commit on it would stall every task in the process. Each Kafka
/// client therefore owns one of these and runs its blocking calls on it, in order. Async
/// APIs submit a job and suspend until it finishes.
final class KafkaThread: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopping = false
    }

    private let state = Mutex(State())
    private let threadID = Mutex<pthread_t?>(nil)
    private let wakeup = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)
    let name: String

    init(name: String) {
        self.name = name
        let thread = Thread { [self] in self.runLoop() }
        thread.name = name
        thread.start()
    }

    private func runLoop() {
        threadID.withLock { $0 = pthread_self() }
        while true {
            wakeup.wait()
            let (jobs, stopping) = state.withLock { state in
                let jobs = state.jobs
                state.jobs.removeAll(keepingCapacity: true)
                return (jobs, state.stopping)
            }
            for job in jobs { job() }
            if stopping && jobs.isEmpty { break }
        }
        exited.signal()
    }

    /// Queues `job` to run on this thread. Jobs submitted after ``stop()`` never run.
    func submit(_ job: @escaping @Sendable () -> Void) {
        let accepted = state.withLock { state in
            guard !state.stopping else { return false }
            state.jobs.append(job)
            return true
        }
        if accepted { wakeup.signal() }
    }

    /// Runs `body` on this thread and returns its result to the awaiting task.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(KafkaError) -> T) async throws(KafkaError) -> T {
        let result: Result<T, KafkaError> = await withCheckedContinuation { continuation in
            let accepted = state.withLock { state in
                guard !state.stopping else { return false }
                state.jobs.append { continuation.resume(returning: Result { () throws(KafkaError) in try body() }) }
                return true
            }
            if accepted {
                wakeup.signal()
            } else {
                continuation.resume(returning: .failure(KafkaError(code: .destroyed, message: "the Kafka client is closed")))
            }
        }
        return try result.get()
    }

    /// Runs the queued jobs, then ends the thread and waits for it (unless called from the
    /// thread itself, when the last reference to the owner is dropped by a finished job).
    /// Idempotent.
    func stop() {
        let first = state.withLock { state in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        wakeup.signal()
        if threadID.withLock({ $0 == pthread_self() }) { return }
        exited.wait()
        exited.signal()  // later callers of stop() return at once
    }
}

/// A dedicated OS thread that repeatedly calls `body` until stopped: the producer's
/// delivery-report loop.
final class KafkaLoopThread: Sendable {
    private let stopping = Atomic<Bool>(false)
    private let threadID = Mutex<pthread_t?>(nil)
    private let exited = DispatchSemaphore(value: 0)

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            self.threadID.withLock { $0 = pthread_self() }
            while !self.stopping.load(ordering: .acquiring) { body() }
            self.exited.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Ends the loop after the current iteration and waits for the thread (unless called
    /// from the loop itself). Idempotent.
    func stop() {
        let (exchanged, _) = stopping.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing)
        guard exchanged else { return }
        if threadID.withLock({ $0 == pthread_self() }) { return }
        exited.wait()
    }
}
