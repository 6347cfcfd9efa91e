import AudienceMetrics
import Testing

@Suite("The synthetic audience")
struct SyntheticAudienceTests {
    /// The user ids of the next `count` messages.
    static func users(_ audience: inout SyntheticAudience, count: Int) -> [String] {
        (0..<count).map { _ in audience.next(at: 1_800_000_000_000).key }
    }

    static func spec(users: Int, order: SyntheticAudience.UserOrder) -> SyntheticAudience.Spec {
        var spec = SyntheticAudience.Spec()
        spec.users = users
        spec.userOrder = order
        spec.duplicateShare = 0
        spec.malformedShare = 0
        return spec
    }

    @Test("every user in turn: each user once in every run of `users` events, in a scrambled order", arguments: [1, 2, 3, 10, 1_000, 65_536, 99_991])
    func everyUserInTurn(users: Int) {
        var audience = SyntheticAudience(spec: Self.spec(users: users, order: .everyUserInTurn))
        let expected = Set((0..<users).map { "u\($0)" })
        for _ in 0..<3 {
            let run = Self.users(&audience, count: users)
            // `users` messages whose users are all of them: each exactly once.
            #expect(Set(run) == expected)
        }
        if users >= 1_000 {
            var again = SyntheticAudience(spec: Self.spec(users: users, order: .everyUserInTurn))
            let first = Self.users(&again, count: 10)
            #expect(first != (0..<10).map { "u\($0)" }, "not in id order")
        }
    }

    @Test("random order: as many events as users reach about 1 − 1/e of them")
    func randomOrderMissesSome() {
        let users = 100_000
        var audience = SyntheticAudience(spec: Self.spec(users: users, order: .random))
        let distinct = Set(Self.users(&audience, count: users)).count
        // Expected 63,212; the standard deviation is about 150.
        #expect((62_000...64_500).contains(distinct), "\(distinct) distinct users")
    }
}
