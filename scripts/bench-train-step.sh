#!/usr/bin/env bash
# One training step of the paper model (batch 16, CREMA-D shapes, concat, SGD): the Rust
# engine (host/benches/train_step.rs) and PyTorch CPU (scripts/bench_torch_step.py) in one
# run, same thread count, then the throughput ratio.
#
# Usage: scripts/bench-train-step.sh [THREADS] [STEPS]
#   THREADS defaults to the number of cores, STEPS (timed, after one warm-up) to 5.
#   PYTHON selects the interpreter with torch (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-$(nproc)}
steps=${2:-5}
python=${PYTHON:-python3}

cargo bench -p ogm-host --bench train_step --no-run >/dev/null 2>&1 || cargo bench -p ogm-host --bench train_step --no-run
rust_line=$(RAYON_NUM_THREADS=$threads cargo bench -q -p ogm-host --bench train_step -- --steps "$steps" | grep '^RESULT')
echo "$rust_line"
torch_line=$(OMP_NUM_THREADS=$threads "$python" scripts/bench_torch_step.py --threads "$threads" --steps "$steps" | grep '^RESULT')
echo "$torch_line"

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
ours=$(field "$rust_line" samples_per_s)
theirs=$(field "$torch_line" samples_per_s)
awk -v o="$ours" -v t="$theirs" -v th="$threads" \
    -v ro="$(field "$rust_line" peak_rss_mib)" -v rt="$(field "$torch_line" peak_rss_mib)" \
    'BEGIN { printf "threads %d: ogm-rs %.2f samples/s, PyTorch %.2f samples/s, ratio %.2fx; peak RSS %d MiB vs %d MiB\n", th, o, t, o / t, ro, rt }'
