#!/usr/bin/env bash
# A produce loop and a consume loop of the Kafka module under valgrind's memcheck;
# fails if either loses memory (definitely or indirectly lost > 0).
# Usage: scripts/leak-check.sh   (COUNT=20000 by default; needs a broker, like make test)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
COUNT="${COUNT:-20000}"
command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
. scripts/lib.sh
use_broker
trap stop_started_broker EXIT
swift build --product pulse >/dev/null
# valgrind 3.19 cannot read the DWARF 5 debug info of some dependencies; a copy
# without debug info is the same code.
pulse="$(mktemp -d)/pulse"
objcopy --strip-debug "$(swift build --show-bin-path)/pulse" "$pulse"
topic="leak-check-$(date +%s)"
status=0
for step in "kafka-produce --topic $topic --count $COUNT --partitions 2" "kafka-consume --topic $topic"; do
  log="$(mktemp)"
  # shellcheck disable=SC2086
  if ! valgrind --leak-check=full --show-leak-kinds=definite,indirect "$pulse" bench $step >"$log" 2>&1; then
    echo "leak-check: '$step' failed under valgrind, see $log" >&2; tail -n 20 "$log" >&2; exit 1
  fi
  grep -E "^(producer|consumer):" "$log" || true
  lost="$(grep -E "(definitely|indirectly) lost:" "$log" | sed 's/==[0-9]*== *//')"
  echo "$lost"
  if echo "$lost" | grep -vq " 0 bytes in 0 blocks"; then echo "leak-check: memory lost in '$step', see $log" >&2; status=1; fi
done
exit $status
