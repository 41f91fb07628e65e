#!/usr/bin/env python3
"""Writes the reference fixtures of the data pipeline under host/tests/fixtures/data/.

The references come from the official CREMA-D pipeline's own libraries: librosa (load, stft),
soundfile, PIL and torchvision. Run it with the project's torch environment:

    /root/.cache/ogm/torchenv/bin/python scripts/data_fixtures.py

The outputs are committed, so CI needs none of these libraries. Arrays are raw little-endian
files (f32 or u8) described by manifest.json (file, dtype, shape, and the parameters used).
Everything is deterministic (fixed seeds).
"""

import json
import os
import sys

import librosa
import numpy as np
import PIL
import soundfile as sf
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "tests", "fixtures", "data")
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

manifest = {
    "generator": "scripts/data_fixtures.py",
    "versions": {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "librosa": librosa.__version__,
        "soundfile": sf.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "PIL": PIL.__version__,
    },
    "arrays": {},
}


def save(name, arr, **params):
    arr = np.ascontiguousarray(arr)
    if arr.dtype == np.float32:
        dtype = "f32"
    elif arr.dtype == np.uint8:
        dtype = "u8"
    else:
        raise TypeError(arr.dtype)
    fname = name + "." + dtype
    arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(OUT, fname))
    manifest["arrays"][name] = {"file": fname, "dtype": dtype, "shape": list(arr.shape), **params}


def official_spectrogram(path):
    """CramedDataset.__getitem__'s audio part, verbatim in effect."""
    samples, _ = librosa.load(path, sr=22050)
    resamples = np.tile(samples, 3)[: 22050 * 3]
    resamples[resamples > 1.0] = 1.0
    resamples[resamples < -1.0] = -1.0
    spectrogram = librosa.stft(resamples, n_fft=512, hop_length=353)
    return np.log(np.abs(spectrogram) + 1e-7), samples


def official_vggsound_spectrogram(path, start_point):
    """VGGSound.__getitem__'s audio part, with its random start point given."""
    sample, rate = librosa.load(path, sr=16000, mono=True)
    while len(sample) / rate < 10.0:
        sample = np.tile(sample, 2)
    new_sample = sample[start_point : start_point + rate * 5]
    new_sample[new_sample > 1.0] = 1.0
    new_sample[new_sample < -1.0] = -1.0
    spectrogram = librosa.stft(new_sample, n_fft=256, hop_length=128)
    return np.log(np.abs(spectrogram) + 1e-7)


def vggsound_fixtures():
    # The 16 kHz stereo clip (1.5 s): mixdown only, no resampling at 16 kHz; doubled to 12 s.
    # Offsets 0 (what evaluation uses here), one inside, and the largest (5 s).
    for start in [0, 12345, 80000]:
        save(f"vgg_spec_{start}", official_vggsound_spectrogram(os.path.join(OUT, "speech_16000_stereo16.wav"), start),
             wav="speech_16000_stereo16.wav", start=start)


def test_signal(rng, n, sr):
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375.5 * t + 0.3)
    x += 0.15 * np.sin(2 * np.pi * (300 + 2000 * t / t[-1]) * t)  # a chirp
    x += 0.05 * rng.standard_normal(n)
    x *= np.minimum(1.0, t / 0.05)  # a soft onset
    return x


def audio_fixtures(rng):
    # 1.2 s at 22050 Hz, 16-bit mono: the exact path (no resampling). Tiling 3 times gives
    # 79380 >= 66150 samples, so the official code's tile/truncate is exercised.
    sr = 22050
    x = test_signal(rng, int(1.2 * sr), sr)
    p = os.path.join(OUT, "speech_22050_mono16.wav")
    sf.write(p, x, sr, subtype="PCM_16")
    spec, _ = official_spectrogram(p)
    save("spec_22050", spec.astype(np.float32), wav="speech_22050_mono16.wav")

    # 1.5 s at 16 kHz (CREMA-D's own rate), 16-bit stereo: mixdown and resampling.
    sr = 16000
    left = test_signal(rng, int(1.5 * sr), sr)
    right = 0.5 * left + 0.1 * rng.standard_normal(left.size)
    p = os.path.join(OUT, "speech_16000_stereo16.wav")
    sf.write(p, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    spec, loaded = official_spectrogram(p)
    save("spec_16000", spec.astype(np.float32), wav="speech_16000_stereo16.wav")
    save("load_16000", loaded.astype(np.float32), wav="speech_16000_stereo16.wav", sr=22050)

    # Decoding only (sr=None keeps the file's rate): 24-bit stereo and 32-bit float mono.
    sr = 44100
    y = 0.9 * rng.uniform(-1, 1, size=(int(0.1 * sr), 2))
    p = os.path.join(OUT, "pcm24_44100_stereo.wav")
    sf.write(p, y, sr, subtype="PCM_24")
    dec, _ = librosa.load(p, sr=None)
    save("decode_pcm24", dec.astype(np.float32), wav="pcm24_44100_stereo.wav", sr=sr)

    sr = 8000
    y = 0.7 * rng.uniform(-1, 1, size=int(0.2 * sr))
    p = os.path.join(OUT, "float_8000_mono.wav")
    sf.write(p, y, sr, subtype="FLOAT")
    dec, _ = librosa.load(p, sr=None)
    save("decode_float", dec.astype(np.float32), wav="float_8000_mono.wav", sr=sr)


def image_fixtures(rng):
    # A 300x200 frame with smooth gradients, edges and noise: downscaling in x, upscaling in y
    # for 224x224, downscaling both ways for 64x64.
    w, h = 300, 200
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3))
    img[..., 0] = 255 * xx / w
    img[..., 1] = 255 * yy / h
    img[..., 2] = 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)
    img[(xx - 200) ** 2 + (yy - 80) ** 2 < 40**2] = [250, 240, 20]
    img[120:170, 30:110] = [10, 30, 200]
    img += rng.normal(0, 12, img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    p = os.path.join(OUT, "frame_300x200.jpg")
    Image.fromarray(img).save(p, quality=90)

    pil = Image.open(p).convert("RGB")
    save("frame_rgb", np.asarray(pil), jpg="frame_300x200.jpg")

    norm = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    for size in (224, 64):
        t = transforms.Compose([transforms.Resize(size=(size, size))] + norm)
        save(f"test_{size}", t(pil).numpy(), jpg="frame_300x200.jpg", size=size)

    # The train transform's deterministic part: crop (top, left, height, width), bilinear
    # antialiased resize, horizontal flip, normalisation, as RandomResizedCrop + flip apply it.
    crops = {
        "crop_down": dict(top=13, left=27, height=150, width=190, size=48, flip=True),
        "crop_up": dict(top=100, left=200, height=30, width=40, size=64, flip=False),
    }
    for name, c in crops.items():
        x = TF.resized_crop(pil, c["top"], c["left"], c["height"], c["width"], [c["size"], c["size"]],
                            interpolation=transforms.InterpolationMode.BILINEAR, antialias=True)
        if c["flip"]:
            x = TF.hflip(x)
        x = transforms.Compose(norm)(x)
        save(name, x.numpy(), jpg="frame_300x200.jpg", **c)


def main():
    if sys.argv[1:] == ["--only-vggsound"]:
        # Adds the VGGSound arrays to the committed fixtures without rewriting the others.
        path = os.path.join(OUT, "manifest.json")
        with open(path) as f:
            committed = json.load(f)
        manifest["arrays"] = committed["arrays"]
        vggsound_fixtures()
        committed["arrays"] = manifest["arrays"]
        with open(path, "w") as f:
            json.dump(committed, f, indent=1, sort_keys=True)
            f.write("\n")
        return
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20220301)
    audio_fixtures(rng)
    vggsound_fixtures()
    image_fixtures(rng)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1e6:.2f} MB, under {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
