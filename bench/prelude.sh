# Sourced by the load scripts (bench/wrk/ratio.sh, bench/wrk/lifetime.sh,
# bench/callgrind/per_request.sh): the repository root as the working directory, the release
# builds they run, a scratch directory removed on exit, and the benchmark's assign path.
# GRAPH_VCR=PATH runs another build of graph-vcr instead (an older commit's, to compare),
# against this checkout's bare server and cassettes.
here="$(cd "$(dirname "$0")" && pwd)"; root="$here/../.."
cd "$root"
cargo build --release -q --bin graph-vcr --example bare_hyper --example replay_memory
bin="${GRAPH_VCR:-target/release/graph-vcr}"; bare=target/release/examples/bare_hyper
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
url=/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign
