#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target under fuzz/ and runs each for a short,
# bounded time. Exits non-zero if any target fails to build or finds a crash (a panic, an
# assertion failure, a timeout or an out-of-memory); the crashing input is left under
# fuzz/artifacts/<target>/ and libFuzzer's report names it.
#
# Usage: scripts/fuzz-smoke.sh [seconds-per-target] [target...]
#   seconds-per-target  default 15 (env FUZZ_SECONDS also works)
#   target...           default: every target `cargo fuzz list` reports
# Env:
#   FUZZ_SANITIZER  none (default) or address; address needs nightly-only -Z flags (see
#                   below)
#   FUZZ_TOOLCHAIN  a rustup toolchain to build with (e.g. nightly); default: the active one
#
# Toolchain. cargo-fuzz drives libFuzzer through rustc's SanitizerCoverage passes
# (`-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-*`), which stable rustc accepts;
# the only nightly-only flag it adds is `-Zsanitizer=...`. So with `--sanitizer none` the
# targets build and fuzz with full coverage feedback on plain stable, which is all a fresh CI
# machine has. ogm-core's only `unsafe` is CPU feature dispatch (no raw memory access), so
# AddressSanitizer would find nothing that a bounds-checked panic does not, at about two
# thirds of the speed: none is the default. For FUZZ_SANITIZER=address on a stable toolchain
# the script sets RUSTC_BOOTSTRAP=1, which makes stable rustc accept -Z flags (verified with
# rustc 1.95); on nightly it is not needed.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.1
seconds=${1:-${FUZZ_SECONDS:-15}}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"

toolchain=()
if [[ -n ${FUZZ_TOOLCHAIN:-} ]]; then
    toolchain=("+$FUZZ_TOOLCHAIN")
fi

# cargo-fuzz itself builds on stable; pin it so that CI does not change under us.
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "fuzz-smoke: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

if [[ $sanitizer != none ]] && ! cargo "${toolchain[@]}" --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

# -O: optimised like a training run; -a: debug assertions and overflow checks on, so that
# ogm-core's debug_asserts and integer overflows count as crashes too.
build_flags=(-O -a --sanitizer "$sanitizer")

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz-smoke: building all targets (sanitizer $sanitizer)"
cargo "${toolchain[@]}" fuzz build "${build_flags[@]}"

passed=0
failed=()
summary=()
mkdir -p artifacts
for t in "${targets[@]}"; do
    # Kept beside the crash inputs (git-ignored) for the full report.
    log=artifacts/smoke-$t.log
    echo "fuzz-smoke: $t for ${seconds}s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb keeps a leak from taking
    # the machine down. The corpus (fuzz/corpus/<t>, git-ignored) starts empty on a fresh
    # clone and grows across local runs.
    if cargo "${toolchain[@]}" fuzz run "${build_flags[@]}" "$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        passed=$((passed + 1))
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        summary+=("$(printf '%-10s ok   %9s runs %7s execs/s' "$t" "${runs:-?}" "${rate:-?}")")
    else
        failed+=("$t")
        summary+=("$(printf '%-10s FAIL  (fuzz/%s)' "$t" "$log")")
        # The assertion that failed, the crashing input and how to replay it; the backtrace
        # and the input's Debug form are in the log.
        grep -A3 "panicked at" "$log" | grep -Ev "^(stack backtrace| +[0-9]+: )" || tail -n 30 "$log"
        grep -E 'Test unit written to|^\s+cargo fuzz run' "$log" || true
    fi
done

echo
printf '%s\n' "${summary[@]}"
echo "fuzz: ${passed} passed, ${#failed[@]} failed"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz-smoke: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
