import Foundation
import Synchronization

/// A TCP proxy on 127.0.0.1 that a test can cut (every connection dropped, new ones
/// refused) and restore: a network outage between a client and a broker.
final class TCPProxy: Sendable {
    let port: Int
    private let targetPort: Int
    private let listener: Int32
    private struct State {
        var cut = false
        var stopped = false
        var sockets: Set<Int32> = []
    }
    private let state = Mutex(State())

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(listener, generic, length) == 0 && listen(listener, 64) == 0 && getsockname(listener, generic, &length) == 0
            }
        }
        guard ok else { throw ProxyError(message: "cannot listen: errno \(errno)") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "test-proxy-accept"
        thread.start()
    }

    struct ProxyError: Error { var message: String }

    /// Drops every connection and refuses new ones until ``restore()``.
    func cut() {
        let sockets = state.withLock { state in
            state.cut = true
            return state.sockets
        }
        for socket in sockets { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    func restore() { state.withLock { $0.cut = false } }

    func stop() {
        state.withLock { $0.stopped = true }
        cut()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if state.withLock({ $0.stopped }) { return }
                continue
            }
            let refuse = state.withLock { $0.cut || $0.stopped }
            if refuse {
                close(client)
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: targetPort)
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
                }
            }
            guard connected else {
                close(upstream)
                close(client)
                continue
            }
            state.withLock { $0.sockets.formUnion([client, upstream]) }
            let pair = Pair(proxy: self, a: client, b: upstream)
            for (from, to) in [(client, upstream), (upstream, client)] {
                let thread = Thread { pair.pump(from: from, to: to) }
                thread.name = "test-proxy-pump"
                thread.start()
            }
        }
    }

    fileprivate func forget(_ sockets: [Int32]) {
        state.withLock { $0.sockets.subtract(sockets) }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }
}

/// Both directions of one proxied connection; the second pump to finish closes both sockets.
private final class Pair: Sendable {
    let proxy: TCPProxy
    let a: Int32
    let b: Int32
    private let running = Atomic<Int>(2)

    init(proxy: TCPProxy, a: Int32, b: Int32) {
        self.proxy = proxy
        self.a = a
        self.b = b
    }

    func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        loop: while true {
            let count = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            var sent = 0
            while sent < count {
                let written = buffer.withUnsafeBytes { send(to, $0.baseAddress?.advanced(by: sent), count - sent, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { break loop }
                sent += written
            }
        }
        shutdown(a, Int32(SHUT_RDWR))
        shutdown(b, Int32(SHUT_RDWR))
        if running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            proxy.forget([a, b])
            close(a)
            close(b)
        }
    }
}
