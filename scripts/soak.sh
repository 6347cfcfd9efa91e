#!/usr/bin/env bash
# A long run of `pulse serve` (release build, pulse.example.yaml's job: five
# combinations, two rules, 1m and 10m/1m windows, every metric family, exactly_once)
# under a live synthetic audience with periodic spikes, against the local broker. Every
# INTERVAL it records the service's RSS and CPU, what it consumed, its lag, and the
# event → metric and window close → final quantiles of that interval (from the
# Prometheus histograms' bucket deltas: upper bucket bounds). At the end it prints a
# summary: is memory flat once the 10-minute windows are all open, does latency hold,
# is anything lost or late.
# Usage: scripts/soak.sh   (DURATION=30m RATE=5000 USERS=200000 INTERVAL=60 by default;
# SPIKES='--spike-every 5m --spike-factor 4 --spike-length 20s', empty for none). The
# service sees this environment, so PULSE_… overrides apply, e.g. PULSE_API__RETENTION=15m
# (the read model keeps an hour of records by default: its memory grows for that long).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-30m}"; RATE="${RATE:-5000}"; USERS="${USERS:-200000}"; INTERVAL="${INTERVAL:-60}"
SPIKES="${SPIKES---spike-every 5m --spike-factor 4 --spike-length 20s}"
PORT="${PORT:-18480}"

scripts/bootstrap.sh >/dev/null
. scripts/lib.sh
use_broker
bench_run soak
# pulse.example.yaml with this run's names and port.
sed -e "s/^app: .*/app: $app/" \
    -e "s/bootstrap.servers: .*/bootstrap.servers: $KAFKA_BOOTSTRAP_SERVERS/" \
    -e "s/input: audience.events .*/input: $app.events/" \
    -e "s/metrics: audience.metrics .*/metrics: $app.metrics/" \
    -e "s/dead_letter: .*/dead_letter: $app.dlq/" \
    -e "s/listen: 127.0.0.1:8080/listen: 127.0.0.1:$PORT/" \
    -e "s/format: json/format: text/" \
    pulse.example.yaml >"$work/pulse.yaml"
"$pulse" bench kafka-produce --topic "$app.events" --count 0 --partitions 4 >/dev/null 2>&1 || true
"$pulse" serve --config "$work/pulse.yaml" --instance-id soak >"$work/serve.log" 2>&1 &
serve=$!
generator=""
trap 'kill $serve $generator 2>/dev/null; wait $serve 2>/dev/null; stop_started_broker' EXIT
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
# shellcheck disable=SC2086
"$pulse" generate --brokers "$KAFKA_BOOTSTRAP_SERVERS" --topic "$app.events" --rate "$RATE" --users "$USERS" \
  --duration "$DURATION" $SPIKES >"$work/generate.log" 2>&1 &
generator=$!
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); rate $RATE/s, $USERS users, $DURATION, spikes: ${SPIKES:-none}"
echo "service log: $work/serve.log; samples: $work/samples.tsv"

hz="$(getconf CLK_TCK)"
started="$(date +%s)"
scrape() { curl -fs "http://127.0.0.1:$PORT/metrics" || true; }
# The interval's quantile q of histogram $1 from two scrapes' cumulative buckets: the
# smallest bucket bound holding at least q of the observations in between.
quantile() {
  awk -v name="$1" -v q="$2" '
    index($0, name "_bucket{") == 1 {
      match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
      if (FILENAME == ARGV[1]) before[le] += $NF; else { after[le] += $NF; if (!(le in seen)) { order[++n] = le; seen[le] = 1 } }
    }
    END {
      total = after["+Inf"] - before["+Inf"]
      if (total <= 0) { print "-"; exit }
      for (i = 1; i <= n; i++) if (after[order[i]] - before[order[i]] >= q * total) { print order[i]; exit }
    }' "$3" "$4"
}
# The interval's mean of histogram $1 (its _sum and _count deltas).
mean() {
  awk -v name="$1" '
    index($0, name "_sum") == 1 { if (FILENAME == ARGV[1]) s0 = $NF; else s1 = $NF }
    index($0, name "_count") == 1 { if (FILENAME == ARGV[1]) c0 = $NF; else c1 = $NF }
    END { if (c1 > c0) printf "%.2f", (s1 - s0) / (c1 - c0); else print "-" }' "$2" "$3"
}
sum() { awk -v name="$1" 'index($0, name) == 1 && $1 !~ /_bucket/ { s += $NF } END { printf "%d", s }' "$2"; }
printf 'minute\trss_mb\tcpu_s\tconsumed\tlate\tinvalid\tduplicates\tfinal_records\tlag\tevent_to_metric_mean_s\tevent_to_metric_p99_s\tend_to_final_mean_s\tend_to_final_max_s\trebalances\n' >"$work/samples.tsv"
scrape >"$work/previous.prom"
while kill -0 "$generator" 2>/dev/null; do
  sleep "$INTERVAL"
  kill -0 "$serve" 2>/dev/null || { echo "the service exited; see $work/serve.log"; exit 1; }
  scrape >"$work/current.prom"
  rss="$(awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$serve/status")"
  cpu="$(awk -v hz="$hz" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$serve/stat")"
  printf '%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$(awk -v s="$started" -v n="$(date +%s)" 'BEGIN { print (n - s) / 60 }')" "$rss" "$cpu" \
    "$(sum pulse_events_consumed_total "$work/current.prom")" "$(sum pulse_events_late_total "$work/current.prom")" \
    "$(sum pulse_events_invalid_total "$work/current.prom")" "$(sum pulse_events_duplicate_total "$work/current.prom")" \
    "$(sum pulse_final_records_total "$work/current.prom")" "$(sum 'pulse_consumer_lag{stage="1"' "$work/current.prom")" \
    "$(mean pulse_event_to_metric_seconds "$work/previous.prom" "$work/current.prom")" \
    "$(quantile pulse_event_to_metric_seconds 0.99 "$work/previous.prom" "$work/current.prom")" \
    "$(mean pulse_window_close_delay_seconds "$work/previous.prom" "$work/current.prom")" \
    "$(quantile pulse_window_close_delay_seconds 1.0 "$work/previous.prom" "$work/current.prom")" \
    "$(sum pulse_rebalances_total "$work/current.prom")" | tee -a "$work/samples.tsv"
  mv "$work/current.prom" "$work/previous.prom"
done
tail -3 "$work/generate.log"
awk -F'\t' 'NR > 1 { n++; rss[n] = $2; minute[n] = $1; cpu = $3; consumed = $4; late = $5; if ($11 != "-" && $11 + 0 > p99) p99 = $11 + 0; if ($10 != "-") { if (low == "" || $10 + 0 < low) low = $10 + 0; if ($10 + 0 > high) high = $10 + 0 } if ($13 != "-" && $13 + 0 > worstClose) worstClose = $13 + 0 }
  END {
    if (n == 0) exit
    for (i = 1; i <= n; i++) { if (rss[i] > peak) peak = rss[i]; if (minute[i] >= 12 && !after) after = rss[i] }
    printf "summary: %d events consumed, %d late; CPU %.1f s (%.1f CPU s per million events)\n", consumed, late, cpu, consumed ? cpu / consumed * 1e6 : 0
    printf "summary: RSS %d MB at the first sample, %d MB at minute 12 (every 10m window open), %d MB at the end, peak %d MB\n", rss[1], after, rss[n], peak
    printf "summary: worst sample p99 event -> metric <= %s s; worst window end -> final <= %s s (bucket bounds; a window closes max_out_of_orderness, 5 s, after its end)\n", p99, worstClose
    printf "summary: event -> metric mean per sample %s-%s s\n", low, high
  }' "$work/samples.tsv"
