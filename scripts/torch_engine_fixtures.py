#!/usr/bin/env python3
"""Fixtures for the engine's PyTorch agreement tests (host/tests/engine_torch.rs).

Builds the official OGM-GE model (models/backbone.py, fusion_modules.py, basic_model.py of
GeWu-Lab/OGM-GE_CVPR2022, re-implemented below with the width/depth knobs of
`ModelConfig::small`), runs it in float64 on fixed inputs and writes, per fusion head:

  host/tests/fixtures/engine/<fusion>_weights.safetensors   the state_dict (load_state_dict keys)
  host/tests/fixtures/engine/<fusion>_io.safetensors        inputs, outputs, loss, gradients,
                                                            running stats, optimiser results

Run once (torch is not needed by the tests):
  python scripts/torch_engine_fixtures.py            # regenerate the fixtures
  python scripts/torch_engine_fixtures.py --official-pth
      # official_concat.pth: the checkpoint the official main.py saves (torch.save of its
      # saved_dict, the model in nn.DataParallel, after one SGD step), for a 6-class model of
      # width 2 with 1 block a stage; official_gated_state_dict.pth: a bare state_dict; and
      # each one's state_dict as <name>_expected.safetensors, for `ogm import`'s tests.
  python scripts/torch_engine_fixtures.py --verify-rust-checkpoint
      # load host/tests/fixtures/engine/rust_checkpoint.safetensors (written by the Rust
      # engine) into the official model with strict load_state_dict, and compare its logits
      # with the ones the Rust engine recorded in rust_checkpoint_io.safetensors.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
try:  # only the fixture writers need it; the benchmarks import the model definitions alone
    from safetensors.torch import load_file, save_file
except ImportError:  # pragma: no cover
    load_file = save_file = None

OUT = os.path.join(os.path.dirname(__file__), "..", "host", "tests", "fixtures", "engine")

# The small variant of the tests: ModelConfig::small(3, fusion).with_frames(2).
WIDTHS = [4, 8, 8, 16]
BLOCKS = [2, 1, 1, 1]
CLASSES = 3
FRAMES = 2
BATCH = 2
AUDIO_HW = (33, 25)
VISUAL_HW = (32, 32)


# ---- the official definitions (backbone.py), with widths / blocks as parameters ----------
def conv3x3(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(i, o, stride=1):
    return nn.Conv2d(i, o, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, modality, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)):
        super().__init__()
        self.modality = modality
        self.inplanes = widths[0]
        cin = 1 if modality == "audio" else 3
        self.conv1 = nn.Conv2d(cin, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], blocks[0])
        self.layer2 = self._make_layer(widths[1], blocks[1], stride=2)
        self.layer3 = self._make_layer(widths[2], blocks[2], stride=2)
        self.layer4 = self._make_layer(widths[3], blocks[3], stride=2)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        if self.modality == "visual":
            (B, C, T, H, W) = x.size()
            x = x.permute(0, 2, 1, 3, 4).contiguous()
            x = x.view(B * T, C, H, W)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x


# ---- fusion_modules.py ---------------------------------------------------------------------
class SumFusion(nn.Module):
    def __init__(self, input_dim=512, output_dim=100):
        super().__init__()
        self.fc_x = nn.Linear(input_dim, output_dim)
        self.fc_y = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        return x, y, self.fc_x(x) + self.fc_y(y)


class ConcatFusion(nn.Module):
    def __init__(self, input_dim=1024, output_dim=100):
        super().__init__()
        self.fc_out = nn.Linear(input_dim, output_dim)

    def forward(self, x, y):
        return x, y, self.fc_out(torch.cat((x, y), dim=1))


class FiLM(nn.Module):
    def __init__(self, input_dim=512, dim=512, output_dim=100, x_film=True):
        super().__init__()
        self.dim = input_dim
        self.fc = nn.Linear(input_dim, 2 * dim)
        self.fc_out = nn.Linear(dim, output_dim)
        self.x_film = x_film

    def forward(self, x, y):
        film, to_be_film = (x, y) if self.x_film else (y, x)
        gamma, beta = torch.split(self.fc(film), self.dim, 1)
        return x, y, self.fc_out(gamma * to_be_film + beta)


class GatedFusion(nn.Module):
    def __init__(self, input_dim=512, dim=512, output_dim=100, x_gate=True):
        super().__init__()
        self.fc_x = nn.Linear(input_dim, dim)
        self.fc_y = nn.Linear(input_dim, dim)
        self.fc_out = nn.Linear(dim, output_dim)
        self.x_gate = x_gate
        self.sigmoid = nn.Sigmoid()

    def forward(self, x, y):
        out_x = self.fc_x(x)
        out_y = self.fc_y(y)
        if self.x_gate:
            output = self.fc_out(torch.mul(self.sigmoid(out_x), out_y))
        else:
            output = self.fc_out(torch.mul(out_x, self.sigmoid(out_y)))
        return out_x, out_y, output


# ---- basic_model.py ------------------------------------------------------------------------
class AVClassifier(nn.Module):
    def __init__(self, fusion, n_classes, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)):
        super().__init__()
        d = widths[3]
        if fusion == "sum":
            self.fusion_module = SumFusion(input_dim=d, output_dim=n_classes)
        elif fusion == "concat":
            self.fusion_module = ConcatFusion(input_dim=2 * d, output_dim=n_classes)
        elif fusion == "film":
            self.fusion_module = FiLM(input_dim=d, dim=d, output_dim=n_classes, x_film=True)
        elif fusion == "gated":
            self.fusion_module = GatedFusion(input_dim=d, dim=d, output_dim=n_classes, x_gate=True)
        self.audio_net = ResNet("audio", widths, blocks)
        self.visual_net = ResNet("visual", widths, blocks)

    def features(self, audio, visual):
        a = self.audio_net(audio)
        v = self.visual_net(visual)
        (_, C, H, W) = v.size()
        B = a.size()[0]
        v = v.view(B, -1, C, H, W).permute(0, 2, 1, 3, 4)
        a = torch.flatten(F.adaptive_avg_pool2d(a, 1), 1)
        v = torch.flatten(F.adaptive_avg_pool3d(v, 1), 1)
        return a, v

    def forward(self, audio, visual):
        a, v = self.features(audio, visual)
        _, _, out = self.fusion_module(a, v)
        return a, v, out


def weight_init(m):  # utils/utils.py
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.constant_(m.weight, 1)
        nn.init.constant_(m.bias, 0)


def modality_logits(model, fusion, a, v, training):
    """The engine's out_a / out_v rule (host/src/engine/model/head.rs)."""
    fm = model.fusion_module
    with torch.no_grad():
        if fusion == "sum":
            s = 1.0 if training else 0.5
            return a @ fm.fc_x.weight.T + s * fm.fc_x.bias, v @ fm.fc_y.weight.T + s * fm.fc_y.bias
        if fusion == "concat":
            d = a.shape[1]
            w, b = fm.fc_out.weight, fm.fc_out.bias
            return a @ w[:, :d].T + b / 2, v @ w[:, d:].T + b / 2
        z = torch.zeros_like(a)
        return fm(a, z)[2], fm(z, v)[2]


def perturb(model, g):
    """Non-trivial BN and bias values, so every formula term shows in the gradients."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64))
                m.running_var.copy_(1 + 0.3 * torch.rand(m.running_var.shape, generator=g, dtype=torch.float64))
                m.num_batches_tracked.fill_(3)
            elif isinstance(m, nn.Linear):
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))


def build(fusion, seed):
    torch.manual_seed(seed)
    model = AVClassifier(fusion, CLASSES, WIDTHS, BLOCKS)
    model.apply(weight_init)
    model = model.double()
    perturb(model, torch.Generator().manual_seed(seed + 100))
    return model


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(BATCH, 1, *AUDIO_HW, generator=g, dtype=torch.float64)
    visual = torch.randn(BATCH, 3, FRAMES, *VISUAL_HW, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 2], dtype=torch.int64)
    return audio, visual, labels


def step_loss(model, audio, visual, labels):
    model.zero_grad()
    _, _, out = model(audio, visual)
    loss = F.cross_entropy(out, labels)
    loss.backward()
    return loss


def generate(fusion, seed):
    model = build(fusion, seed)
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT, f"{fusion}_weights.safetensors"))
    audio, visual, labels = inputs(seed + 1)
    io = {"audio": audio, "visual": visual, "labels": labels}

    model.train()
    a, v, out = model(audio, visual)
    loss = F.cross_entropy(out, labels)
    loss.backward()
    oa, ov = modality_logits(model, fusion, a.detach(), v.detach(), True)
    io.update({"logits": out.detach(), "feat_a": a.detach(), "feat_v": v.detach(),
               "out_a": oa, "out_v": ov, "loss": loss.detach()})
    for k, p in model.named_parameters():
        io["grad." + k] = p.grad.clone()
    for k, b in model.named_buffers():
        if "num_batches_tracked" not in k:
            io["after." + k] = b.clone()

    model.eval()
    with torch.no_grad():
        a, v, out = model(audio, visual)
        oa, ov = modality_logits(model, fusion, a, v, False)
    io.update({"eval.logits": out, "eval.out_a": oa, "eval.out_v": ov})

    # Two optimiser steps from the initial weights, forward/backward before each.
    for opt_name in ("sgd", "adam", "adamw"):
        m = build(fusion, seed)
        m.train()
        if opt_name == "sgd":
            opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
        elif opt_name == "adam":
            opt = torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-2)
        else:
            opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=1e-2)
        for _ in range(2):
            step_loss(m, audio, visual, labels)
            opt.step()
        for k, p in m.named_parameters():
            io[f"{opt_name}." + k] = p.detach().clone()
    save_file({k: t.contiguous() for k, t in io.items()}, os.path.join(OUT, f"{fusion}_io.safetensors"))
    print(f"{fusion}: loss {loss.item():.6f}, {len(sd)} state_dict tensors")


def paper_tables():
    """The state_dict keys and shapes of the paper model (every fusion head), and StepLR's
    learning rates, as text the tests compare against."""
    lines = []
    for fusion in ("sum", "concat", "film", "gated"):
        m = AVClassifier(fusion, 6)
        for k, v in m.state_dict().items():
            lines.append(f"{fusion} {k} {'x'.join(map(str, v.shape)) or 'scalar'}")
    with open(os.path.join(OUT, "paper_state_dict_keys.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=70, gamma=0.1)
    lrs = []
    for _ in range(200):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    save_file({"lr": torch.tensor(lrs, dtype=torch.float64)}, os.path.join(OUT, "steplr.safetensors"))


def verify_rust_checkpoint():
    ck = os.path.join(OUT, "rust_checkpoint.safetensors")
    io = load_file(os.path.join(OUT, "rust_checkpoint_io.safetensors"))
    sd = load_file(ck)
    fusion = {0: "sum", 1: "concat", 2: "film", 3: "gated"}[int(io["fusion"].item())]
    model = AVClassifier(fusion, CLASSES, WIDTHS, BLOCKS)
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        _, _, out = model(io["audio"], io["visual"])
    err = (out - io["logits"]).abs().max().item()
    print(f"rust checkpoint ({fusion}): {len(sd)} tensors loaded strictly; max |logit diff| = {err:.3e}")
    if err > 1e-4:
        sys.exit(1)


def official_pth():
    """Checkpoints as the official main.py writes them (float32, as it trains)."""
    widths, blocks, classes = (2, 4, 8, 16), (1, 1, 1, 1), 6
    for fusion, seed in (("concat", 7), ("gated", 8)):
        torch.manual_seed(seed)
        model = AVClassifier(fusion, classes, widths, blocks)
        model.apply(weight_init)
        model = nn.DataParallel(model)  # main.py: keys become module.*
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 70, 0.1)
        audio = torch.randn(4, 1, 33, 25)
        visual = torch.randn(4, 3, 1, 32, 32)
        _, _, out = model(audio, visual)
        F.cross_entropy(out, torch.tensor([0, 1, 2, 5])).backward()
        optimizer.step()
        scheduler.step()
        if fusion == "concat":
            name = "official_concat"
            saved = {"saved_epoch": 3, "modulation": "OGM_GE", "alpha": 0.8, "fusion": fusion,
                     "acc": 0.5, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict()}
        else:
            name = "official_gated_state_dict"
            saved = model.module.state_dict()
        torch.save(saved, os.path.join(OUT, f"{name}.pth"))
        sd = {k: t.contiguous() for k, t in model.module.state_dict().items()}
        save_file(sd, os.path.join(OUT, f"{name}_expected.safetensors"))
        print(f"{name}.pth: {len(sd)} tensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify-rust-checkpoint", action="store_true")
    ap.add_argument("--official-pth", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.verify_rust_checkpoint:
        verify_rust_checkpoint()
        return
    if args.official_pth:
        official_pth()
        return
    os.makedirs(OUT, exist_ok=True)
    paper_tables()
    for i, fusion in enumerate(("sum", "concat", "film", "gated")):
        generate(fusion, 10 * i)


if __name__ == "__main__":
    main()
