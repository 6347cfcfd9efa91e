#!/usr/bin/env bash
# Restart cost of `pulse serve` with a large state: USERS distinct users (default
# 1,000,000) spread over 4 input partitions are processed and checkpointed, the service
# is stopped (SIGTERM) and started again; prints what each partition's restore took.
# Usage: scripts/bench-restore.sh   (USERS=1000000 EVENTS=4000000 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
USERS="${USERS:-1000000}"; EVENTS="${EVENTS:-4000000}"

scripts/bootstrap.sh >/dev/null
. scripts/lib.sh
use_broker
bench_run restore
cat >"$work/pulse.yaml" <<YAML
app: $app
kafka:
  bootstrap.servers: $KAFKA_BOOTSTRAP_SERVERS
  session.timeout.ms: "6000"
  heartbeat.interval.ms: "1000"
  max.poll.interval.ms: "60000"
topics:
  input: $app.events
  metrics: $app.metrics
  dead_letter: $app.dlq
http:
  listen: 127.0.0.1:0
log:
  format: text
YAML
trap stop_started_broker EXIT
"$pulse" bench kafka-produce --topic "$app.events" --count 0 --partitions 4 >/dev/null
# Event time: the last hour, so that windows close and user state stays (30-day TTL).
start=$(( ($(date +%s) - 3600) * 1000 ))
"$pulse" generate --topic "$app.events" --count "$EVENTS" --users "$USERS" --rate $((EVENTS / 3000)) --start "$start" \
  --duplicates 0 --malformed 0 --jitter 0s 2>&1 | tail -1
"$pulse" serve --config "$work/pulse.yaml" --instance-id r >"$work/first.log" 2>&1 &
serve=$!
until grep -q "consumed=$EVENTS " "$work/first.log"; do sleep 1; kill -0 $serve || { echo "serve exited"; exit 1; }; done
sleep 6  # a checkpoint interval
kill -TERM $serve; wait $serve || true
echo "first run: $(grep -c 'restored input partition' "$work/first.log") partitions restored; stopped with $(grep -o 'committed=[^ ]*' "$work/first.log")"
began=$(date +%s%N)
"$pulse" serve --config "$work/pulse.yaml" --instance-id r >"$work/second.log" 2>&1 &
serve=$!
until grep -q "stage 1 assigned" "$work/second.log"; do sleep 0.1; done
ended=$(date +%s%N)
ps -o rss= -p $serve | awk '{printf "RSS after restore: %.0f MB\n", $1/1024}'
kill -TERM $serve; wait $serve || true
grep "restored input partition" "$work/second.log" | sed 's/.*next_offset=\([0-9-]*\) restore_ms=\([0-9]*\) stage=1 users=\([0-9]*\).*partition \([0-9]*\)/partition \4: \3 users restored in \2 ms (next offset \1)/'
echo "process start → stage 1 assigned (all partitions restored): $(( (ended - began) / 1000000 )) ms"
