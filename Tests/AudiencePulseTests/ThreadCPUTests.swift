import Foundation
import Synchronization
import Testing
@testable import AudiencePulse

@Suite("pulse bench suite: CPU time by thread")
struct ThreadCPUTests {
    @Test("threads are grouped by the names the service gives them")
    func groups() {
        #expect(ThreadCPU.group(ofThreadNamed: "pulse-stage-1.0") == "stage 1")
        #expect(ThreadCPU.group(ofThreadNamed: "pulse-stage-1") == "stage 1")
        #expect(ThreadCPU.group(ofThreadNamed: "pulse-stage-2") == "stage 2")
        #expect(ThreadCPU.group(ofThreadNamed: "pulse-readmodel") == "other", "the suite runs the stages alone")
        #expect(ThreadCPU.group(ofThreadNamed: "rdk:broker1") == "client library")
        #expect(ThreadCPU.group(ofThreadNamed: "NIO-SGLTN-1-#0") == "other")
    }

    @Test("work on a thread named as a stage is counted to that stage, and the groups add up to the process's time")
    func attribution() throws {
        let before = ThreadCPU.now()
        let processBefore = SuiteBenchmark.cpuSeconds()
        let done = DispatchSemaphore(value: 0)
        let result = Mutex(UInt64(0))
        let thread = Thread {
            ThreadName.setCurrent("pulse-stage-2")
            let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
            #expect(name == "pulse-stage-2")
            var state: UInt64 = 1
            for step in 0..<60_000_000 { state = state &* 6_364_136_223_846_793_005 &+ UInt64(step) }
            result.withLock { $0 = state }
            // Still alive when read: a thread that ended is not seen.
            done.signal()
            Thread.sleep(forTimeInterval: 1)
        }
        thread.start()
        done.wait()
        let spent = SuiteBenchmark.cpuSeconds() - processBefore
        let groups = Dictionary(uniqueKeysWithValues: ThreadCPU.now().seconds(since: before, processSeconds: spent).map { ($0.group, $0.seconds) })
        #expect(result.withLock { $0 } != 0)
        #expect(groups.keys.sorted() == ThreadCPU.groups.sorted())
        let stageTwo = try #require(groups["stage 2"])
        // Other tests may run alongside, so only this thread's own share is checked.
        #expect(stageTwo > 0.02, "the named thread's work: \(groups)")
        #expect(abs(groups.values.reduce(0, +) - spent) < 0.02, "the groups add up to the process's time: \(groups), process \(spent) s")
    }
}
