import ArgumentParser
import AudiencePulse

@main
struct Pulse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pulse",
        abstract: "Audience Pulse: per-segment audience metrics from a Kafka event stream.",
        subcommands: [Serve.self, Collect.self, Generate.self, Replay.self, Tail.self, Topics.self, Config.self, Bench.self]
    )

    static func main() {
        MemoryTuning.apply()
        main(nil)
    }
}
