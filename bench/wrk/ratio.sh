#!/usr/bin/env bash
# graph-vcr replay against a bare hyper server, under wrk (Debian's `wrk` package: apt-get
# install wrk), in the same run, alternating, same release build. Usage:
#   [SIZES="1 100000"] [PAIRS=4] bash bench/wrk/ratio.sh [ROUNDS] [SECONDS]   (defaults: 5 rounds, 6 s)
# For N = 1 and N = 100,000 recorded seed-style calls: the bare server runs for the whole of
# each size; each round starts graph-vcr afresh (its time to the first answer and to
# "cassettes indexed" are measured from spawn), gives each server one warm-up burst (not
# counted: graph-vcr's first pass over N calls touches each for the first time), then PAIRS
# pairs of `wrk -t2 -c32 -d SECONDS --latency` bursts, one on each server, in alternating
# order, cycling through the N bodies (bench/wrk/cycle.lua). Each pair gives a ratio
# (graph-vcr's req/s over bare's measured seconds apart), so the machine's drift, which is
# large on shared machines, falls on both sides alike. It prints every pair (req/s, p50,
# p99), each server's peak resident memory (VmHWM) per round, and the median ratio over all
# pairs with its quartiles.
set -euo pipefail
rounds="${1:-5}"; seconds="${2:-6}"; pairs="${PAIRS:-4}"
# shellcheck source=../prelude.sh
source "$(dirname "$0")/../prelude.sh"
body='{"enrollmentConfigurationAssignments":[{"@odata.type":"#microsoft.graph.enrollmentConfigurationAssignment","id":"705b021c-021c-705b-1c02-5b701c025b70","target":{"@odata.type":"microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"collection-0"}}]}'
now_ms() { date +%s%3N; }
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$1/status"; }
run_wrk() { N="$1" wrk -t2 -c32 -d"$3" -s "$here/cycle.lua" --latency "http://127.0.0.1:$2$url"; }
parse() { awk '/Requests\/sec/ {r=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%s %s %s %s\n", r, p50, p99, (bad==""?0:bad)}'; }
# The median and quartiles of the numbers on stdin.
quartiles() { sort -n | awk '{a[NR]=$1} END {printf "%s (quartiles %s – %s, %d pairs)", a[int((NR+1)/2)], a[int((NR+3)/4)], a[int((3*NR+1)/4)], NR}'; }
echo "wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, rounds=$rounds pairs=$pairs seconds=$seconds, $(git rev-parse --short HEAD)"
for n in ${SIZES:-1 100000}; do
  dir="$work/c$n"
  "target/release/examples/replay_memory" "$n" "$dir" >/dev/null 2>&1
  "$bare" 127.0.0.1:18081 >/dev/null & bpid=$!
  until curl -s -o /dev/null "http://127.0.0.1:18081/"; do sleep 0.05; done
  run_wrk "$n" 18081 2s >/dev/null
  ratios=()
  for round in $(seq "$rounds"); do
    log="$work/log"; start=$(now_ms)
    "$bin" replay --cassettes "$dir" --cassette bench --listen 127.0.0.1:18080 --log info >/dev/null 2>"$log" & gpid=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:18080$url")" = 204 ]; do sleep 0.005; done
    first=$(( $(now_ms) - start ))
    until grep -q "cassettes indexed" "$log"; do sleep 0.01; done
    indexed=$(( $(now_ms) - start ))
    run_wrk "$n" 18080 2s >/dev/null
    echo "N=$n round $round: graph-vcr first answer ${first} ms, indexed ${indexed} ms"
    for pair in $(seq "$pairs"); do
      if (( (round + pair) % 2 )); then order="18081 18080" first_="bare first"; else order="18080 18081" first_="graph-vcr first"; fi
      for port in $order; do
        read -r rps p50 p99 bad < <(run_wrk "$n" "$port" "${seconds}s" | parse)
        if [ "$port" = 18081 ]; then brps=$rps b="bare $rps req/s p50 $p50 p99 $p99 non-2xx $bad"
        else grps=$rps g="graph-vcr $rps req/s p50 $p50 p99 $p99 non-2xx $bad"; fi
      done
      ratio=$(awk -v g="$grps" -v b="$brps" 'BEGIN {printf "%.3f", g / b}')
      ratios+=("$ratio")
      echo "  pair $pair ($first_): $b | $g | ratio $ratio"
    done
    echo "  graph-vcr VmHWM $(hwm "$gpid")"
    kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true
  done
  echo "N=$n bare VmHWM $(hwm "$bpid")"
  kill "$bpid"; wait "$bpid" 2>/dev/null || true
  echo "N=$n median ratio $(printf '%s\n' "${ratios[@]}" | quartiles)"
done
