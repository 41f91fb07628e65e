#!/usr/bin/env bash
# Runs the device check on the GPU machine (see scripts/device-check.sh): the device tests,
# the benchmark and the PyTorch baseline, in this one call, then the summary with the ratios.
# Needs: an NVIDIA driver (libcuda.so.1), python3 with PyTorch (CUDA). Exit status: 0 when
# every test passes and every kernel agrees with the CPU reference.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT_DIR="${OUT:-$HERE/out}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device-check.log"
# The device tool returns at most 8 files from $OUT: the sections' own files go to RAW, and
# pack() tars RAW into $OUT_DIR/raw.tgz after each section, so that a call cut off at its
# limit still returns what the finished sections wrote. Without $OUT, RAW is $OUT_DIR itself.
if [[ -n "${OUT:-}" ]]; then RAW="$(mktemp -d)"; else RAW="$OUT_DIR"; fi
pack() { [[ "$RAW" == "$OUT_DIR" ]] || tar czf "$OUT_DIR/raw.tgz" -C "$RAW" .; }
PYTHON="${PYTHON:-python3}"

# Runs "$@" for at most $1 seconds, so that one hung section (a deadlocked test, a slow
# torch.compile) cannot take the whole device call; says so when it hits the limit.
limit() {
  local seconds=$1
  shift
  timeout -k 10 "$seconds" "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "(stopped after ${seconds} s: $(basename "$1") $2)"
  fi
  return $rc
}

# `ogm train --device cuda` on synthetic clips of CREMA-D's shapes (6 classes, 224 x 224
# frames, 3 s of audio): the paper model (two ResNet-18 encoders, concat fusion) with OGM-GE,
# batch 64, 4 epochs of 3 steps, in FP32 and TF32: the issue's "trains the paper model end to
# end on the GPU machine". Each run's summary.json is kept as $RAW/e2e_<precision>.json, and
# its best checkpoint is evaluated with `ogm eval` on the GPU and on the CPU.
e2e() {
  local work status=0
  work="$(mktemp -d)"
  limit 60 "$HERE/ogm" synth --out "$work/data" --train_per_class 32 --test_per_class 8 --size 224 \
    --audio_seconds 3 || status=1
  for precision in fp32 tf32; do
    [[ $status -eq 0 ]] || break
    limit 150 "$HERE/ogm" train --device cuda --precision "$precision" --modulation OGM_GE --alpha 0.8 \
      --epochs 4 --batch_size 64 --train_csv "$work/data/train.csv" \
      --test_csv "$work/data/test.csv" --audio_path "$work/data/AudioWAV" \
      --visual_path "$work/data" --ckpt_path "$work/runs" --run_name "e2e_$precision" ||
      status=1
    cp "$work/runs/e2e_$precision/summary.json" "$RAW/e2e_$precision.json" || status=1
    # `ogm eval` of the best checkpoint on the GPU (the run's precision) and on the CPU
    # engine (FP32): loss and accuracies in $RAW/e2e_<precision>_eval_<device>.txt.
    for device in cuda cpu; do
      [[ $status -eq 0 ]] || break
      limit 90 "$HERE/ogm" eval --device "$device" --batch_size 64 \
        --checkpoint "$work/runs/e2e_$precision/checkpoints/best.safetensors" \
        >"$RAW/e2e_${precision}_eval_$device.txt" || status=1
    done
  done
  rm -rf "$work"
  return $status
}

# The sections to run: ONLY=tests,modulation,e2e,step,variants (comma-separated; all when
# unset; sanitize runs only when named), so that a run too long for one device call can be split into two. TORCH_VARIANTS
# passes --variants to the PyTorch step baseline (all its variants when unset).
want() { [[ -z "${ONLY:-}" || ",$ONLY," == *",$1,"* ]]; }

# One ogm-step-bench run: its flags, then the file its output goes to.
step_bench() {
  local out=$1
  shift
  limit 90 "$HERE/ogm-step-bench" "$@" --steps 20 --warmup 3 --profile-steps 3 2>&1 |
    tee "$RAW/$out"
  return "${PIPESTATUS[0]}"
}

main() {
  echo "== device check: $(head -n1 "$HERE/MANIFEST" 2>/dev/null)"
  sed -n '2,3p' "$HERE/MANIFEST" 2>/dev/null
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv,noheader 2>/dev/null || echo "(nvidia-smi unavailable)"
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' ||
    echo "(no PyTorch: the baseline will be missing)"
  echo "sections: ${ONLY:-all}"

  status=0
  # The most important first, so that a call cut off at its limit still returns them: the
  # agreement tests, the end-to-end training, our FP32 step beside PyTorch's (the issue's ratio).
  # The three test executables and the end-to-end training run side by side: none of them
  # is timed, the GPU has room for all four, and the device time they would take one after
  # the other is the scarcest thing in the call. Each writes its own file, printed in turn.
  local pids=() names=()
  if want tests; then
    limit 180 env OGM_GPU_REQUIRED=1 "$HERE/device" --test-threads=1 >"$RAW/tests_kernels.txt" 2>&1 &
    pids+=($!) names+=("tests_kernels:device tests (every kernel against the CPU reference)")
    limit 240 env OGM_GPU_REQUIRED=1 "$HERE/engine-device" --test-threads=1 >"$RAW/tests_engine.txt" 2>&1 &
    pids+=($!) names+=("tests_engine:engine device tests (the GPU backend against the CPU engine, every operation, a whole step)")
    limit 240 env OGM_GPU_REQUIRED=1 "$HERE/train-device" --test-threads=1 >"$RAW/tests_train.txt" 2>&1 &
    pids+=($!) names+=("tests_train:trainer device tests (queued steps against the CPU steps, the log ring, resume)")
  fi
  if want e2e; then
    e2e >"$RAW/e2e.txt" 2>&1 &
    pids+=($!) names+=("e2e:ogm train --device cuda (the paper model end to end on synthetic CREMA-D-shaped clips)")
  fi
  local i
  for i in "${!pids[@]}"; do
    local rc=0
    wait "${pids[$i]}" || rc=$?
    [[ $rc -eq 0 ]] || status=1
    echo
    echo "== ${names[$i]#*:} (exit $rc)"
    cat "$RAW/${names[$i]%%:*}.txt"
    pack
  done

  if want step; then
    echo
    echo "== ogm-step-bench (full training step of the paper model, batch 64)"
    step_bench step_ours.txt || status=1
    echo
    echo "== PyTorch full-step baseline (same step, same GPU; eager_tf32 and eager_bf16 are the" \
      "TF32 and BF16 baselines)"
    limit 240 "$PYTHON" "$HERE/bench_torch_step_gpu.py" --device cuda --alpha 0.8 --iters 20 \
      --warmup 5 ${TORCH_VARIANTS:+--variants "$TORCH_VARIANTS"} 2>&1 | tee "$RAW/step_torch.txt"
    pack
  fi

  if want modulation; then
    echo
    echo "== ogm-gpu-bench (part 1: the modulation step)"
    limit 90 "$HERE/ogm-gpu-bench" --iters 100 2>&1 | tee "$RAW/bench.txt"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
    echo
    echo "== PyTorch baseline (the official code path)"
    limit 120 "$PYTHON" "$HERE/torch_official_modulation.py" --device cuda --iters 30 2>&1 |
      tee "$RAW/torch.txt"
    pack
  fi

  if want variants; then
    echo
    echo "== ogm-step-bench --conv implicit (the same FP32 step with implicit-GEMM convolutions)"
    step_bench step_ours_implicit.txt --conv implicit || status=1
    echo
    echo "== ogm-step-bench --precision tf32 (the same step with the TF32 tensor-core GEMMs)"
    step_bench step_ours_tf32.txt --precision tf32 || status=1
    echo
    echo "== ogm-step-bench --precision bf16 (the same step with the BF16 tensor-core GEMMs)"
    step_bench step_ours_bf16.txt --precision bf16 || status=1
    pack
    # The fastest predicted by ogm-step-plan (the tensor-core steps are memory-bound, and the
    # implicit GEMMs drop the lowering's traffic): TF32 and BF16 with implicit convolutions.
    echo
    echo "== ogm-step-bench --precision tf32 --conv implicit"
    step_bench step_ours_tf32_implicit.txt --precision tf32 --conv implicit || status=1
    echo
    echo "== ogm-step-bench --precision bf16 --conv implicit"
    step_bench step_ours_bf16_implicit.txt --precision bf16 --conv implicit || status=1
    pack
  fi

  # Only when asked for by name (ONLY=sanitize): the kernels under NVIDIA's compute-sanitizer,
  # on the device tests' small problems. memcheck: out-of-bounds and misaligned accesses,
  # errors of the driver calls; racecheck: shared-memory hazards between threads of a block
  # (the hardware's own orders, beside the emulator's launch orders); synccheck: barriers
  # that not every thread reaches. Seen working on the Firecracker machines, refused on gVisor
  # ("Device not supported"): then this section says so and fails.
  if [[ ",${ONLY:-}," == *",sanitize,"* ]]; then
    echo
    echo "== compute-sanitizer (memcheck, racecheck, synccheck) over the device tests"
    if ! command -v compute-sanitizer >/dev/null; then
      echo "(compute-sanitizer is not on the PATH)"
      status=1
    else
      local tool
      for tool in memcheck racecheck synccheck; do
        echo "-- $tool"
        limit 150 compute-sanitizer --tool "$tool" --error-exitcode 86 --print-limit 20 \
          env OGM_GPU_REQUIRED=1 "$HERE/engine-device" --test-threads=1 \
          >"$RAW/sanitize_$tool.txt" 2>&1
        local rc=$?
        grep -E "ERROR SUMMARY|test result|Device not supported|=========  [A-Z]" \
          "$RAW/sanitize_$tool.txt" | head -n 30
        echo "($tool exit $rc)"
        [[ $rc -eq 0 ]] || status=1
      done
      echo "-- memcheck over part 1's kernels"
      limit 90 compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 20 \
        env OGM_GPU_REQUIRED=1 "$HERE/device" --test-threads=1 >"$RAW/sanitize_part1.txt" 2>&1
      local rc=$?
      grep -E "ERROR SUMMARY|test result|=========  [A-Z]" "$RAW/sanitize_part1.txt" | head -n 30
      echo "(memcheck part 1 exit $rc)"
      [[ $rc -eq 0 ]] || status=1
    fi
    pack
  fi

  echo
  echo "== summary"
  # summary.py fails when part 1's kernels did not agree, or did not run (no "modulation").
  "$PYTHON" "$HERE/summary.py" "$RAW/bench.txt" "$RAW/torch.txt" "$RAW/results.json" \
    "$RAW/step_ours.txt" "$RAW/step_torch.txt" "$RAW/step_ours_tf32.txt" \
    "$RAW/step_ours_bf16.txt" "$RAW/step_ours_implicit.txt" "$RAW/step_ours_tf32_implicit.txt" \
    "$RAW/step_ours_bf16_implicit.txt" ||
    { want modulation && status=1; }
  pack
  [[ "$RAW" == "$OUT_DIR" ]] || cp "$RAW/results.json" "$OUT_DIR/" 2>/dev/null
  echo "device check exit status: $status"
  return $status
}

# A pipeline rather than `exec > >(tee ...)`: the script ends only after tee has written
# everything, so the caller sees the whole summary.
main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
