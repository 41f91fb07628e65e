#!/usr/bin/env python3
"""PyTorch GPU baseline of one full OGM-GE training step of the paper model (issue 6).

The step is the official `train_epoch` body of GeWu-Lab/OGM-GE_CVPR2022 `main.py`: forward of
the two ResNet-18 encoders and the fusion head (concat by default), the per-modality logits
`out_a` / `out_v` computed from the fusion weights as the official code does, cross-entropy on
the fused output, backward, then the official modulation (`official_step` of
torch_official_modulation.py, unchanged: per-sample score loop and one `.item()` per tensor)
and the SGD update (lr 1e-3, momentum 0.9, weight decay 1e-4). Batch 64, CREMA-D shapes
(audio 1x257x188, visual 3x1x224x224), 6 classes.

Variants, each timed with CUDA events around whole steps (median of --iters after --warmup):
  eager_fp32        the official step, TF32 disabled (the FP32 reference our FP32 path matches)
  eager_tf32        the same with TF32 allowed in cuDNN and matmul (PyTorch's conv default)
  eager_bf16        the same with torch.autocast(dtype=torch.bfloat16) around forward and loss:
                    convolutions and matmuls in BF16 with f32 accumulation, f32 master weights
                    (no loss scaling: BF16 has f32's exponent range); the per-modality logits go
                    to the modulation in f32, as our engine's do. The baseline of our
                    `--precision bf16` step (which rounds only the GEMM operands to BF16 and
                    keeps activations f32 in memory, so autocast does less f32 traffic than us)
  eager_fp32_fast   the same step with the vectorised modulation (no host synchronisation)
  normal_fp32       no modulation (the `Normal` mode): the cost of forward/backward/update alone
  compile_fp32      torch.compile(model) with the official modulation, when compile works here

Each variant prints `STEP_JSON {...}` (one line) with steps_per_s and ms_per_step, so
scripts/device/summary.py can pair it with our bench's line.
Usage: bench_torch_step_gpu.py [--device cuda|cpu] [--batch 64] [--iters 20] [--warmup 5] [--variants a,b,...]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_engine_fixtures import AVClassifier, weight_init  # noqa: E402
from torch_official_modulation import Wrapped, official_step, vectorized_step  # noqa: E402

VARIANTS = ["eager_fp32", "eager_tf32", "eager_bf16", "eager_fp32_fast", "normal_fp32",
            "compile_fp32"]


def per_modality_logits(model, a, v, fusion):
    """out_a / out_v exactly as the official train_epoch derives them from the fusion weights."""
    fm = model.module.fusion_module
    if fusion == "concat":
        w = fm.fc_out.weight
        half = w.size(1) // 2
        out_v = torch.mm(v, w[:, half:].t()) + fm.fc_out.bias / 2
        out_a = torch.mm(a, w[:, :half].t()) + fm.fc_out.bias / 2
    else:  # sum
        out_v = torch.mm(v, fm.fc_y.weight.t()) + fm.fc_y.bias / 2
        out_a = torch.mm(a, fm.fc_x.weight.t()) + fm.fc_x.bias / 2
    return out_a, out_v


def run_variant(name, args, dev):
    fp32 = "tf32" not in name
    torch.backends.cuda.matmul.allow_tf32 = not fp32
    torch.backends.cudnn.allow_tf32 = not fp32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = AVClassifier(args.fusion, args.classes)
    model.apply(weight_init)
    model = Wrapped(model).to(dev).train()
    forward = model.module
    if name.startswith("compile"):
        forward = torch.compile(model.module)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.named_parameters())
    groups = [[p for n, p in params if p.dim() == 4 and n.split(".")[1] == enc]
              for enc in ("audio_net", "visual_net")]
    b = args.batch
    gen = torch.Generator(device="cpu").manual_seed(0)
    audio = (torch.rand(b, 1, 257, 188, generator=gen) * 2 - 1).to(dev)
    visual = (torch.rand(b, 3, 1, 224, 224, generator=gen) * 2 - 1).to(dev)
    labels = (torch.arange(b) % args.classes).to(dev)

    # eager_bf16: autocast around forward and loss only (backward runs each op in the dtype its
    # forward autocast chose); the parameters and the optimizer stay f32.
    bf16 = name.endswith("bf16")

    def step():
        opt.zero_grad()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            a, v, out = forward(audio, visual)
            out_a, out_v = per_modality_logits(model, a, v, args.fusion)
            loss = loss_fn(out, labels)
        out_a, out_v = out_a.float(), out_v.float()
        loss.backward()
        if name.startswith("normal"):
            opt.step()
        elif name.endswith("fast"):
            vectorized_step(groups, opt, out_a, out_v, labels, args.alpha, True)
        else:
            official_step(model, opt, out_a, out_v, labels, args.alpha, "OGM_GE", True)
        return loss

    times = []
    for it in range(args.warmup + args.iters):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            start, end = torch.cuda.Event(True), torch.cuda.Event(True)
            start.record()
            loss = step()
            end.record()
            torch.cuda.synchronize(dev)
            ms = start.elapsed_time(end)
        else:  # the CPU smoke run that checks this script before device time is spent
            t = time.perf_counter()
            loss = step()
            ms = (time.perf_counter() - t) * 1e3
        if it >= args.warmup:
            times.append(ms)
    ms = statistics.median(times)
    return {"impl": f"torch_{name}", "batch": b, "classes": args.classes, "fusion": args.fusion,
            "ms_per_step": ms, "min_ms": min(times), "steps_per_s": 1e3 / ms,
            "samples_per_s": b * 1e3 / ms, "loss": float(loss.detach()),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "peak_mem_mib": torch.cuda.max_memory_allocated(dev) / 2**20
            if dev.type == "cuda" else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--fusion", default="concat", choices=["concat", "sum"])
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a smoke run of this script (use a small --batch)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIP no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}")
    for name in args.variants.split(","):
        if name not in VARIANTS:
            print(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}", file=sys.stderr)
            return 2
        try:
            r = run_variant(name, args, dev)
        except Exception as e:  # torch.compile may be unavailable (no compiler on the machine)
            print(f"variant {name} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            continue
        print(f"{name:<16} {r['ms_per_step']:8.2f} ms/step  {r['steps_per_s']:6.2f} steps/s  "
              f"peak {r['peak_mem_mib']} MiB")
        print("STEP_JSON " + json.dumps(r))
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
