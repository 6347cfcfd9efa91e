import Foundation
import Testing

/// Headless Chromium driven over the W3C WebDriver protocol by `chromedriver` (Debian's
/// `chromium-driver`): a real browser that loads pages, runs their scripts and takes
/// screenshots.
final class Browser: @unchecked Sendable {
    // @unchecked: the fields are set once in init.
    let driver = Process()
    let port: Int
    private var session = ""

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static var driverPath: String? {
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init() async throws {
        guard let path = Self.driverPath else {
            throw Failure(description: "chromedriver is not installed (apt-get install chromium chromium-driver; scripts/bootstrap.sh does)")
        }
        port = ServiceProcess.freePort()
        driver.executableURL = URL(fileURLWithPath: path)
        driver.arguments = ["--port=\(port)", "--log-path=\(FileManager.default.temporaryDirectory.path)/chromedriver-\(port).log"]
        driver.standardOutput = FileHandle.nullDevice
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while try await call("GET", "/status") == nil {
            guard ContinuousClock.now < deadline else { throw Failure(description: "chromedriver did not answer on port \(port)") }
            try await Task.sleep(for: .milliseconds(200))
        }
        let capabilities: [String: Any] = ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "goog:chromeOptions": ["args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]],
        ]]]
        guard let answer = try await call("POST", "/session", capabilities) as? [String: Any],
              let id = answer["sessionId"] as? String else {
            throw Failure(description: "chromedriver did not start a browser session")
        }
        session = id
    }

    func open(_ url: String) async throws {
        _ = try await call("POST", "/session/\(session)/url", ["url": url])
    }

    /// Runs `script` (a function body; `return` its result) in the page.
    func evaluate(_ script: String) async throws -> Any? {
        try await call("POST", "/session/\(session)/execute/sync", ["script": script, "args": []])
    }

    /// A PNG of the viewport.
    func screenshot() async throws -> Data {
        guard let base64 = try await call("GET", "/session/\(session)/screenshot") as? String, let data = Data(base64Encoded: base64) else {
            throw Failure(description: "no screenshot")
        }
        return data
    }

    func close() async {
        if !session.isEmpty { _ = try? await call("DELETE", "/session/\(session)") }
        driver.terminate()
        await driver.exited(within: .seconds(10))
    }

    /// One WebDriver command: its `value`, nil if the driver did not answer. Sent with
    /// curl: Foundation's URLSession on Linux rejects chromedriver's response headers
    /// ("Failed writing header").
    private func call(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> Any? {
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-s", "-m", "60", "-X", method, "-H", "Content-Type: application/json", "-w", "\n%{http_code}"]
            + (body == nil ? [] : ["--data-binary", "@-"]) + ["http://127.0.0.1:\(port)\(path)"]
        let input = Pipe()
        let output = Pipe()
        curl.standardInput = input
        curl.standardOutput = output
        curl.standardError = FileHandle.nullDevice
        try curl.run()
        if let body { input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: body)) }
        try input.fileHandleForWriting.close()
        let data = await Task.detached { output.fileHandleForReading.readDataToEndOfFile() }.value
        await curl.exited(within: .seconds(10))
        var text = String(decoding: data, as: UTF8.self)
        guard curl.terminationStatus == 0, let newline = text.lastIndex(of: "\n"), let status = Int(text[text.index(after: newline)...]) else { return nil }
        text = String(text[..<newline])
        if status >= 400 { throw Failure(description: "WebDriver \(method) \(path): HTTP \(status) \(text.prefix(500))") }
        let object = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) as? [String: Any]
        return object?["value"] ?? NSNull()
    }
}

extension Process {
    /// Waits (polling; Foundation's `waitUntilExit` can spin forever on Linux) until the
    /// process exited, then SIGKILLs it if `timeout` passed first.
    func exited(within timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if isRunning { kill(processIdentifier, SIGKILL) }
    }
}
