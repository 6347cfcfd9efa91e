// swift-tools-version:6.1
// Benchmarks of the metrics core (ordo-one/benchmark): `make bench-core`, or
// `cd Benchmarks && swift package benchmark`. Results: docs/benchmarks.md.
import PackageDescription

let package = Package(
    name: "AudiencePulseBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "AudiencePulse", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "AudienceMetrics", package: "AudiencePulse"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
