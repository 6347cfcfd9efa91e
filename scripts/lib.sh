# Sourced by the scripts in this folder (run from the repository root).
#   use_broker            KAFKA_BOOTSTRAP_SERVERS as given, else the running local broker,
#                         else a local broker started now (then broker_started=1)
#   stop_started_broker   stops the broker only if use_broker started it
#   bench_run PREFIX      the bench scripts' release build ($pulse), run name and directory
use_broker() {
  broker_started=0
  if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    if ! KAFKA_BOOTSTRAP_SERVERS="$(scripts/broker.sh status)"; then
      KAFKA_BOOTSTRAP_SERVERS="$(scripts/broker.sh start)"; broker_started=1
    fi
  fi
  export KAFKA_BOOTSTRAP_SERVERS
}

stop_started_broker() {
  if [ "${broker_started:-0}" -eq 1 ]; then scripts/broker.sh stop; fi
}

# For the bench scripts: a release build of pulse in $pulse, and this run's name
# ($app: <$1>-<epoch seconds>) and directory ($work, under .tools/bench). Needs $root.
bench_run() {
  swift build -c release --product pulse >/dev/null
  pulse="$(swift build -c release --show-bin-path)/pulse"
  app="$1-$(date +%s)"
  work="$root/.tools/bench/$app"; mkdir -p "$work"
}
