#!/usr/bin/env bash
# One training sample through the data pipeline, one clip at a time on one thread: ours
# (host/benches/data_pipeline.rs) and the official CramedDataset.__getitem__ in Python
# (scripts/bench_torch_data.py: librosa, PIL, torchvision) on the same files, in one run, then
# the ratio. The files have CREMA-D's media shapes (16 kHz mono WAVs of 2.5 s, 480x360 JPEG
# frames) and are written once into a temporary folder by the Rust side.
#
# Usage: scripts/bench-data.sh [CLIPS] [ROUNDS]
#   CLIPS (default 120) timed per pass, ROUNDS passes (default 3, the first a warm-up).
#   PYTHON selects the interpreter with torch, torchvision and librosa (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
clips=${1:-120}
rounds=${2:-3}
python=${PYTHON:-python3}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

cargo bench -p ogm-host --bench data_pipeline --no-run >/dev/null 2>&1 || cargo bench -p ogm-host --bench data_pipeline --no-run
rust_line=$(cargo bench -q -p ogm-host --bench data_pipeline -- --data "$data/clips" --clips "$clips" --rounds "$rounds" | grep '^RESULT')
echo "$rust_line"
py_line=$(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$python" scripts/bench_torch_data.py --data "$data/clips" --clips "$clips" --rounds "$rounds" | grep '^RESULT')
echo "$py_line"

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
awk -v o="$(field "$rust_line" ms_per_clip)" -v t="$(field "$py_line" ms_per_clip)" \
    -v oa="$(field "$rust_line" audio_ms)" -v ta="$(field "$py_line" audio_ms)" \
    -v ov="$(field "$rust_line" visual_ms)" -v tv="$(field "$py_line" visual_ms)" \
    'BEGIN { printf "per clip, one thread: ogm-rs %.2f ms, official %.2f ms: %.2fx (audio %.2f / %.2f ms: %.2fx; visual %.2f / %.2f ms: %.2fx)\n", o, t, t / o, oa, ta, ta / oa, ov, tv, tv / ov }'
