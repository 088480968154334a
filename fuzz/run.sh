#!/usr/bin/env bash
# Runs every fuzz target for a set time (default 60 s each), seeded from fuzz/corpus/.
# Not part of CI. Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain the
# sanitizer flags are enabled with RUSTC_BOOTSTRAP=1. Record how long each ran clean in
# docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
for target in canonical_key check import redact prepared; do
  echo "== $target for ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10
done
