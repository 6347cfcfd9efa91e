#!/usr/bin/env bash
# Starts and stops the local Kafka-compatible test broker (Tansu, memory storage) on
# 127.0.0.1. Its data lives only as long as the process.
#   scripts/broker.sh start [PORT]   start (default port 19092), wait until it answers
#                                    metadata, print the bootstrap address on stdout
#   scripts/broker.sh stop           stop the broker started by this script
#   scripts/broker.sh status         print the address if running, exit 1 otherwise
# Files: .tools/broker.pid, .tools/broker.port, .tools/broker.log
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
tansu="$tools/bin/tansu"
pidfile="$tools/broker.pid"
portfile="$tools/broker.port"
logfile="$tools/broker.log"

log() { printf 'broker: %s\n' "$*" >&2; }

running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid; pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

answers_metadata() { kcat -L -b "$1" -m 2 >/dev/null 2>&1; }

case "${1:-}" in
  start)
    port="${2:-19092}"
    if pid="$(running_pid)"; then
      addr="127.0.0.1:$(cat "$portfile")"
      log "already running (pid $pid) at $addr"
      echo "$addr"; exit 0
    fi
    [ -x "$tansu" ] || { log "$tansu is missing; run scripts/bootstrap.sh first"; exit 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      log "port $port on 127.0.0.1 is taken by another process; pass another port"; exit 1
    fi
    mkdir -p "$tools"
    url="tcp://127.0.0.1:$port"
    nohup "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" \
      --storage-engine memory://tansu/ >"$logfile" 2>&1 &
    echo $! >"$pidfile"; echo "$port" >"$portfile"
    addr="127.0.0.1:$port"
    for _ in $(seq 1 100); do
      if answers_metadata "$addr"; then log "started (pid $(cat "$pidfile")) at $addr"; echo "$addr"; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { log "broker exited; see $logfile"; tail -n 20 "$logfile" >&2; exit 1; }
      sleep 0.1
    done
    log "broker did not answer metadata within 10 s; see $logfile"; exit 1
    ;;
  stop)
    if pid="$(running_pid)"; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped (pid $pid)"
    else
      log "not running"
    fi
    rm -f "$pidfile" "$portfile"
    ;;
  status)
    if pid="$(running_pid)"; then echo "127.0.0.1:$(cat "$portfile")"; else exit 1; fi
    ;;
  *)
    echo "usage: $0 start [PORT] | stop | status" >&2; exit 2 ;;
esac
