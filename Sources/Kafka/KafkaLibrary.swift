import CRdKafka

/// Facts about the librdkafka library this process is linked against.
public enum KafkaLibrary {
    /// librdkafka's version string, e.g. `2.8.0`.
    public static var version: String { String(cString: rd_kafka_version_str()) }

    /// The oldest librdkafka this module accepts. 2.0.x mis-parses KIP-482 tagged
    /// fields in ApiVersions v3 responses (`ApiVersionRequest failed: Local: Read
    /// underflow`) against current Apache Kafka in KRaft mode and other modern brokers.
    public static let minimumVersion = "2.1.0"
    static let minimumVersionNumber: Int32 = 0x0201_0000

    /// Throws when the loaded librdkafka is older than ``minimumVersion``. Every client
    /// constructor calls this, so a stale loader cache that picks up an old
    /// `librdkafka.so.1` fails loudly at start instead of at the first broker request.
    public static func checkVersion() throws(KafkaError) {
        if let error = versionError { throw error }
    }

    private static let versionError: KafkaError? = {
        guard rd_kafka_version() < minimumVersionNumber else { return nil }
        return KafkaError(
            code: .notImplemented,
            message: "librdkafka \(version) is loaded, but \(minimumVersion) or newer is required "
                + "(older versions fail the ApiVersions handshake with current brokers). Install a newer "
                + "librdkafka (scripts/bootstrap.sh builds 2.8.0 into /usr/local) and run `ldconfig`."
        )
    }()
}
