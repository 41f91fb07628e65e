#!/usr/bin/env python3
"""Writes VGGSound's split files and class list in the layout `ogm train` reads.

The official `vggsound.csv` has rows `ytid,start,label,split` (split: train or test). This
writes, under --out:

    train.csv, test.csv   rows `<ytid>_<start>,<label>` (labels with commas double-quoted,
                          as Python's csv writes them and `ogm` reads them)
    classes.txt           one label a line, in the official VGGSound loader's order: order
                          of first appearance among the training rows kept

With --audio_dir and --frames_dir, a row is kept only when `<audio_dir>/<clip>.wav` exists
and `<frames_dir>/<clip>` holds more than three files, the official loader's filter (which
also decides its class order: pass them to import a model trained by the official code).
Without them every row is kept. Then train with

    ogm train --dataset VGGSound --classes_file OUT/classes.txt \\
        --train_csv OUT/train.csv --test_csv OUT/test.csv --audio_path AUDIO \\
        --visual_path VISUAL --audio_frontend vggsound --use_video_frames 3 --alpha 0.1

where AUDIO holds both splits' WAVs and VISUAL/Image-01-FPS/<clip>/ each clip's frames.
Standard library only.
"""

import argparse
import csv
import os
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--csv", required=True, help="the official vggsound.csv")
    p.add_argument("--out", required=True, help="folder for train.csv, test.csv, classes.txt")
    p.add_argument("--audio_dir", help="folder of <clip>.wav (enables the official filter)")
    p.add_argument("--frames_dir", help="folder of <clip>/ frame folders (Image-01-FPS)")
    a = p.parse_args()
    if (a.audio_dir is None) != (a.frames_dir is None):
        sys.exit("vggsound_splits: give both --audio_dir and --frames_dir, or neither")

    def usable(clip):
        if a.audio_dir is None:
            return True
        frames = os.path.join(a.frames_dir, clip)
        return (os.path.isfile(os.path.join(a.audio_dir, clip + ".wav"))
                and os.path.isdir(frames) and len(os.listdir(frames)) > 3)

    rows = {"train": [], "test": []}
    classes = []
    with open(a.csv, newline="", encoding="utf-8") as f:
        for n, item in enumerate(csv.reader(f), 1):
            if len(item) < 4:
                sys.exit(f"vggsound_splits: {a.csv}:{n}: expected ytid,start,label,split")
            clip, label, split = f"{item[0]}_{item[1]}", item[2], item[3]
            if split not in rows or not usable(clip):
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
    print(f"wrote {a.out}: {len(rows['train'])} train, {len(rows['test'])} test clips, "
          f"{len(classes)} classes")


if __name__ == "__main__":
    main()
