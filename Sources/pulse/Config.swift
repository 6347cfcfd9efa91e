import ArgumentParser
import AudiencePulse
import Foundation

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a configuration file, or print the reference of every key.",
        subcommands: [Check.self, Reference.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file with the PULSE_… environment applied; exit 2 on an error.")

        @Option(name: .shortAndLong, help: "The YAML configuration file.") var config: String

        func run() throws {
            let configuration = try ConfigurationFile.load(config)
            print("ok: \(configuration.summary)")
        }
    }

    struct Reference: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every configuration key as a Markdown table.")

        func run() { print(PulseConfiguration.referenceMarkdown()) }
    }
}

/// Loading a configuration file for a command: errors become exit code 2.
enum ConfigurationFile {
    static func load(_ path: String) throws -> PulseConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("configuration error: cannot read \(path): \(error.localizedDescription)\n".utf8))
            throw ExitCode(2)
        }
        do {
            return try PulseConfiguration.load(yaml: text, file: path, environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
