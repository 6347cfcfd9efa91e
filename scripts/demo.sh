#!/usr/bin/env bash
# make demo: the service against a local broker (or KAFKA_BOOTSTRAP_SERVERS) with a lively
# synthetic audience — several countries, devices and sources, a conversion funnel, a
# trending story and a spike every 90 s — the dashboard URL and a live summary here.
# Ctrl-C stops everything.
#
#   DEMO_SECONDS=30   run without a terminal for 30 s, then check that final records
#                     appeared and the dashboard answered (exit 1 if not); used by CI
#   DEMO_PORT=8080    HTTP port of the dashboard
#   DEMO_RATE=400     events per second
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/lib.sh

port="${DEMO_PORT:-8080}"
rate="${DEMO_RATE:-400}"
headless="${DEMO_SECONDS:-}"
work="$root/.tools/demo"
mkdir -p "$work"

use_broker
echo "demo: broker $KAFKA_BOOTSTRAP_SERVERS"
echo "demo: building pulse (the first build takes a few minutes)"
swift build --product pulse 2>&1 | tail -1
pulse="$(swift build --show-bin-path)/pulse"

export PULSE_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS"
export PULSE_HTTP__LISTEN="127.0.0.1:$port"
if [ -n "$headless" ]; then
  # A fresh deployment per check, so earlier runs on the same broker do not interfere.
  run="demo-check-$(date +%s)"
  export PULSE_APP="$run" PULSE_TOPICS__INPUT="$run.events" PULSE_TOPICS__METRICS="$run.metrics" PULSE_TOPICS__DEAD_LETTER="$run.dlq"
fi
input="${PULSE_TOPICS__INPUT:-demo.events}"

serve_pid=""; generate_pid=""
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  [ -n "$generate_pid" ] && kill -INT "$generate_pid" 2>/dev/null || true
  [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null || true
  [ -n "$generate_pid" ] && wait "$generate_pid" 2>/dev/null || true
  [ -n "$serve_pid" ] && wait "$serve_pid" 2>/dev/null || true
  stop_started_broker
}
trap cleanup INT TERM EXIT

"$pulse" topics --config deploy/demo.yaml --input-partitions 4 | sed 's/^/demo: /'
"$pulse" serve --config deploy/demo.yaml --instance-id demo-1 >"$work/pulse.log" 2>&1 &
serve_pid=$!
"$pulse" generate --topic "$input" --rate "$rate" --users 5000 --content 300 --zipf 1.2 \
  --trending breaking-story --spike-every 90s --spike-factor 4 --spike-length 10s \
  --attribute country=US:5,DE:3,IN:3,BR:2,FR:2 --attribute device=mobile:6,desktop:3,tablet:1 \
  --attribute source=search:4,social:3,direct:2,newsletter:1 --attribute plan=free:8,pro:2 \
  --types page_view:60,click:15,like:8,share:4,comment:4,signup:3,conversion:2 \
  --jitter 1s --duplicates 0.01 --malformed 0.003 >"$work/generate.log" 2>&1 &
generate_pid=$!

url="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  if curl -sf "$url/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$serve_pid" 2>/dev/null; then echo "demo: pulse serve exited; its log:"; tail -20 "$work/pulse.log"; exit 1; fi
  sleep 0.5
done

metric() { curl -sf "$url/metrics" 2>/dev/null | awk -v name="$1" '$1 == name { printf "%d", $2 }'; }
# The busiest segments in their newest final 10-second window.
summary() {
  python3 - "$url" <<'PY' 2>/dev/null || true
import json, sys, urllib.parse, urllib.request
url = sys.argv[1]
def get(path):
    with urllib.request.urlopen(url + path, timeout=3) as response:
        return json.load(response)
rows = []
for entry in get("/v1/segments")["segments"]:
    segment = entry["segment"]
    path = "/v1/segments/" + urllib.parse.quote(segment, safe="") + "/metrics?window=10s"
    finals = [r for r in get(path)["records"] if r["final"]]
    if finals:
        rows.append((finals[-1]["events"], segment, finals[-1]))
rows.sort(key=lambda row: row[0], reverse=True)
for events, segment, record in rows[:5]:
    engagement = record["engagement"]["rate"] or 0
    conversion = record["conversion"]["rate"] or 0
    trend = record.get("trend") or {}
    flag = "  ANOMALY" if trend.get("anomaly") else ""
    print(f"    {segment:<26} {events:>6} events {record['users']['unique']:>6} users  engagement {engagement:.2f}  conversion {conversion:.3f}{flag}")
PY
}

cat <<TEXT

  Audience Pulse demo is running.
    dashboard   $url/
    API         $url/v1/segments   $url/v1/stream
    metrics     $url/metrics
    logs        $work/pulse.log, $work/generate.log
  Ctrl-C stops the service and the generator$( [ "${broker_started:-0}" -eq 1 ] && echo ", then the local broker").

TEXT

started=$(date +%s)
while true; do
  sleep 5
  if ! kill -0 "$serve_pid" 2>/dev/null; then echo "demo: pulse serve exited; its log:"; tail -20 "$work/pulse.log"; exit 1; fi
  echo "$(date +%T)  consumed $(metric pulse_events_consumed_total)  invalid $(metric pulse_events_invalid_total)  duplicates $(metric pulse_events_duplicate_total)  final records $(metric pulse_final_records_total); busiest segments, last final 10 s window:"
  summary
  if [ -n "$headless" ] && [ $(( $(date +%s) - started )) -ge "$headless" ]; then break; fi
done

# Headless check: final records were produced and the dashboard answers with data.
finals="$(metric pulse_final_records_total)"
page="$(curl -sf "$url/" || true)"
segments="$(curl -sf "$url/v1/segments" | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["segments"] if any(w["events"] > 0 for w in e["windows"])))' || echo 0)"
echo "demo check: final records $finals, segments with events $segments, dashboard $( [[ "$page" == *"Audience Pulse"* ]] && echo answered || echo 'did not answer')"
if [ "${finals:-0}" -gt 0 ] && [ "$segments" -gt 0 ] && [[ "$page" == *"Audience Pulse"* ]]; then
  echo "demo check: ok"
else
  echo "demo check: FAILED (see $work/pulse.log)"; exit 1
fi
