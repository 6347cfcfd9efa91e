#!/usr/bin/env bash
# The Kafka module against kcat on the same broker, topic and machine:
#   producer: `pulse bench kafka-produce` vs `kcat -P` with the same librdkafka settings
#   consumer: `pulse bench kafka-consume` vs `kcat -C -e`, reading the same topic
# Each side is timed as a whole process (start to exit), ROUNDS times, alternating.
# Usage: scripts/bench-kafka.sh   (N=2000000 ROUNDS=3 PARTITIONS=4 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
N="${N:-2000000}"; ROUNDS="${ROUNDS:-3}"; PARTITIONS="${PARTITIONS:-4}"

scripts/bootstrap.sh >/dev/null
. scripts/lib.sh
use_broker
trap stop_started_broker EXIT
b="$KAFKA_BOOTSTRAP_SERVERS"

swift build -c release --product pulse >/dev/null
pulse="$(swift build -c release --show-bin-path)/pulse"
work="$root/.tools/bench"; mkdir -p "$work"
payloads="$work/payloads-$N.tsv"
[ -f "$payloads" ] || "$pulse" bench kafka-payloads --count "$N" >"$payloads"

# The settings both sides use (the Kafka module's defaults; kcat gets them with -X).
props=(-X enable.idempotence=true -X compression.codec=lz4 -X linger.ms=5)
now() { date +%s.%N; }
rate() { python3 -c "print(round($N / ($2 - $1)))"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours_p=(); kcat_p=(); ours_c=(); kcat_c=()
run_id="$(date +%s)"
for round in $(seq 1 "$ROUNDS"); do
  ta="bench-ours-$run_id-$round"; tk="bench-kcat-$run_id-$round"
  # Both topics exist before the clocks start.
  "$pulse" bench kafka-produce --topic "$tk" --count 0 --partitions "$PARTITIONS"
  "$pulse" bench kafka-produce --topic "$ta" --count 0 --partitions "$PARTITIONS"
  t0=$(now); "$pulse" bench kafka-produce --topic "$ta" --count "$N" --json >/dev/null; t1=$(now)
  ours_p+=("$(rate "$t0" "$t1")")
  t0=$(now); kcat -P -b "$b" -t "$tk" -K $'\t' "${props[@]}" <"$payloads"; t1=$(now)
  kcat_p+=("$(rate "$t0" "$t1")")
  # Both consumers read the topic our producer wrote.
  t0=$(now); got=$("$pulse" bench kafka-consume --topic "$ta" --json); t1=$(now)
  echo "$got" | grep -q "\"messages\":$N," || { echo "bench: our consumer read $got, expected $N" >&2; exit 1; }
  ours_c+=("$(rate "$t0" "$t1")")
  t0=$(now); lines=$(kcat -C -b "$b" -t "$ta" -o beginning -e -q -X fetch.queue.backoff.ms=10 | wc -l); t1=$(now)
  [ "$lines" -ge "$N" ] || { echo "bench: kcat read $lines lines, expected $N" >&2; exit 1; }
  kcat_c+=("$(rate "$t0" "$t1")")
  echo "round $round: produce ours ${ours_p[-1]}/s kcat ${kcat_p[-1]}/s; consume ours ${ours_c[-1]}/s kcat ${kcat_c[-1]}/s" >&2
done

mp=$(median "${ours_p[@]}"); kp=$(median "${kcat_p[@]}"); mc=$(median "${ours_c[@]}"); kc=$(median "${kcat_c[@]}")
cat <<TABLE
| $N records, $PARTITIONS partitions, ~200 B JSON values | Kafka module (msg/s) | kcat (msg/s) | ratio |
|---|---|---|---|
| produce (idempotent, lz4, linger 5 ms) | $mp | $kp | $(python3 -c "print(f'{$mp/$kp:.0%}')") |
| consume (beginning to end, fetch.queue.backoff.ms=10) | $mc | $kc | $(python3 -c "print(f'{$mc/$kc:.0%}')") |

rounds: produce ours ${ours_p[*]}; kcat ${kcat_p[*]}; consume ours ${ours_c[*]}; kcat ${kcat_c[*]}
librdkafka $(pkg-config --modversion rdkafka), broker $b, $(nproc) cores, $(date -u +%Y-%m-%d)
TABLE
