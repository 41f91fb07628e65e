#!/usr/bin/env python3
"""Writes VGGSound's split files and class list in the layout `ogm train` reads.

The official `vggsound.csv` has rows `ytid,start,label,split` (split: train or test). This
writes, under --out:

    train.csv, test.csv   rows `<ytid>_<start>,<label>` (labels with commas double-quoted,
                          as Python's csv writes them and `ogm` reads them)
    classes.txt           one label a line, in the official VGGSound loader's order: order
                          of first appearance among the training rows kept
    train_flags.txt       the `ogm train` flags for this data (with the media folders given)

Where the media are, so that a row is kept only when its WAV exists and its frame folder
holds more than three files (the official loader's filter, which also decides its class
order: give the folders to import a model trained by the official code):

    --official_root ROOT  the official preprocessing's layout: ROOT/train-audios/train-set,
                          ROOT/test-audios/test-set, ROOT/{train,test}-videos/
                          {train,test}-set-img/Image-01-FPS/<clip>.mp4/
    --audio_dir, --frames_dir             the training clips' WAVs and frame folders
                                          (the Image-01-FPS folder itself)
    --test_audio_dir, --test_frames_dir   the test clips', when apart (default: the above)
    --frame_dir_suffix S                  frame folders are named <clip>S (e.g. .mp4)

Without folders every row is kept. Standard library only.
"""

import argparse
import csv
import os
import shlex
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--csv", required=True, help="the official vggsound.csv")
    p.add_argument("--out", required=True, help="folder for train.csv, test.csv, classes.txt")
    p.add_argument("--official_root", help="root of the official preprocessing's layout")
    p.add_argument("--audio_dir", help="folder of the training <clip>.wav files")
    p.add_argument("--frames_dir", help="folder of the training clips' frame folders")
    p.add_argument("--test_audio_dir", help="folder of the test <clip>.wav (default: --audio_dir)")
    p.add_argument("--test_frames_dir", help="test frame folders (default: --frames_dir)")
    p.add_argument("--frame_dir_suffix", default="", help="frame folders are <clip><suffix>")
    p.add_argument("--fps", type=int, default=1, help="the Image-XX-FPS folder's rate (1)")
    a = p.parse_args()
    image_dir = "Image-{:02d}-FPS".format(a.fps)
    if a.official_root is not None:
        if a.audio_dir or a.frames_dir or a.test_audio_dir or a.test_frames_dir:
            sys.exit("vggsound_splits: --official_root names every folder; give no other")
        r = a.official_root
        a.audio_dir = os.path.join(r, "train-audios", "train-set")
        a.test_audio_dir = os.path.join(r, "test-audios", "test-set")
        a.frames_dir = os.path.join(r, "train-videos", "train-set-img", image_dir)
        a.test_frames_dir = os.path.join(r, "test-videos", "test-set-img", image_dir)
        a.frame_dir_suffix = a.frame_dir_suffix or ".mp4"
    if (a.audio_dir is None) != (a.frames_dir is None):
        sys.exit("vggsound_splits: give both --audio_dir and --frames_dir, or neither")
    if a.audio_dir is None and (a.test_audio_dir or a.test_frames_dir):
        sys.exit("vggsound_splits: --test_audio_dir and --test_frames_dir need --audio_dir "
                 "and --frames_dir")
    if any(c in a.frame_dir_suffix for c in "/\\\0"):
        sys.exit("vggsound_splits: --frame_dir_suffix is the end of a folder name, such as .mp4")
    folders = {
        "train": (a.audio_dir, a.frames_dir),
        "test": (a.test_audio_dir or a.audio_dir, a.test_frames_dir or a.frames_dir),
    }
    for split, dirs in folders.items():
        for d in dirs:
            if d is not None and not os.path.isdir(d):
                sys.exit(f"vggsound_splits: {split} folder {d} does not exist")

    def usable(clip, split):
        audio_dir, frames_dir = folders[split]
        if audio_dir is None:
            return True
        frames = os.path.join(frames_dir, clip + a.frame_dir_suffix)
        return (os.path.isfile(os.path.join(audio_dir, clip + ".wav"))
                and os.path.isdir(frames) and len(os.listdir(frames)) > 3)

    rows = {"train": [], "test": []}
    classes = []
    with open(a.csv, newline="", encoding="utf-8") as f:
        for n, item in enumerate(csv.reader(f), 1):
            if len(item) < 4:
                sys.exit(f"vggsound_splits: {a.csv}:{n}: expected ytid,start,label,split")
            clip, label, split = f"{item[0]}_{item[1]}", item[2], item[3]
            if split not in rows or not usable(clip, split):
                continue
            rows[split].append((clip, label))
            if split == "train" and label not in classes:
                classes.append(label)
    test_labels = {label for _, label in rows["test"]}
    missing = sorted(test_labels - set(classes))
    if missing:
        print(f"vggsound_splits: {len(missing)} test labels have no training clip "
              f"(their rows will be skipped by ogm): {missing[:5]}", file=sys.stderr)

    os.makedirs(a.out, exist_ok=True)
    for split, kept in rows.items():
        with open(os.path.join(a.out, f"{split}.csv"), "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(kept)
    with open(os.path.join(a.out, "classes.txt"), "w", encoding="utf-8") as f:
        f.writelines(c + "\n" for c in classes)

    flags = ["--dataset", "VGGSound", "--classes_file", os.path.join(a.out, "classes.txt"),
             "--train_csv", os.path.join(a.out, "train.csv"),
             "--test_csv", os.path.join(a.out, "test.csv"),
             "--audio_frontend", "vggsound", "--use_video_frames", "3", "--alpha", "0.1"]
    if a.audio_dir is not None:
        # ogm takes the folder holding Image-XX-FPS.
        flags += ["--fps", str(a.fps), "--audio_path", a.audio_dir,
                  "--visual_path", os.path.dirname(os.path.normpath(a.frames_dir))]
        if folders["test"] != folders["train"]:
            flags += ["--test_audio_path", folders["test"][0],
                      "--test_visual_path", os.path.dirname(os.path.normpath(folders["test"][1]))]
        if a.frame_dir_suffix:
            flags += ["--frame_dir_suffix", a.frame_dir_suffix]
    line = " ".join(shlex.quote(f) for f in flags)
    with open(os.path.join(a.out, "train_flags.txt"), "w", encoding="utf-8") as f:
        f.write(line + "\n")
    print(f"wrote {a.out}: {len(rows['train'])} train, {len(rows['test'])} test clips, "
          f"{len(classes)} classes\ntrain with: ogm train {line}")


if __name__ == "__main__":
    main()
