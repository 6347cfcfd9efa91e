# Audience Pulse — the two commands that matter are `make demo` and `make test`.
.PHONY: test demo bench soak bootstrap broker-start broker-stop build release bench-kafka bench-core leak-check clean

## Install everything missing (system packages, librdkafka >= 2.1, the local broker).
bootstrap:
	scripts/bootstrap.sh

## All tests, unit and integration, against a local broker (or KAFKA_BOOTSTRAP_SERVERS).
test:
	scripts/test.sh

## Run the service against a local broker with a synthetic audience; dashboard at http://127.0.0.1:8080/.
demo: bootstrap
	scripts/demo.sh

broker-start: bootstrap
	scripts/broker.sh start

broker-stop:
	scripts/broker.sh stop

build: bootstrap
	swift build

release: bootstrap
	swift build -c release

## The whole benchmark (docs/benchmarks.md): ceiling, lean, full (the defaults) and example jobs (in groups, static, bounded), latency, state and restore.
## Appends its table to docs/benchmarks.md, writes .tools/bench/suite.json and the services' log lines to .tools/bench/suite.log.
bench: bootstrap
	scripts/bench.sh

## A long live run of pulse.example.yaml's job with spikes: memory, CPU, lag and latency once a minute (DURATION=30m; docs/benchmarks.md).
soak: bootstrap
	scripts/soak.sh

## Bare Kafka-module consumer/producer vs kcat on the same topic (docs/benchmarks.md).
bench-kafka: bootstrap
	scripts/bench-kafka.sh

clean:
	rm -rf .build

## Produce and consume loops under valgrind; fails on any lost memory.
leak-check: bootstrap
	scripts/leak-check.sh

## Metrics-core benchmarks: ordo-one/benchmark (allocations per event) and pulse bench core.
bench-core: bootstrap
	cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --format markdown
	swift build -c release --product pulse && "$$(swift build -c release --show-bin-path)/pulse" bench core
