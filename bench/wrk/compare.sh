#!/usr/bin/env bash
# Replay throughput and memory of two graph-vcr builds, alternating, under wrk (Debian's `wrk`
# package: apt-get install wrk). Usage:
#   bash bench/wrk/compare.sh OLD_BINARY NEW_BINARY CASSETTE_DIR CASSETTE N [ROUNDS]
# CASSETTE_DIR holds N seed-style calls (`cargo run --release --example replay_memory -- N DIR`
# builds one); wrk cycles through their N bodies (bench/wrk/cycle.lua) with 2 threads and 32
# connections for 10 s per round, once graph-vcr has indexed the cassette. Prints req/s,
# p50/p99 and VmHWM per round. Loopback only; each round ends by itself.
set -euo pipefail
old="$1"; new="$2"; dir="$3"; cassette="$4"; n="$5"; rounds="${6:-3}"
here="$(cd "$(dirname "$0")" && pwd)"
url=/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign
log="$(mktemp)"
for round in $(seq "$rounds"); do
  for bin in "$old" "$new"; do
    "$bin" replay --cassettes "$dir" --cassette "$cassette" --listen 127.0.0.1:18080 --log info >/dev/null 2>"$log" &
    pid=$!
    until grep -q "cassettes indexed" "$log"; do sleep 0.2; done
    r=$(N="$n" wrk -t2 -c32 -d10s -s "$here/cycle.lua" --latency "http://127.0.0.1:18080$url" \
      | grep -E "Requests/sec|50%|99%|Non-2xx" | tr -s ' ' | tr '\n' ' ')
    hwm=$(grep VmHWM "/proc/$pid/status" | tr -s ' \t' ' ')
    kill -TERM "$pid"; wait "$pid" || true
    echo "round $round $bin: $r$hwm"
  done
done
rm -f "$log"
