#!/usr/bin/env bash
# The emulated GPU tests again with the CUDA kernels built under AddressSanitizer
# (OGM_EMU_SANITIZE=address, see gpu/src/engine/emu.rs): device memory is host memory in the
# emulator, so a kernel that reads or writes past one of its buffers, or past a shared array,
# otherwise goes unnoticed; here it stops the test with a report naming the kernel's line.
# The engine's emulator library is loaded into the Rust test process, which must load the
# sanitizer's runtime first: only the test executables get it (cargo's runner), since the
# compiler itself does not run under it. Skips with a message where g++ has no libasan.
# Usage: scripts/emu-sanitize.sh [cargo test flags, e.g. --release]
set -euo pipefail
cd "$(dirname "$0")/.."
cxx="${CXX:-g++}"
asan="$("$cxx" -print-file-name=libasan.so 2>/dev/null || true)"
if [[ -z "$asan" || ! -e "$asan" || "$asan" == "libasan.so" ]]; then
  echo "skipping: $cxx has no AddressSanitizer runtime (libasan.so)"
  exit 0
fi
export OGM_EMU_SANITIZE=address
# Leaks are the test harness's business, not the kernels'; stop at the first error.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1"
runner="CARGO_TARGET_$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')_RUNNER"
export "$runner"="env LD_PRELOAD=$asan"
cargo test "$@" -p ogm-gpu --test emulated --test engine_ogm_emulated
# Every engine test but the launch-order one (the same kernels four times over), and the
# trainer's step tests (its kernels; the whole-loop tests add no kernel, only minutes).
cargo test "$@" -p ogm-host --test engine_gpu_emulated -- --skip any_launch_order
cargo test "$@" -p ogm-host --test train_gpu_emulated -- queued a_bad_label
