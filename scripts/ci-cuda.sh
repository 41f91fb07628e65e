#!/usr/bin/env bash
# CI for ogm-gpu's `cuda` feature, on a machine with or without a GPU:
#   1. installs the toolchain (scripts/cuda-toolchain.sh: pinned nvcc 13.0 wheels, libcuda.so);
#   2. builds the crate and all its targets (tests, bench binary) with `--features cuda`, and
#      runs clippy and rustdoc on them with warnings denied;
#   3. runs its tests: the CPU ones run (including tests/emulated.rs, the kernels' CUDA source
#      compiled for the CPU), the device ones print why they skip when there is no GPU
#      (OGM_GPU_REQUIRED=1 turns a missing device into a failure);
#   4. validates every generated PTX file with ptxas for sm_80 and sm_90, and checks that its
#      ISA version is one the GPU machine's driver (580, CUDA 13.0) loads (at most 9.0).
# Usage: scripts/ci-cuda.sh   (honours CARGO_TARGET_DIR and OGM_CUDA_HOME)
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/cuda-toolchain.sh)"

echo "== build (--features cuda, all targets)"
cargo build -p ogm-gpu --features cuda --all-targets
# The trainer with the CUDA backend (`ogm train --device cuda`), the engine's device test and
# the training-step benchmark.
cargo build -p ogm-host --features cuda --all-targets
echo "== clippy (--features cuda)"
cargo clippy -p ogm-gpu --no-deps --features cuda --all-targets -- -D warnings
cargo clippy -p ogm-host --no-deps --features cuda --all-targets -- -D warnings

echo "== docs (--features cuda)"
RUSTDOCFLAGS="-D warnings" cargo doc -p ogm-gpu --no-deps --features cuda

echo "== tests (--features cuda)"
# The test binaries link libcuda.so.1. Where no driver is installed, load the unpacked library
# (its cuInit then reports "no CUDA-capable device" and the device tests skip; --nocapture
# shows each skip reason). Where a driver is installed, use it: the unpacked one would shadow
# it.
# ogm-host: the engine's device test (skips without a GPU) and the emulated GPU backend.
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then
  cargo test -p ogm-gpu --features cuda -- --nocapture
  cargo test -p ogm-host --features cuda --test engine_gpu_cuda --test engine_gpu_emulated -- --nocapture
else
  LD_LIBRARY_PATH="$OGM_LIBCUDA_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test -p ogm-gpu --features cuda -- --nocapture
  LD_LIBRARY_PATH="$OGM_LIBCUDA_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    cargo test -p ogm-host --features cuda --test engine_gpu_cuda --test engine_gpu_emulated -- --nocapture
fi

echo "== PTX validation (ptxas sm_80, sm_90)"
# Ask cargo where this build's script wrote its output (no guessing among stale build dirs).
out_dir="$(cargo build -p ogm-gpu --features cuda --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
dirs = [m["out_dir"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "build-script-executed" and "ogm-gpu" in m["package_id"]]
print(dirs[-1] if dirs else "")')"
[[ -n "$out_dir" && -d "$out_dir" ]] || {
  echo "ci-cuda: could not find ogm-gpu's build output directory" >&2
  exit 1
}
shopt -s nullglob
ptx_files=("$out_dir"/*.ptx)
kernels=(gpu/kernels/*.cu)
if [[ ${#ptx_files[@]} -ne ${#kernels[@]} ]]; then
  echo "ci-cuda: ${#kernels[@]} kernel files but ${#ptx_files[@]} PTX files in $out_dir" >&2
  exit 1
fi
status=0
for ptx in "${ptx_files[@]}"; do
  version="$(awk '$1 == ".version" { print $2; exit }' "$ptx")"
  if ! python3 -c "import sys; sys.exit(0 if float('$version') <= 9.0 else 1)"; then
    echo "FAIL $(basename "$ptx"): PTX ISA $version is newer than the GPU machine's driver loads (9.0)" >&2
    status=1
  fi
  for arch in sm_80 sm_90; do
    if "$PTXAS" -arch="$arch" -o /dev/null "$ptx"; then
      echo "ok   $(basename "$ptx") ISA $version $arch"
    else
      echo "FAIL $(basename "$ptx") $arch" >&2
      status=1
    fi
  done
done
exit $status
