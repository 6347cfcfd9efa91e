// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "AudiencePulse",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pulse", targets: ["pulse"]),
        .library(name: "Kafka", targets: ["Kafka"]),
        .library(name: "AudienceMetrics", targets: ["AudienceMetrics"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        // A CPU cache hint for the metrics core (header only, nothing to link).
        .systemLibrary(name: "CPrefetch"),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "AudienceMetrics",
            dependencies: ["CPrefetch"],
            // The core's hot path mutates class-held state per byte; static exclusivity
            // checking stays, the per-access runtime check (a TLS lookup) goes.
            swiftSettings: strictSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .target(
            name: "AudiencePulse",
            dependencies: [
                "Kafka",
                "AudienceMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PulseServer",
            dependencies: [
                "AudiencePulse",
                "AudienceMetrics",
                "Kafka",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [
                .embedInCode("Dashboard/index.html"),
                .embedInCode("Dashboard/dashboard.js"),
                .embedInCode("Dashboard/dashboard.css"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "pulse",
            dependencies: [
                "AudiencePulse",
                "AudienceMetrics",
                "Kafka",
                "PulseServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "KafkaTests",
            dependencies: ["Kafka"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AudienceMetricsTests",
            dependencies: ["AudienceMetrics"],
            exclude: ["Fixtures"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "AudiencePulseTests",
            dependencies: ["AudiencePulse", "AudienceMetrics", "Kafka"],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PulseServerTests",
            dependencies: ["PulseServer", "AudiencePulse", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["Kafka", "AudiencePulse", "AudienceMetrics", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strictSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
