#!/usr/bin/env python3
"""The official CREMA-D training sample, one clip at a time on one thread.

What `CramedDataset.__getitem__` of the official OGM-GE code does for a training sample,
re-implemented here from its semantics (../shared/design.md): librosa.load at 22050 Hz, tile
three times, keep 3 s, clip to [-1, 1], librosa.stft n_fft 512 hop 353, log(|S| + 1e-7); list
the clip's frame folder, choose `fps` (1) frames, PIL open + convert('RGB'),
RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize; the (T, 3, H, W) stack
permuted to (3, T, H, W). One thread, as in a DataLoader worker (torch.set_num_threads(1)).

scripts/bench-data.sh runs it beside host/benches/data_pipeline.rs on the same files:

    python scripts/bench_torch_data.py --data DIR [--clips 120] [--rounds 3]

Prints one RESULT line: per-clip medians (ms) of the whole sample, the audio part and the
visual part, over all passes but the first (a warm-up).
"""

import argparse
import csv
import os
import time

import librosa
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

SR = 22050
FPS = 1


def audio_part(wav):
    samples, _ = librosa.load(wav, sr=SR)
    clip = np.tile(samples, 3)[: SR * 3]
    clip[clip > 1.0] = 1.0
    clip[clip < -1.0] = -1.0
    spec = librosa.stft(clip, n_fft=512, hop_length=353)
    return np.log(np.abs(spec) + 1e-7)


TRAIN = transforms.Compose(
    [
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
)


def visual_part(folder):
    names = os.listdir(folder)
    chosen = np.random.choice(len(names), size=FPS, replace=False)
    chosen.sort()
    images = torch.zeros((FPS, 3, 224, 224))
    for i in range(FPS):
        # As the official loader: the i-th listed file, whatever was chosen.
        img = Image.open(os.path.join(folder, names[i])).convert("RGB")
        images[i] = TRAIN(img)
    return torch.permute(images, (1, 0, 2, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    np.random.seed(0)
    torch.manual_seed(0)

    clips = []
    with open(os.path.join(args.data, "train.csv"), encoding="UTF-8-sig") as f:
        for row in csv.reader(f):
            wav = os.path.join(args.data, "AudioWAV", row[0] + ".wav")
            frames = os.path.join(args.data, "Image-01-FPS", row[0])
            if os.path.exists(wav) and os.path.exists(frames):
                clips.append((wav, frames))
    clips = clips[: args.clips]

    whole, audio, visual = [], [], []
    for rnd in range(max(args.rounds, 2)):
        for wav, frames in clips:
            t = time.perf_counter()
            spec = audio_part(wav)
            images = visual_part(frames)
            t_whole = time.perf_counter() - t
            assert spec.shape == (257, 188) and images.shape == (3, FPS, 224, 224)

            t = time.perf_counter()
            audio_part(wav)
            t_audio = time.perf_counter() - t

            t = time.perf_counter()
            visual_part(frames)
            t_visual = time.perf_counter() - t
            if rnd > 0:
                whole.append(t_whole * 1e3)
                audio.append(t_audio * 1e3)
                visual.append(t_visual * 1e3)

    w, a, v = (float(np.median(x)) for x in (whole, audio, visual))
    print(
        f"RESULT impl=official-pytorch clips={len(clips)} timed={len(whole)} ms_per_clip={w:.3f} "
        f"audio_ms={a:.3f} visual_ms={v:.3f} clips_per_s={1e3 / w:.1f} "
        f"librosa={librosa.__version__} torch={torch.__version__}"
    )


if __name__ == "__main__":
    main()
