#!/usr/bin/env bash
# graph-vcr replay against a bare hyper server, under wrk (Debian's `wrk` package: apt-get
# install wrk), in the same run, alternating, same release build. Usage:
#   [SIZES="1 100000"] bash bench/wrk/ratio.sh [ROUNDS] [SECONDS]   (defaults: 5 rounds of 10 s)
# For N = 1 and N = 100,000 recorded seed-style calls it runs ROUNDS rounds of (bare, graph-vcr),
# each `wrk -t2 -c32 -d SECONDS --latency` cycling through the N bodies (bench/wrk/cycle.lua),
# and prints per round req/s, p50 and p99 and the server's peak resident memory (VmHWM),
# graph-vcr's time to its first answer and to "cassettes indexed" (from spawn), and the
# median ratio of graph-vcr to bare over the rounds.
set -euo pipefail
rounds="${1:-5}"; seconds="${2:-10}"
# shellcheck source=../prelude.sh
source "$(dirname "$0")/../prelude.sh"
body='{"enrollmentConfigurationAssignments":[{"@odata.type":"#microsoft.graph.enrollmentConfigurationAssignment","id":"705b021c-021c-705b-1c02-5b701c025b70","target":{"@odata.type":"microsoft.graph.configurationManagerCollectionAssignmentTarget","collectionId":"collection-0"}}]}'
now_ms() { date +%s%3N; }
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$1/status"; }
run_wrk() { N="$1" wrk -t2 -c32 -d"${seconds}s" -s "$here/cycle.lua" --latency "http://127.0.0.1:$2$url"; }
parse() { awk '/Requests\/sec/ {r=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$4} END {printf "%s %s %s %s\n", r, p50, p99, (bad==""?0:bad)}'; }
echo "wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $(nproc) cores, rounds=$rounds seconds=$seconds, $(git rev-parse --short HEAD)"
for n in ${SIZES:-1 100000}; do
  dir="$work/c$n"
  "target/release/examples/replay_memory" "$n" "$dir" >/dev/null 2>&1
  ratios=()
  for round in $(seq "$rounds"); do
    "$bare" 127.0.0.1:18081 >/dev/null & bpid=$!
    until curl -s -o /dev/null "http://127.0.0.1:18081/"; do sleep 0.05; done
    read -r brps bp50 bp99 bbad < <(run_wrk "$n" 18081 | parse)
    bhwm=$(hwm "$bpid"); kill "$bpid"; wait "$bpid" 2>/dev/null || true
    log="$work/log"; start=$(now_ms)
    "$bin" replay --cassettes "$dir" --cassette bench --listen 127.0.0.1:18080 --log info >/dev/null 2>"$log" & gpid=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:18080$url")" = 204 ]; do sleep 0.005; done
    first=$(( $(now_ms) - start ))
    until grep -q "cassettes indexed" "$log"; do sleep 0.01; done
    indexed=$(( $(now_ms) - start ))
    read -r grps gp50 gp99 gbad < <(run_wrk "$n" 18080 | parse)
    ghwm=$(hwm "$gpid"); kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true
    ratio=$(awk -v g="$grps" -v b="$brps" 'BEGIN {printf "%.3f", g / b}')
    ratios+=("$ratio")
    echo "N=$n round $round: bare $brps req/s p50 $bp50 p99 $bp99 VmHWM $bhwm non-2xx $bbad | graph-vcr $grps req/s p50 $gp50 p99 $gp99 VmHWM $ghwm non-2xx $gbad first answer ${first} ms indexed ${indexed} ms | ratio $ratio"
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "N=$n median ratio $median (rounds: ${ratios[*]})"
done
