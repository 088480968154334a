#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a figure that does not move with
# the machine's load, for telling two builds apart when wrk's rounds (bench/wrk/ratio.sh)
# cannot. Usage:
#   [SIZES="1"] bash bench/callgrind/per_request.sh [SECONDS]   (default 8 s of load each)
# For the bare hyper server and graph-vcr replay (N recorded calls, as ratio.sh makes them),
# each under callgrind with `wrk -t1 -c4` cycling the N bodies, it prints the instructions per
# request in the runtime's task polls (`Context::run_task`, inclusive: everything the worker
# threads do for a request but wait; the kernel's side is not counted), inside hyper's
# connection dispatcher (`Dispatcher::poll_catch`: reading and parsing the request, the
# service, writing the answer) and, for graph-vcr, inside `Proxy::handle`. Requests are wrk's count (a few in flight at the
# end are not, under 0.1% of the total).
set -euo pipefail
seconds="${1:-8}"
# shellcheck source=../prelude.sh
source "$(dirname "$0")/../prelude.sh"
# Inclusive instructions of the function whose name ends with $2, in callgrind output $1.
# awk reads to the end: leaving early would end callgrind_annotate by SIGPIPE, which
# pipefail turns into the script's failure.
inclusive() {
  callgrind_annotate --inclusive=yes "$1" 2>/dev/null |
    awk -v f="$2" '!found && index($0, f " [") { gsub(",", "", $1); print $1; found = 1 }'
}
load() { N="$1" wrk -t1 -c4 -d"${seconds}s" -s "$root/bench/wrk/cycle.lua" "http://127.0.0.1:$2$url" | awk '/requests in/ {print $1}'; }
wait_for() { until grep -q "$2" "$1" 2>/dev/null; do sleep 0.2; done; }
echo "valgrind $(valgrind --version), $(git rev-parse --short HEAD), ${seconds} s of wrk -t1 -c4 each"
valgrind --tool=callgrind --callgrind-out-file="$work/bare.out" "$bare" 127.0.0.1:18081 >"$work/bare.log" 2>&1 & pid=$!
wait_for "$work/bare.log" "listening on"
requests=$(load 1 18081); kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
bare_per=$(( $(inclusive "$work/bare.out" "Dispatcher<D,Bs,I,T>::poll_catch") / requests ))
bare_task=$(( $(inclusive "$work/bare.out" "worker::Context::run_task") / requests ))
echo "bare hyper: $requests requests, $bare_task instructions per request in task polls, $bare_per in the dispatcher"
for n in ${SIZES:-1}; do
  dir="$work/c$n"
  "target/release/examples/replay_memory" "$n" "$dir" >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file="$work/g$n.out" "$bin" replay --cassettes "$dir" \
    --cassette bench --listen 127.0.0.1:18080 --log info >/dev/null 2>"$work/g.log" & pid=$!
  wait_for "$work/g.log" "cassettes indexed"
  requests=$(load "$n" 18080); kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  per=$(( $(inclusive "$work/g$n.out" "Dispatcher<D,Bs,I,T>::poll_catch") / requests ))
  handle=$(( $(inclusive "$work/g$n.out" "graph_vcr::proxy::Proxy::handle::{{closure}}") / requests ))
  task=$(( $(inclusive "$work/g$n.out" "worker::Context::run_task") / requests ))
  echo "graph-vcr N=$n: $requests requests, $task instructions per request in task polls ($(awk -v g="$task" -v b="$bare_task" 'BEGIN {printf "%.2f", g / b}') of bare's), $per in the dispatcher ($(awk -v g="$per" -v b="$bare_per" 'BEGIN {printf "%.2f", g / b}')), $handle in Proxy::handle"
done
