#!/usr/bin/env bash
# The device check of ogm-gpu: build here, run on the GPU machine in one call.
#
#   scripts/device-check.sh build   (here, no GPU needed)
#       Builds the release test executable `device` (tests/device.rs: every kernel against the
#       CPU reference, and a full ResNet-18-sized step) and the benchmark `ogm-gpu-bench` with
#       `--features cuda`, the engine's device test `engine-device` (host/tests/engine_gpu_cuda.rs:
#       every operation of the GPU backend and a whole training step against the CPU engine),
#       the trainer's device test `train-device` (host/tests/train_gpu_cuda.rs: queued OGM-GE
#       steps against the CPU steps, the log ring, a bad label's report, the whole loop with an
#       exact resume, and that the steady state waits only to read the log ring)
#       the training-step benchmark `ogm-step-bench` (the paper model, batch 64; run three
#       times: FP32, `--precision tf32` and `--precision bf16`) and the trainer itself, `ogm`
#       (run.sh trains the paper model end to end with `ogm train --device cuda` on synthetic
#       clips of CREMA-D's shapes, FP32 and TF32), strips them and copies them, the PyTorch baseline
#       (scripts/torch_official_modulation.py) and scripts/device/run.sh into ./device-bundle/
#       (git-ignored; must stay under the device tool's 64 MiB carry limit; checked).
#   scripts/device-check.sh run     (on the GPU machine; same as device-bundle/run.sh)
#       Runs the device tests (a missing device fails them: OGM_GPU_REQUIRED=1), the benchmarks
#       and the PyTorch baselines (scripts/torch_official_modulation.py, and
#       scripts/bench_torch_step_gpu.py for the full step) in the same call, and prints the agreement lines, the timings
#       and the ratios (our TF32 and BF16 steps against PyTorch's eager_tf32 and eager_bf16
#       variants too). The three test executables and the end-to-end training run side by
#       side (none of them is timed); the benchmarks run alone, one after the other. Writes the
#       full log, results.json and raw.tgz (every section's own output, re-packed after each
#       section: the tool returns at most 8 files) to $OUT when set.
#
# How a session with a GPU uses it with the device tool (the GPU machine has the NVIDIA driver
# 580 / CUDA 13.0 and PyTorch, but no Rust: nothing is built there):
#   1. here:  scripts/device-check.sh build
#   2. device tool `run` with
#        command:   bash device-bundle/run.sh
#        carry:     ["device-bundle"]
#        timeout_s: 600
#      The working tree comes along anyway; `carry` adds the ignored bundle. The whole run takes
#      about two minutes on an H100 for part 1; the engine's tests (the TF32 and BF16 GEMM and
#      step cases among them), the step benchmark in FP32, TF32 and BF16 and the PyTorch step
#      baseline (six variants, eager_bf16 and torch.compile among them), the implicit-GEMM
#      step and the two end-to-end trainings add an estimated six to eight minutes (not yet
#      measured): more than one 600 s call may hold. run.sh runs the most important sections
#      first (tests, e2e, the FP32 step and PyTorch's), keeps every section's output in $OUT as
#      it goes, and takes ONLY=tests,e2e,step,modulation,variants (comma-separated) and
#      TORCH_VARIANTS=eager_fp32,... to split the run, e.g. two calls:
#        ONLY=tests,e2e bash device-bundle/run.sh
#        ONLY=step,modulation,variants TORCH_VARIANTS=eager_fp32,eager_tf32,eager_bf16 bash device-bundle/run.sh
#      With device time to spare, ONLY=sanitize runs the engine's and part 1's device tests
#      under compute-sanitizer (memcheck, racecheck, synccheck; about 8 minutes at most).
#   3. read the printed summary (also under the returned files: device-check.log,
#      results.json, raw.tgz), then call give_back unless rerunning at once.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=device-bundle
LIMIT=$((60 * 1024 * 1024)) # under the tool's 64 MiB, with room for the working tree's copy

build() {
  eval "$(scripts/cuda-toolchain.sh)"
  local json
  json="$(mktemp)"
  echo "== building the device test and the benchmark (release, --features cuda)"
  cargo test -p ogm-gpu --features cuda --release --test device --no-run \
    --message-format=json-render-diagnostics >"$json"
  cargo build -p ogm-gpu --features cuda --release --bin ogm-gpu-bench \
    --message-format=json-render-diagnostics >>"$json"
  echo "== building the engine's device test and the training-step benchmark (release, --features cuda)"
  cargo test -p ogm-host --features cuda --release --test engine_gpu_cuda --no-run \
    --message-format=json-render-diagnostics >>"$json"
  cargo test -p ogm-host --features cuda --release --test train_gpu_cuda --no-run \
    --message-format=json-render-diagnostics >>"$json"
  cargo build -p ogm-host --features cuda --release --bin ogm-step-bench --bin ogm \
    --message-format=json-render-diagnostics >>"$json"
  local test_exe bench_exe engine_exe step_exe train_exe ogm_exe
  read -r test_exe bench_exe engine_exe step_exe train_exe ogm_exe < <(python3 - "$json" <<'PY'
import json, sys
test = bench = engine = step = train = ogm = ""
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    if m["target"]["name"] == "device" and m["profile"]["test"]:
        test = m["executable"]
    if m["target"]["name"] == "ogm-gpu-bench":
        bench = m["executable"]
    if m["target"]["name"] == "engine_gpu_cuda" and m["profile"]["test"]:
        engine = m["executable"]
    if m["target"]["name"] == "ogm-step-bench":
        step = m["executable"]
    if m["target"]["name"] == "train_gpu_cuda" and m["profile"]["test"]:
        train = m["executable"]
    if m["target"]["name"] == "ogm" and not m["profile"]["test"]:
        ogm = m["executable"]
print(test, bench, engine, step, train, ogm)
PY
)
  rm -f "$json"
  [[ -x "$test_exe" && -x "$bench_exe" && -x "$engine_exe" && -x "$step_exe" && -x "$train_exe" &&
    -x "$ogm_exe" ]] || {
    echo "device-check: could not find the built executables" >&2
    exit 1
  }
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE"
  cp "$test_exe" "$BUNDLE/device"
  cp "$bench_exe" "$BUNDLE/ogm-gpu-bench"
  cp "$engine_exe" "$BUNDLE/engine-device"
  cp "$step_exe" "$BUNDLE/ogm-step-bench"
  cp "$train_exe" "$BUNDLE/train-device"
  cp "$ogm_exe" "$BUNDLE/ogm"
  strip "$BUNDLE/device" "$BUNDLE/ogm-gpu-bench" "$BUNDLE/engine-device" "$BUNDLE/ogm-step-bench" \
    "$BUNDLE/train-device" "$BUNDLE/ogm"
  cp scripts/torch_official_modulation.py scripts/device/run.sh scripts/device/summary.py "$BUNDLE/"
  cp scripts/bench_torch_step_gpu.py scripts/torch_engine_fixtures.py "$BUNDLE/"
  chmod +x "$BUNDLE/run.sh"
  {
    echo "commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- gpu scripts || echo ' (with local changes)')"
    echo "built  $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(rustc --version) and $("$NVCC" --version | tail -n2 | head -n1)"
    echo "glibc  the binaries need at most GLIBC_$(objdump -T "$BUNDLE/device" "$BUNDLE/ogm-gpu-bench" "$BUNDLE/engine-device" "$BUNDLE/ogm-step-bench" "$BUNDLE/train-device" "$BUNDLE/ogm" |
      grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)"
    (cd "$BUNDLE" && sha256sum device ogm-gpu-bench engine-device ogm-step-bench train-device ogm \
      torch_official_modulation.py bench_torch_step_gpu.py torch_engine_fixtures.py run.sh summary.py)
  } >"$BUNDLE/MANIFEST"
  local size
  size=$(du -sb "$BUNDLE" | cut -f1)
  if ((size > LIMIT)); then
    echo "device-check: the bundle is $size bytes, over the $LIMIT-byte budget" >&2
    exit 1
  fi
  cat "$BUNDLE/MANIFEST"
  echo "bundle: $BUNDLE/ ($((size / 1024)) KiB). Run it on the GPU machine with the device tool:"
  echo "  command: bash device-bundle/run.sh   carry: [\"device-bundle\"]   timeout_s: 600"
}

case "${1:-}" in
  build) build ;;
  run) exec bash "$BUNDLE/run.sh" ;;
  *)
    echo "usage: scripts/device-check.sh build|run" >&2
    exit 2
    ;;
esac
