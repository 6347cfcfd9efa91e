import Foundation
import Testing
@testable import AudiencePulse

@Suite("Memory: free allocator memory handed back to the system")
struct MemoryTuningTests {
    @Test("a trim returns free memory that lies between blocks still in use")
    func trimReturnsFreeMemory() throws {
        // 200,000 blocks of 500 bytes (about 100 MB, each block written so its pages are
        // resident); every 64th stays, so the freed ones lie between blocks in use, not
        // at the end of an arena where free() itself would give them back.
        var blocks = (0..<200_000).map { _ in [UInt8](repeating: 1, count: 500) }
        let kept = stride(from: 0, to: blocks.count, by: 64).map { blocks[$0] }
        let allocated = RSSSampler.currentMegabytes()
        blocks = []
        let countsBefore = MemoryTuning.trimCounts
        #expect(MemoryTuning.trim())
        let trimmed = RSSSampler.currentMegabytes()
        #expect(allocated - trimmed > 50, "RSS \(allocated) MB with the blocks, \(trimmed) MB after freeing and trimming")
        #expect(MemoryTuning.trimCounts.trims > countsBefore.trims)
        withExtendedLifetime(kept) {}
    }

    @Test("a zero interval starts no trimming thread")
    func zeroIntervalIsOff() {
        #expect(!MemoryTuning.startTrimming(every: .zero))
    }
}
