import Testing

@testable import AudiencePulse

@Suite("What a checkpoint chain writes next")
struct CheckpointChainTests {
    /// Pieces of `size` bytes; records the limit each increment was offered.
    final class State {
        var incrementSize: Int?
        var wholeSize = 100
        var limits: [Int] = []

        func increment(_ limit: Int) -> [UInt8]? {
            limits.append(limit)
            return incrementSize.map { [UInt8](repeating: 1, count: $0) }
        }

        func whole() -> [UInt8] { [UInt8](repeating: 0, count: wholeSize) }
    }

    @Test("a whole state first, then increments while they stay smaller together than it, then a whole state again")
    func incrementsWithinTheWholeStatesSize() {
        let state = State()
        state.incrementSize = 30
        var chain = CheckpointChain()
        #expect(!chain.next(increment: state.increment, whole: state.whole).incremental, "no chain yet")
        #expect(state.limits.isEmpty, "no increment asked for without a whole state")
        #expect(chain == CheckpointChain(wholeBytes: 100, incrementBytes: 0, pieces: 1))
        #expect(chain.next(increment: state.increment, whole: state.whole) == ([UInt8](repeating: 1, count: 30), true))
        #expect(chain.next(increment: state.increment, whole: state.whole).incremental)
        #expect(chain.next(increment: state.increment, whole: state.whole).incremental)
        #expect(state.limits == [100, 70, 40])
        #expect(chain == CheckpointChain(wholeBytes: 100, incrementBytes: 90, pieces: 4))
        // 30 more bytes would make the increments outgrow the whole state.
        state.wholeSize = 120
        #expect(!chain.next(increment: state.increment, whole: state.whole).incremental)
        #expect(state.limits.last == 10)
        #expect(chain == CheckpointChain(wholeBytes: 120, incrementBytes: 0, pieces: 1), "the whole state starts a new chain")
        // A state that cannot write an increment writes itself whole.
        state.incrementSize = nil
        #expect(!chain.next(increment: state.increment, whole: state.whole).incremental)
        #expect(chain.pieces == 1)
    }

    @Test("at most 16 pieces in a chain (CheckpointChain.maxPieces)")
    func chainLength() {
        let state = State()
        state.incrementSize = 1
        #expect(CheckpointChain.maxPieces == 16)
        var chain = CheckpointChain()
        var kinds: [Bool] = []
        for _ in 0..<(2 * CheckpointChain.maxPieces + 1) {
            kinds.append(chain.next(increment: state.increment, whole: state.whole).incremental)
        }
        let increments = [Bool](repeating: true, count: CheckpointChain.maxPieces - 1)
        #expect(kinds == [false] + increments + [false] + increments + [false])
    }
}
