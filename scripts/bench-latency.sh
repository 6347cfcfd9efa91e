#!/usr/bin/env bash
# Event → metric latency of `pulse serve` (release build, exactly_once, update and commit
# interval 1 s, 1-minute windows) at a fixed input rate, against the local broker.
# Usage: scripts/bench-latency.sh   (RATE=10000 SECONDS=120 PARTITIONS=4 by default;
# WINDOWS and DIMENSIONS replace the YAML lists, e.g. WINDOWS='[1m, 10m/1m]'; latency is
# measured on the 1m windows of segment all). Prints the service's CPU seconds at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
RATE="${RATE:-10000}"; SECONDS_="${SECONDS:-120}"; PARTITIONS="${PARTITIONS:-4}"

scripts/bootstrap.sh >/dev/null
. scripts/lib.sh
use_broker
bench_run latency
cat >"$work/pulse.yaml" <<YAML
app: $app
kafka:
  bootstrap.servers: $KAFKA_BOOTSTRAP_SERVERS
  session.timeout.ms: "6000"
  heartbeat.interval.ms: "1000"
  max.poll.interval.ms: "10000"
  fetch.wait.max.ms: "${FETCH_WAIT:-500}"
topics:
  input: $app.events
  metrics: $app.metrics
  dead_letter: $app.dlq
segments:
  dimensions: ${DIMENSIONS:-[[], [country], [device], [country, device]]}
windows: ${WINDOWS:-[1m]}
processing:
  update_interval: 1s
  commit_interval: 250ms
http:
  listen: 127.0.0.1:0
log:
  format: text
YAML
"$pulse" bench kafka-produce --topic "$app.events" --count 0 --partitions "$PARTITIONS" >/dev/null 2>&1 || true
"$pulse" serve --config "$work/pulse.yaml" --instance-id bench >"$work/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; stop_started_broker' EXIT
for _ in $(seq 1 600); do grep -q "stage 2 assigned" "$work/serve.log" && grep -q "stage 1 assigned" "$work/serve.log" && break; sleep 0.1; done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); service log: $work/serve.log"
"$pulse" bench latency -X fetch.wait.max.ms="${FETCH_WAIT:-500}" --input "$app.events" --metrics "$app.metrics" --rate "$RATE" --seconds "$SECONDS_"
# utime + stime of the service since its start, in clock ticks (fields 14 and 15).
ticks="$(awk '{ print $14 + $15 }' "/proc/$serve/stat")"
echo "service CPU: $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }') s over the run (from its start)"
