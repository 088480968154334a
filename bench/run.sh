#!/usr/bin/env bash
# Every benchmark behind docs/PERFORMANCE.md: the criterion hot paths, the load benchmark
# (bare hyper beside graph-vcr replay) at 1, 1,000 and 100,000 recorded interactions, and
# record mode's added latency at 1 and 32 connections (beside a bare hyper proxy and graph-vcr
# audit, to separate the cost of any extra hop from graph-vcr's own). Do not run it beside a
# fuzzer or a build: on two cores they take the CPU the figures are about.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_RUN:-5}"
cargo bench --bench hot_paths
for n in 1 1000 100000; do
  cargo bench --bench load -- --interactions "$n" --connections 32 --seconds "$seconds" --rounds 3
done
for c in 1 32; do
  cargo bench --bench load -- --record --interactions 1000 --connections "$c" --seconds "$seconds"
done
