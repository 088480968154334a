#!/usr/bin/env bash
# How sensitive the wrk benchmark is, on this machine: the bare hyper server of
# bench/wrk/ratio.sh with a busy-wait of N ns per request (BARE_SPIN_NS), and with the three
# headers graph-vcr's replayed answer carries (BARE_GRAPH_HEADERS), each against the plain
# one, alternating. Usage: bash bench/wrk/calibrate.sh [ROUNDS] [SECONDS]   (defaults 2, 5)
set -euo pipefail
rounds="${1:-2}"; seconds="${2:-5}"
here="$(cd "$(dirname "$0")" && pwd)"; cd "$here/../.."
cargo build --release -q --example bare_hyper
bare=target/release/examples/bare_hyper
url=/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign
rate() {
  env "$@" "$bare" 127.0.0.1:18081 >/dev/null & local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:18081/"; do sleep 0.05; done
  N=1 wrk -t2 -c32 -d"${seconds}s" -s "$here/cycle.lua" "http://127.0.0.1:18081$url" | awk '/Requests\/sec/ {print $2}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for round in $(seq "$rounds"); do
  plain=$(rate BARE_NONE=1)
  line="round $round: plain $plain"
  for ns in 250 500 1000 2000; do
    r=$(rate BARE_SPIN_NS=$ns)
    line="$line | spin ${ns}ns $r ($(awk -v a="$r" -v b="$plain" 'BEGIN {printf "%.3f", a / b}'))"
  done
  r=$(rate BARE_GRAPH_HEADERS=1)
  echo "$line | graph-vcr's headers $r ($(awk -v a="$r" -v b="$plain" 'BEGIN {printf "%.3f", a / b}'))"
done
