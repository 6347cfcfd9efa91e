#!/usr/bin/env bash
# Collector throughput with wrk on loopback: batches of 100 events per request to a
# release `pulse serve` (its pipeline reads another topic, so the collector is measured
# alone), the local broker on the same machine.
# Usage: scripts/bench-collector.sh   (CONNECTIONS=50 DURATION=30s BATCH=100 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
CONNECTIONS="${CONNECTIONS:-50}"; DURATION="${DURATION:-30s}"; BATCH="${BATCH:-100}"
scripts/bootstrap.sh >/dev/null
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
. scripts/lib.sh
use_broker
bench_run collect
port=18555
cat >"$work/pulse.yaml" <<YAML
app: $app
kafka:
  bootstrap.servers: $KAFKA_BOOTSTRAP_SERVERS
topics:
  input: $app.pipeline-input
collector:
  topic: $app.collected
  allow_anonymous: true
http:
  listen: 127.0.0.1:$port
log:
  format: text
YAML
"$pulse" bench kafka-produce --topic "$app.pipeline-input" --count 0 --partitions 1 >/dev/null
"$pulse" bench kafka-produce --topic "$app.collected" --count 0 --partitions 4 >/dev/null
"$pulse" serve --config "$work/pulse.yaml" --instance-id bench >"$work/serve.log" 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; stop_started_broker' EXIT
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# Each request: BATCH events with fresh ids (counter per wrk thread) over 10,000 users.
cat >"$work/post.lua" <<LUA
local counter = 0
local thread_id = math.random(1, 1000000000)
request = function()
  local events = {}
  for i = 1, $BATCH do
    counter = counter + 1
    events[i] = string.format('{"event_id":"w%d-%d","type":"page_view","user_id":"u%d","timestamp":1795860000000,"content_id":"article-%d","attributes":{"country":"DE","device":"mobile"}}', thread_id, counter, counter % 10000, counter % 500)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, "[" .. table.concat(events, ",") .. "]")
end
done = function(summary, latency, requests)
  io.write(string.format("requests: %d, non-2xx or errors: %d\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("events accepted/s: %.0f\n", summary.requests / (summary.duration / 1e6) * $BATCH))
  io.write(string.format("latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t2 -c$CONNECTIONS -d$DURATION, $BATCH events per request"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "http://127.0.0.1:$port" | tail -4
curl -s "127.0.0.1:$port/metrics" | grep -E "^pulse_collector_(events_accepted_total|requests_total)"
