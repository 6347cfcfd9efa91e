#!/usr/bin/env bash
# make bench: `pulse bench suite` (release build) against the local broker, or
# KAFKA_BOOTSTRAP_SERVERS; appends the table to docs/benchmarks.md and writes
# .tools/bench/suite.json (the services' log lines: .tools/bench/suite.log); the ceiling
# and the jobs in three rounds (--rounds), latency runs of 60 s (--latency-seconds).
# Extra arguments go to `pulse bench suite` (see --help) and win over these.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/lib.sh
use_broker
trap stop_started_broker EXIT
swift build -c release --product pulse --static-swift-stdlib 2>&1 | tail -1  # the build the image ships
mkdir -p .tools/bench
# The services' log lines (JSON, info and up) go to .tools/bench/suite.log between the
# progress lines, which also show here: what each job's stages did, when, to the ms.
"$(swift build -c release --show-bin-path)/pulse" bench suite --brokers "$KAFKA_BOOTSTRAP_SERVERS" \
  --json .tools/bench/suite.json --append docs/benchmarks.md --rounds 3 --latency-seconds 60 --log-level info "$@" \
  2> >(tee .tools/bench/suite.log | grep -v '^{' >&2)
echo "bench: the services' log lines: .tools/bench/suite.log"
