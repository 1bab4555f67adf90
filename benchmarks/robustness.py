"""Robustness of a model's labels (issue 21): does the label survive a mirror, a JPEG re-encode
at quality 75, and scaling by 0.5x and 2x?

For every image of the sample, the label ``recognise`` gives the original is compared with the
label it gives each altered copy (the largest face of each; an altered copy where no face is
found counts as a change). The shipped model was trained on every face of JAFFE and FER-2013
(test part included): these are label-agreement figures, not accuracy.

Each set is measured twice in the same run: with mirror averaging (``recognise``'s default: the
mean of a face's features and its mirror image's) and without it (``mirror=False``).

    python benchmarks/robustness.py [--fer 500] [--seed 0] [--model FILE] [--detector auto]
"""

import glob
import io
import os
import random
import sys
import time

import click
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")


def _jpeg(image, quality=75):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def _scale(image, factor):
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=interp)


ALTERATIONS = {
    "mirrored": lambda im: np.ascontiguousarray(im[:, ::-1]),
    "JPEG quality 75": _jpeg,
    "scaled 0.5x": lambda im: _scale(im, 0.5),
    "scaled 2x": lambda im: _scale(im, 2.0),
}


@click.command()
@click.option("--fer", "fer_count", default=500, show_default=True, help="FER-2013 test images to draw")
@click.option("--seed", default=0, show_default=True)
@click.option("--model", "model_path", default=None, help="model file (default: the shipped one)")
@click.option("--detector", default=None, help="override the model's detector")
def main(fer_count, seed, model_path, detector):
    from classifiers import load_model, recognise
    from landmarks.io import read_image

    model = load_model(model_path)
    rng = random.Random(seed)
    sets = {
        f"FER-2013 test (seeded sample of {fer_count})": rng.sample(
            sorted(glob.glob(os.path.join(DATASETS, "fer2013", "test", "*", "*.jpg"))), fer_count),
        "JAFFE (all 213)": sorted(glob.glob(os.path.join(DATASETS, "jaffe", "*", "*.tiff"))),
    }
    started = time.time()
    print("\n| images | prediction | with a face | " + " | ".join(f"same label, {a}" for a in ALTERATIONS) + " |")
    print("|---|---|---|" + "---|" * len(ALTERATIONS))
    for name, paths in sets.items():
        for mirror in (False, True):
            same = {a: 0 for a in ALTERATIONS}
            counted = 0
            for path in paths:
                image = read_image(path)
                original = recognise(image, model=model, detector=detector, mirror=mirror)
                if not original:
                    continue
                counted += 1
                for alteration, alter in ALTERATIONS.items():
                    faces = recognise(alter(image), model=model, detector=detector, mirror=mirror)
                    same[alteration] += bool(faces) and faces[0].label == original[0].label
            print(f"| {name} | {'as recognise reads it' if mirror else 'one view'} | {counted} | "
                  + " | ".join(f"{same[a] / max(counted, 1):.1%}" for a in ALTERATIONS) + " |")
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
