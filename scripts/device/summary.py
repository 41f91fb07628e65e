#!/usr/bin/env python3
"""Sets the benchmark's figures next to the PyTorch baseline's from the same run.

Usage: summary.py BENCH_OUTPUT TORCH_OUTPUT RESULTS_JSON
                  [STEP_OURS STEP_TORCH [STEP_OURS_TF32 [STEP_OURS_BF16]]]
Reads the `BENCH_JSON` and `TORCH_JSON` lines, prints the speed-ups against the targets of
issue 5 (at least 20x faster than the official code path; modulation kernel at 70% or more of
the copy bandwidth) and writes everything to RESULTS_JSON. With the two optional files (issue
6), also reads the `STEP_JSON` lines of ogm-step-bench and bench_torch_step_gpu.py (full
training steps of the paper model, same GPU, same run) and prints steps per second, the ratio
to each PyTorch variant (target: at least 0.5x PyTorch eager) and each kernel's share of our
step. With STEP_OURS_TF32 (ogm-step-bench --precision tf32), also our TF32 step against
PyTorch's `eager_tf32` variant (TF32 allowed in cuDNN and matmul) and against our FP32 step;
with STEP_OURS_BF16 (ogm-step-bench --precision bf16), likewise our BF16 step against PyTorch's
`eager_bf16` variant (autocast to BF16) and against our FP32 step. The kernel tables show,
when the STEP_JSON carries them, each kernel's achieved GFLOP/s and GB/s (estimated work over
measured time; the bytes are a minimum-traffic model) and its fraction of the device's peak
for its bottleneck (`peak_fraction`, with the roof that sets it), after the device's peaks.
"""
import json
import os
import sys


def last_json(path, tag):
    found = None
    try:
        for line in open(path):
            if line.startswith(tag + " "):
                found = json.loads(line[len(tag) + 1:])
    except OSError:
        pass
    return found


def all_json(path, tag):
    found = []
    try:
        for line in open(path):
            if line.startswith(tag + " "):
                found.append(json.loads(line[len(tag) + 1:]))
    except OSError:
        pass
    return found


def fmt(v, spec, width):
    """v formatted with spec, or a right-aligned '-' when it is missing (null)."""
    return f"{v:{width}{spec}}" if v is not None else f"{'-':>{width}}"


def print_peaks(peaks):
    """The device's peaks line of a STEP_JSON's `peaks` object (absent in older files)."""
    if not peaks:
        return
    units = ", ".join(f"{u.upper()} {fmt(peaks.get(f'{u}_tflops'), '.1f', 0).strip()}"
                      for u in ("fp32", "fp64", "tf32", "bf16"))
    print(f"device peaks (TFLOP/s): {units}; DRAM {peaks.get('dram_gbytes_per_s', 0):.0f} GB/s "
          f"(sm_{peaks.get('compute_capability', '?').replace('.', '')}, "
          f"{peaks.get('sms')} SMs at {peaks.get('clock_mhz', 0):.0f} MHz)")


def print_kernels(kernels, title, limit):
    """The kernel table: time, share and launches, plus achieved rates and the fraction of the
    peak (and its roof) when the entries carry them."""
    roofline = any("peak_fraction" in k for k in kernels)
    head = f"{title:<24} {'ms/step':>9} {'share':>7} {'launches':>9}"
    if roofline:
        head += f" {'GFLOP/s':>9} {'GB/s':>8} {'% peak':>7} {'bound':>5}"
    print(head)
    for k in kernels[:limit]:
        line = (f"{k['name']:<24} {k['ms_per_step']:9.3f} {100 * k['share']:6.1f}% "
                f"{k['launches_per_step']:9.0f}")
        if roofline:
            frac = k.get("peak_fraction")
            line += (f" {fmt(k.get('gflops_per_s'), '.0f', 9)} "
                     f"{fmt(k.get('gbytes_per_s'), '.0f', 8)} "
                     f"{fmt(None if frac is None else 100 * frac, '.1f', 6)}"
                     f"{'%' if frac is not None else ' '} {k.get('bound') or '-':>5}")
        print(line)


def step_summary(ours_path, torch_path, results):
    ours = last_json(ours_path, "STEP_JSON")
    torch = all_json(torch_path, "STEP_JSON")
    results["step"] = {"ours": ours, "torch": torch, "ratios": {}}
    if ours is None:
        print("no ogm-step-bench figures")
        return
    print(f"ogm-rs full step: {ours['steps_per_s']:.2f} steps/s ({ours['ms_per_step']:.1f} ms, "
          f"batch {ours['batch']}, {ours['device']})")
    for t in torch:
        ratio = ours["steps_per_s"] / t["steps_per_s"]
        results["step"]["ratios"][t["impl"]] = ratio
        note = ""
        if t["impl"] == "torch_eager_fp32":
            note = f"  ({'meets' if ratio >= 0.5 else 'MISSES'} the 0.5x target)"
        print(f"  vs {t['impl']:<22} {t['steps_per_s']:8.2f} steps/s: {ratio:.2f}x{note}")
    if not torch:
        print("no PyTorch step figures")
    print_peaks(ours.get("peaks"))
    print_kernels(ours.get("kernels", []), "kernel", 20)


def step_variant_summary(ours_path, key, label, baseline, results):
    """One more run of our step (a tensor-core precision, or the implicit-GEMM convolutions)
    against our FP32 step and against PyTorch's `baseline` variant (and eager_fp32), stored
    under results["step"]["ours_<key>"] and ["ratios_<key>"]."""
    ours = last_json(ours_path, "STEP_JSON")
    step = results.setdefault("step", {})
    step[f"ours_{key}"] = ours
    if ours is None:
        print(f"no ogm-step-bench figures for {label}")
        return
    print(f"ogm-rs full step, {label}: {ours['steps_per_s']:.2f} steps/s "
          f"({ours['ms_per_step']:.1f} ms, precision {ours.get('precision', '?')}, "
          f"conv {ours.get('conv', 'im2col')})")
    ratios = step.setdefault(f"ratios_{key}", {})
    fp32 = step.get("ours")
    if fp32:
        ratios["ours_fp32"] = ours["steps_per_s"] / fp32["steps_per_s"]
        print(f"  vs ours FP32              {fp32['steps_per_s']:8.2f} steps/s: "
              f"{ratios['ours_fp32']:.2f}x")
    for t in step.get("torch", []):
        if t["impl"] in (baseline, "torch_eager_fp32"):
            ratios[t["impl"]] = ours["steps_per_s"] / t["steps_per_s"]
            print(f"  vs {t['impl']:<22} {t['steps_per_s']:8.2f} steps/s: "
                  f"{ratios[t['impl']]:.2f}x")
    if baseline not in ratios:
        print(f"  no PyTorch {baseline} figures")
    print_kernels(ours.get("kernels", []), label + " kernel", 10)


def step_precision_summary(ours_path, precision, results):
    """Our step at a tensor-core precision ("tf32" or "bf16") against PyTorch's eager variant
    of the same precision (step_variant_summary)."""
    step_variant_summary(ours_path, precision, precision.upper(), f"torch_eager_{precision}",
                         results)


def e2e_summary(out_dir, results):
    """The end-to-end `ogm train --device cuda` runs (run.sh's e2e_<precision>.json)."""
    for precision in ("fp32", "tf32"):
        path = os.path.join(out_dir, f"e2e_{precision}.json")
        if not os.path.exists(path):
            print(f"ogm train --device cuda --precision {precision}: no summary (did not finish)")
            continue
        s = json.load(open(path))
        ev = s.get("final_eval") or {}
        steps, wall = s.get("steps", 0), s.get("wall_s", 0.0)
        r = {
            "epochs": s.get("epochs"),
            "steps": steps,
            "wall_s": wall,
            "steps_per_s": steps / wall if wall else None,
            "acc": ev.get("acc"),
            "acc_a": ev.get("acc_a"),
            "acc_v": ev.get("acc_v"),
        }
        # Whether the data loader kept the device fed (summary.json's timing, when present).
        t = s.get("timing") or {}
        batch = (s.get("config") or {}).get("batch_size")
        if t.get("train_s") and batch:
            r["train_samples_per_s"] = t.get("steps", 0) * batch / t["train_s"]
            r["loader_wait_share"] = t.get("loader_wait_s", 0.0) / t["train_s"]
        # `ogm eval` of the best checkpoint on each device (run.sh: "samples N ...", "acc X").
        for device in ("cuda", "cpu"):
            ep = os.path.join(out_dir, f"e2e_{precision}_eval_{device}.txt")
            if os.path.exists(ep):
                fields = dict(line.split()[:2] for line in open(ep) if len(line.split()) >= 2)
                r[f"eval_{device}"] = {k: float(v) for k, v in fields.items()
                                       if k in ("samples", "loss", "acc", "acc_a", "acc_v")}
        results.setdefault("e2e", {})[precision] = r
        rate = f"{r['steps_per_s']:.2f}" if r["steps_per_s"] else "?"
        print(f"ogm train --device cuda --precision {precision}: {r['epochs']} epochs, {steps} "
              f"steps in {wall:.1f} s ({rate} steps/s with loading and evaluation), final "
              f"acc {r['acc']} acc_a {r['acc_a']} acc_v {r['acc_v']}")
        if "loader_wait_share" in r:
            print(f"  training loop: {r['train_samples_per_s']:.0f} samples/s, "
                  f"{100 * r['loader_wait_share']:.0f}% of it waiting for the data loader")
        for device in ("cuda", "cpu"):
            ev = r.get(f"eval_{device}")
            if ev:
                print(f"  ogm eval --device {device} (best checkpoint): loss {ev.get('loss')} "
                      f"acc {ev.get('acc')} acc_a {ev.get('acc_a')} acc_v {ev.get('acc_v')}")


def main():
    bench = last_json(sys.argv[1], "BENCH_JSON")
    torch = last_json(sys.argv[2], "TORCH_JSON")
    results = {"bench": bench, "torch": torch, "ratios": {}}
    ok = bench is not None and bench.get("agree", False)
    if bench is None:
        print("no benchmark figures")
    if torch is None:
        print("no PyTorch figures")
    if bench and torch:
        print(f"{'classes':>8} {'ours ms':>9} {'official ms':>12} {'speed-up':>9} "
              f"{'+SGD ours':>10} {'+SGD official':>14} {'speed-up':>9} {'vs vectorized':>14}")
        for key in sorted(k for k in bench if k.startswith("c") and k in torch):
            b, t = bench[key], torch[key]
            r = {
                "speedup_vs_official": t["official_ms"] / b["step_ms"],
                "speedup_vs_official_with_sgd": t["official_sgd_ms"] / b["step_sgd_ms"],
                "speedup_vs_vectorized": t["vectorized_ms"] / b["step_ms"],
                "speedup_vs_vectorized_with_sgd": t["vectorized_sgd_ms"] / b["step_sgd_ms"],
                "modulate_of_copy": b["modulate_of_copy"],
                "host_waits": b["finished_before_return"],
            }
            results["ratios"][key] = r
            print(f"{key[1:]:>8} {b['step_ms']:9.3f} {t['official_ms']:12.3f} "
                  f"{r['speedup_vs_official']:8.1f}x {b['step_sgd_ms']:10.3f} "
                  f"{t['official_sgd_ms']:14.3f} {r['speedup_vs_official_with_sgd']:8.1f}x "
                  f"{r['speedup_vs_vectorized']:13.1f}x")
        for key, r in results["ratios"].items():
            print(f"classes {key[1:]}: speed-up {r['speedup_vs_official']:.1f}x "
                  f"({'meets' if r['speedup_vs_official'] >= 20 else 'MISSES'} the 20x target); "
                  f"modulation kernel at {100 * r['modulate_of_copy']:.0f}% of copy bandwidth "
                  f"({'meets' if r['modulate_of_copy'] >= 0.7 else 'MISSES'} the 70% target); "
                  f"host waited inside a step: {'no' if r['host_waits'] == 0 else 'YES'}")
    if len(sys.argv) >= 6:
        step_summary(sys.argv[4], sys.argv[5], results)
    if len(sys.argv) >= 7:
        step_precision_summary(sys.argv[6], "tf32", results)
    if len(sys.argv) >= 8:
        step_precision_summary(sys.argv[7], "bf16", results)
    if len(sys.argv) >= 9:
        step_variant_summary(sys.argv[8], "implicit", "FP32, implicit-GEMM convolutions",
                             "torch_eager_fp32", results)
    for i, precision in ((9, "tf32"), (10, "bf16")):
        if len(sys.argv) > i:
            step_variant_summary(sys.argv[i], f"{precision}_implicit",
                                 f"{precision.upper()}, implicit-GEMM convolutions",
                                 f"torch_eager_{precision}", results)
    e2e_summary(os.path.dirname(os.path.abspath(sys.argv[3])), results)
    json.dump(results, open(sys.argv[3], "w"), indent=2)
    print(f"kernels agree with the CPU reference: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
