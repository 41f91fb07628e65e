#!/usr/bin/env python3
"""PyTorch CPU baseline for host/benches/train_step.rs: one official training step
(forward, cross-entropy, backward, SGD lr 1e-3 momentum 0.9 wd 1e-4) of the paper model
(two ResNet-18s, concat fusion, 6 classes) at batch 16 with CREMA-D shapes.

Usage: bench_torch_step.py [--threads N] [--steps N] [--batch B]
Prints one line `RESULT impl=pytorch ...` in the same format as the Rust bench.
"""
import argparse
import os
import resource
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from torch_engine_fixtures import AVClassifier, weight_init  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AVClassifier("concat", 6)
    model.apply(weight_init)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    b = args.batch
    audio = torch.rand(b, 1, 257, 188) * 2 - 1
    visual = torch.rand(b, 3, 1, 224, 224) * 2 - 1
    labels = torch.arange(b) % 6

    def step():
        opt.zero_grad()
        _, _, out = model(audio, visual)
        loss = loss_fn(out, labels)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB
    print(f"RESULT impl=pytorch threads={torch.get_num_threads()} batch={b} steps={args.steps} "
          f"step_s={med:.4f} min_s={times[0]:.4f} samples_per_s={b / med:.2f} "
          f"peak_rss_mib={peak:.0f} loss={loss:.4f}")


if __name__ == "__main__":
    main()
