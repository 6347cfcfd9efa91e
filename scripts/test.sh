#!/usr/bin/env bash
# `make test`: installs what is missing, starts a local broker unless
# KAFKA_BOOTSTRAP_SERVERS points at one, builds warning-free, runs every test (unit and
# integration), stops the broker it started. Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/bootstrap.sh

started_broker=0
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if KAFKA_BOOTSTRAP_SERVERS="$(scripts/broker.sh status)"; then
    echo "test: using the running local broker at $KAFKA_BOOTSTRAP_SERVERS" >&2
  else
    KAFKA_BOOTSTRAP_SERVERS="$(scripts/broker.sh start "${PULSE_TEST_BROKER_PORT:-19092}")"
    started_broker=1
  fi
fi
export KAFKA_BOOTSTRAP_SERVERS
cleanup() { if [ "$started_broker" -eq 1 ]; then scripts/broker.sh stop || true; fi; }
trap cleanup EXIT

echo "test: librdkafka $(pkg-config --modversion rdkafka), broker $KAFKA_BOOTSTRAP_SERVERS" >&2

# Our own code builds without warnings (dependencies' warnings are theirs).
build_log="$(mktemp)"
swift build --build-tests 2>&1 | tee "$build_log"
if grep -E "^$root/(Sources|Tests|Benchmarks)/.*warning:" "$build_log" >/dev/null; then
  echo "test: the build has warnings in our code:" >&2
  grep -E "^$root/(Sources|Tests|Benchmarks)/.*warning:" "$build_log" | sort -u >&2
  exit 1
fi
rm -f "$build_log"

swift test --skip-build "$@"

# `make demo` without a terminal for 30 s: final records appear, the dashboard answers.
if [ $# -eq 0 ]; then
  DEMO_SECONDS=30 DEMO_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" scripts/demo.sh
  # The deployment files: compose and Kubernetes manifests validate, the Dockerfile's build runs.
  scripts/validate-deploy.sh
fi

# A produce and a consume loop under valgrind: no memory may be lost.
scripts/leak-check.sh
