#!/usr/bin/env bash
# Runs the ogm-core criterion benches on one core and prints the medians and the ratios of
# OGM-GE / OGM to a plain copy of the same buffer, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
taskset -c 0 cargo bench --bench core_ops -- "$@"
python3 - <<'PY'
import json, os, pathlib
# Criterion writes under the cargo target directory (CARGO_TARGET_DIR when set).
base = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
def median_ms(group, name):
    p = base / group / name / "new" / "estimates.json"
    return json.loads(p.read_text())["median"]["point_estimate"] / 1e6 if p.exists() else None
print("\nmedian times (one core):")
for shape in ["64x6", "64x309", "4096x309"]:
    t = median_ms("score", shape)
    if t is not None:
        print(f"  score {shape:>9}: {t*1000:9.1f} us")
for size in ["11.2M", "22.4M"]:
    copy = median_ms("modulate", f"copy/{size}")
    for mode in ["ogm_ge", "ogm"]:
        t = median_ms("modulate", f"{mode}/{size}")
        if t is not None and copy is not None:
            print(f"  {mode:>6} {size}: {t:8.2f} ms, copy {copy:7.2f} ms, ratio {t/copy:5.2f}x")
PY
