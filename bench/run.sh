#!/usr/bin/env bash
# Every benchmark behind docs/PERFORMANCE.md: the criterion hot paths, then the load benchmark
# (bare hyper beside graph-vcr replay) at 1 and at 100,000 recorded interactions.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_RUN:-5}"
cargo bench --bench hot_paths
for n in 1 1000 100000; do
  cargo bench --bench load -- --interactions "$n" --connections 32 --seconds "$seconds"
done
