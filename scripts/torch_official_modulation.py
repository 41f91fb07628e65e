#!/usr/bin/env python3
"""The official OGM-GE modulation step, timed: the PyTorch baseline of the device check.

`official_step` is the code of GeWu-Lab/OGM-GE_CVPR2022 `main.py` (train_epoch), from
"Modulation starts here" to `optimizer.step()`, unchanged: the per-sample softmax loop for the
scores, the ratio compared on the host (`if ratio_v > 1` synchronises), and the loop over
`named_parameters()` that parses the `module.` prefix and, for every 4-D gradient of the audio or
visual encoder, adds `normal_(0, grad.std().item() + 1e-8)` noise (one host synchronisation per
tensor). It runs on the gradient shapes of the paper's model: two ResNet-18 encoders (audio with
1 input channel, visual with 3), a concat fusion head, batch 64, for 6 and 309 classes.

`vectorized_step` is the same arithmetic written without host synchronisations (gather for the
scores, torch.where for the coefficients, no .item()): a fairer PyTorch reference, reported for
information next to the official one.

Each iteration restores the gradients first (the modulation grows them), outside the timed
region; on CUDA the timed region is bracketed by CUDA events, on the CPU by perf_counter.

Usage: torch_official_modulation.py [--device cuda|cpu] [--classes 6,309] [--iters N]
The last line is `TORCH_JSON {...}` (milliseconds per step) for scripts/device/run.sh.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )


class ResNet18(nn.Module):
    """The encoder of the official models/backbone.py (no fc), parameters only."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inplanes = 64
        for i, planes in enumerate([64, 128, 256, 512]):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(
                BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1)
            )
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes


class ConcatFusion(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.fc_out = nn.Linear(1024, classes)


class AVClassifier(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.audio_net = ResNet18(1)
        self.visual_net = ResNet18(3)
        self.fusion_module = ConcatFusion(classes)


class Wrapped(nn.Module):
    """What nn.DataParallel adds to the names: the official loop parses `module.<encoder>`."""

    def __init__(self, model):
        super().__init__()
        self.module = model


softmax = nn.Softmax(dim=1)
relu = nn.ReLU(inplace=True)
tanh = nn.Tanh()


def official_step(model, optimizer, out_a, out_v, label, alpha, modulation, with_sgd):
    # ---- verbatim from main.py (train_epoch), args.* replaced by parameters ----
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])

    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v

    if ratio_v > 1:
        coeff_v = 1 - tanh(alpha * relu(ratio_v))
        coeff_a = 1
    else:
        coeff_a = 1 - tanh(alpha * relu(ratio_a))
        coeff_v = 1

    for name, parms in model.named_parameters():
        layer = str(name).split('.')[1]

        if 'audio' in layer and len(parms.grad.size()) == 4:
            if modulation == 'OGM_GE':
                parms.grad = parms.grad * coeff_a + \
                             torch.zeros_like(parms.grad).normal_(0, parms.grad.std().item() + 1e-8)
            elif modulation == 'OGM':
                parms.grad *= coeff_a

        if 'visual' in layer and len(parms.grad.size()) == 4:
            if modulation == 'OGM_GE':
                parms.grad = parms.grad * coeff_v + \
                             torch.zeros_like(parms.grad).normal_(0, parms.grad.std().item() + 1e-8)
            elif modulation == 'OGM':
                parms.grad *= coeff_v

    if with_sgd:
        optimizer.step()
    # ---- end of the official code ----


def vectorized_step(groups, optimizer, out_a, out_v, label, alpha, with_sgd):
    """The same OGM_GE arithmetic without a host synchronisation."""
    score_a = torch.softmax(out_a, 1).gather(1, label[:, None]).sum()
    score_v = torch.softmax(out_v, 1).gather(1, label[:, None]).sum()
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    one = torch.ones((), device=out_a.device)
    k_v = torch.where(ratio_v > 1, 1 - torch.tanh(alpha * torch.relu(ratio_v)), one)
    k_a = torch.where(ratio_v > 1, one, 1 - torch.tanh(alpha * torch.relu(ratio_a)))
    for params, k in ((groups[0], k_a), (groups[1], k_v)):
        for p in params:
            g = p.grad
            sigma = g.std() + 1e-8
            p.grad = g * k + torch.randn_like(g) * sigma
    if with_sgd:
        optimizer.step()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--classes", default="6,309")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=0.1)
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    result = {"device": torch.cuda.get_device_name(dev) if cuda else "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"torch {torch.__version__} on {result['device']}")

    for classes in [int(c) for c in args.classes.split(",")]:
        model = Wrapped(AVClassifier(classes)).to(dev)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        params = list(model.named_parameters())
        saved = {n: torch.randn_like(p) * 1e-3 for n, p in params}
        conv = sum(p.numel() for n, p in params
                   if p.dim() == 4 and n.split('.')[1] in ("audio_net", "visual_net"))
        groups = [[p for n, p in params if p.dim() == 4 and n.split('.')[1] == enc]
                  for enc in ("audio_net", "visual_net")]
        out_a = torch.randn(args.batch, classes, device=dev) * 4
        out_v = torch.randn(args.batch, classes, device=dev)
        label = torch.randint(0, classes, (args.batch,), device=dev)
        print(f"== classes {classes}: {sum(p.numel() for _, p in params)} parameters, "
              f"{conv} modulated values")

        def restore():
            for n, p in params:
                p.grad = saved[n].clone()

        def timed(fn):
            times = []
            for it in range(args.warmup + args.iters):
                restore()
                if cuda:
                    torch.cuda.synchronize(dev)
                    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
                    start.record()
                    fn()
                    end.record()
                    torch.cuda.synchronize(dev)
                    ms = start.elapsed_time(end)
                else:
                    t = time.perf_counter()
                    fn()
                    ms = (time.perf_counter() - t) * 1e3
                if it >= args.warmup:
                    times.append(ms)
            return statistics.median(times), statistics.fmean(times)

        figures = {"conv_values": conv}
        for key, fn in [
            ("official_ms", lambda: official_step(model, optimizer, out_a, out_v, label,
                                                  args.alpha, "OGM_GE", False)),
            ("official_sgd_ms", lambda: official_step(model, optimizer, out_a, out_v, label,
                                                      args.alpha, "OGM_GE", True)),
            ("vectorized_ms", lambda: vectorized_step(groups, optimizer, out_a, out_v, label,
                                                      args.alpha, False)),
            ("vectorized_sgd_ms", lambda: vectorized_step(groups, optimizer, out_a, out_v,
                                                          label, args.alpha, True)),
        ]:
            median, mean = timed(fn)
            figures[key] = median
            print(f"time   {key[:-3]:<16} {median:8.3f} ms median, {mean:8.3f} ms mean")
        result[f"c{classes}"] = figures
    print("TORCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
