#!/usr/bin/env bash
# Memory over graph-vcr replay's whole life, its end-of-run report included, which
# bench/wrk/ratio.sh's VmHWM (read before the server is stopped) does not see. Usage:
#   [SIZES="1 100000"] bash bench/wrk/lifetime.sh [SECONDS]   (default 6 s of load)
# For each size it makes N recorded seed-style calls, starts replay with --report-json, drives
# it with wrk as ratio.sh does (every call played), stops it with SIGTERM and prints VmHWM
# under load, the peak resident memory over the process's life (GNU time's maximum RSS), the
# time from SIGTERM to exit (the report: built, judged, written) and the report's size.
set -euo pipefail
seconds="${1:-6}"
# shellcheck source=../prelude.sh
source "$(dirname "$0")/../prelude.sh"
now_ms() { date +%s%3N; }
for n in ${SIZES:-1 100000}; do
  dir="$work/c$n"
  target/release/examples/replay_memory "$n" "$dir" >/dev/null 2>&1
  log="$work/log"; : > "$log"
  /usr/bin/time -f "%M" -o "$work/maxrss" "$bin" replay --cassettes "$dir" --cassette bench \
    --listen 127.0.0.1:18082 --log info --report-json "$work/report.json" >/dev/null 2>"$log" &
  until grep -q "cassettes indexed" "$log"; do sleep 0.05; done
  pid=$(pgrep -f -- "--listen 127.0.0.1:18082" | grep -v "^$!$" | tail -1)
  rps=$(N="$n" wrk -t2 -c32 -d"${seconds}s" -s "$here/cycle.lua" "http://127.0.0.1:18082$url" | awk '/Requests\/sec/ {print $2}')
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  start=$(now_ms); kill -TERM "$pid"; wait || true; stopped=$(( $(now_ms) - start ))
  echo "N=$n: $rps req/s; VmHWM under load $hwm kB; peak over its life $(cat "$work/maxrss") kB; SIGTERM to exit $stopped ms; report $(stat -c %s "$work/report.json") bytes"
done
