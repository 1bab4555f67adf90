"""Face detection in the wild (issue 21): does ``auto`` find every face, with the right box?

Two parts, every random choice seeded:

* ``training``: the datasets the shipped model was trained on (CK+48, JAFFE, a seeded FER-2013
  sample). For each image, the box of the new ``auto`` rule against the box the old rule gave
  (``whole`` for images up to 128 px, ``hog`` above): the model's training boxes. A face the new
  rule boxes differently is a face whose features differ from those the model was trained on.
* ``wild``: UTKFace crops (200x200, in-the-wild faces) made into loose photos. The reference box
  is dlib's HOG box on the original crop (one upsampling step; crops where it finds nothing are
  left out and counted). Each crop is resized so that the reference box is W px wide, W drawn
  uniformly from 40-200, and pasted at a random place into a canvas whose width and height are
  each 1.5-3x the resized crop's, filled with one of three backgrounds drawn at random:
  a flat grey (random level), smoothed noise (random mean and contrast), or the crop's border
  pixels replicated outwards. A face is *found with the right box* when the largest box returned
  has IoU >= 0.5 with the reference box mapped into the canvas.

* ``effect``: what the FER-2013 faces whose box changes do to accuracy, held out. A logistic
  regression (the default model's pipeline, C 0.01, every default group) is fitted on a seeded
  sample of FER-2013 Training described with the old rule's boxes (as the shipped model was
  trained), then tested on every FER-2013 test image (PublicTest + PrivateTest) whose ``auto``
  box changed: once with the old box, once with the new one.

    python benchmarks/detection_wild.py [--part training|wild|effect|all] [--wild 1000] [--fer 3000]
        [--cnn 200] [--train 6000] [--seed 0]
"""

import glob
import os
import random
import sys
import time

import click
import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")


def old_auto(image, upsample=0):
    """The rule before issue 21: whole for images up to 128 px, HOG above."""
    from landmarks.detect import detect_faces

    return detect_faces(image, "whole" if max(image.shape[:2]) <= 128 else "hog", upsample)


def cnn_levels(image):
    """MMOD with auto's upsampling steps (one more step while nothing is found and budget allows)."""
    from landmarks.detect import auto_levels, detect_faces

    for level in auto_levels(image.shape, 0):
        boxes = detect_faces(image, "cnn", level)
        if boxes:
            return boxes
    return []


def methods():
    from landmarks.detect import detect_faces

    return {
        "old auto (<=128 px whole, else hog)": old_auto,
        "hog": lambda im: detect_faces(im, "hog", 0),
        "hog, upsample 1": lambda im: detect_faces(im, "hog", 1),
        "auto (new)": lambda im: detect_faces(im, "auto", 0),
    }


def training_part(fer_count, seed):
    from landmarks.detect import detect_faces, iou
    from landmarks.io import read_image

    rng = random.Random(seed)
    fer = sorted(glob.glob(os.path.join(DATASETS, "fer2013", "t*", "*", "*.jpg")))
    sets = {
        "CK+48": sorted(glob.glob(os.path.join(DATASETS, "ckplus48", "*", "*.png"))),
        "JAFFE": sorted(glob.glob(os.path.join(DATASETS, "jaffe", "*", "*.tiff"))),
        f"FER-2013 (seeded sample of {fer_count} of {len(fer)})": rng.sample(fer, min(fer_count, len(fer))),
    }
    print("\n| dataset | images | old rule finds | new auto finds | same box as old rule | new box differs (IoU < 1) | lost (old found, new not) | gained | s per image (new) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, files in sets.items():
        old_found = new_found = same = differs = lost = gained = 0
        spent = 0.0
        examples = []
        for path in files:
            image = read_image(path)
            old = old_auto(image)
            started = time.perf_counter()
            new = detect_faces(image, "auto")
            spent += time.perf_counter() - started
            old_found += bool(old)
            new_found += bool(new)
            if old and new:
                if iou(old[0], new[0]) >= 0.999:
                    same += 1
                else:
                    differs += 1
                    examples.append((os.path.relpath(path, DATASETS), old[0], new[0]))
            elif old and not new:
                lost += 1
                examples.append((os.path.relpath(path, DATASETS), old[0], None))
            elif new:
                gained += 1
                examples.append((os.path.relpath(path, DATASETS), None, new[0]))
        n = len(files)
        print(f"| {name} | {n:,} | {old_found / n:.1%} | {new_found / n:.1%} | {same / n:.1%} | {differs} | {lost} | {gained} "
              f"| {spent / n * 1000:.1f} ms |")
        for example in examples[:8]:
            print("    ", example, file=sys.stderr)


def _background(rng, height, width, crop, x, y):
    kind = rng.choice(["flat", "noise", "replicate"])
    channels = crop.shape[2] if crop.ndim == 3 else 1
    if kind == "flat":
        canvas = np.full((height, width, channels), rng.randint(0, 255), dtype=np.uint8)
    elif kind == "noise":
        nprng = np.random.default_rng(rng.randrange(2 ** 32))
        noise = nprng.normal(size=(height, width, channels)).astype(np.float32)
        sigma = rng.uniform(2, 12)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma).reshape(height, width, channels)
        noise = (noise - noise.mean()) / (noise.std() + 1e-6)
        canvas = np.clip(rng.uniform(40, 215) + rng.uniform(10, 60) * noise, 0, 255).astype(np.uint8)
    else:
        h, w = crop.shape[:2]
        canvas = cv2.copyMakeBorder(crop, y, height - h - y, x, width - w - x, cv2.BORDER_REPLICATE)
        canvas = canvas.reshape(height, width, channels)
    canvas = canvas[:, :, 0] if channels == 1 else canvas
    canvas[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    return kind, canvas


def make_canvas(rng, image, reference):
    """(canvas, true box, background kind) for one UTKFace crop: see the module docstring."""
    width = rng.uniform(40, 200)
    factor = width / reference[2]
    size = (max(1, int(round(image.shape[1] * factor))), max(1, int(round(image.shape[0] * factor))))
    crop = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    ch, cw = crop.shape[:2]
    height, wide = int(round(ch * rng.uniform(1.5, 3.0))), int(round(cw * rng.uniform(1.5, 3.0)))
    x, y = rng.randint(0, wide - cw), rng.randint(0, height - ch)
    kind, canvas = _background(rng, height, wide, crop, x, y)
    rx, ry, rw, rh = reference
    truth = (rx * factor + x, ry * factor + y, rw * factor, rh * factor)
    return canvas, truth, kind, width


def wild_part(count, cnn_count, seed):
    from landmarks.detect import detect_faces, iou
    from landmarks.io import read_image

    rng = random.Random(seed)
    files = rng.sample(sorted(glob.glob(os.path.join(DATASETS, "utkface", "*.jpg"))), count)
    cases, no_reference = [], 0
    for path in files:
        image = read_image(path)
        reference = detect_faces(image, "hog", 1)
        if not reference:
            no_reference += 1
            continue
        canvas, truth, kind, width = make_canvas(rng, image, reference[0])
        cases.append((path, canvas, truth, kind, width))
    sides = [max(c[1].shape[:2]) for c in cases]
    print(f"\nUTKFace: {count} crops drawn (seed {seed}); {no_reference} without a reference HOG box left out; "
          f"{len(cases)} canvases, longer side {min(sides)}-{max(sides)} px (median {int(np.median(sides))})")
    runs = methods()
    if cnn_count:
        runs["cnn (MMOD)"] = lambda im: detect_faces(im, "cnn", 0)
        runs["cnn (MMOD), auto's upsampling steps"] = cnn_levels
    print("\n| detector | canvases | found a face | right box (largest) | right box (any) | right box, faces 40-80 px | mean time per canvas |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        subset = cases[:cnn_count] if name.startswith("cnn") else cases
        found = right = right_any = small = small_right = 0
        spent = 0.0
        misses = []
        for path, canvas, truth, kind, width in subset:
            started = time.perf_counter()
            boxes = run(canvas)
            spent += time.perf_counter() - started
            found += bool(boxes)
            ok = bool(boxes) and iou(boxes[0], truth) >= 0.5
            right += ok
            right_any += any(iou(b, truth) >= 0.5 for b in boxes)
            if width < 80:
                small += 1
                small_right += ok
            if not ok and name == "auto (new)":
                misses.append((os.path.basename(path), kind, round(width), canvas.shape[:2], boxes[:1]))
        n = len(subset)
        print(f"| {name} | {n:,} | {found / n:.1%} | **{right / n:.1%}** | {right_any / n:.1%} | "
              f"{small_right / max(small, 1):.1%} of {small} | {spent / n * 1000:.0f} ms |")
        for miss in misses[:15]:
            print("    miss:", miss, file=sys.stderr)


def effect_part(train_count, seed):
    from classifiers.models import make_pipeline
    from features.describe import FeatureConfig, describe_image
    from landmarks.datasets import load_fer2013_folders
    from landmarks.detect import detect_faces, iou
    from landmarks.io import read_image

    config = FeatureConfig()
    samples = load_fer2013_folders(os.path.join(DATASETS, "fer2013"))
    train = random.Random(seed).sample([s for s in samples if s.split == "Training"], train_count)
    test = [s for s in samples if s.split != "Training"]
    X, y = [], []
    for sample in train:
        image = read_image(sample.path)
        _, rows, _ = describe_image(image, config, boxes=old_auto(image))
        if len(rows):
            X.append(rows[0])
            y.append(sample.label)
    names, slices = config.columns()
    model = make_pipeline("logreg", slices, seed=seed).set_params(model__C=0.01)
    model.fit(np.vstack(X), np.array(y))
    changed = []
    for sample in test:
        image = read_image(sample.path)
        old, new = old_auto(image), detect_faces(image, "auto")
        if not (old and new and iou(old[0], new[0]) >= 0.999):
            changed.append((sample, image, old, new))
    right = {"old box": 0, "new box": 0}
    lost = 0
    for sample, image, old, new in changed:
        for name, boxes in (("old box", old), ("new box", new)):
            if not boxes:
                lost += name == "new box"
                continue
            _, rows, _ = describe_image(image, config, boxes=boxes[:1])
            if len(rows):
                right[name] += model.predict(rows[:1])[0] == sample.label
    n = len(changed)
    print(f"\nFER-2013: logreg (C 0.01) fitted on {len(y):,} Training faces (seed {seed}, old-rule boxes); "
          f"{n} of {len(test):,} test images change box under the new auto ({n / len(test):.1%}; {lost} lose it)")
    print("\n| boxes of the changed test images | right on them | accuracy change over the whole test split |")
    print("|---|---|---|")
    for name, count in right.items():
        print(f"| {name} | {count} of {n} ({count / max(n, 1):.1%}) | "
              f"{(count - right['old box']) / len(test):+.2%} |")


@click.command()
@click.option("--part", type=click.Choice(["training", "wild", "effect", "all"]), default="all")
@click.option("--wild", "wild_count", default=1000, show_default=True, help="UTKFace crops to draw")
@click.option("--fer", "fer_count", default=3000, show_default=True, help="FER-2013 images to draw")
@click.option("--cnn", "cnn_count", default=200, show_default=True, help="canvases to run the CNN on (0: none)")
@click.option("--train", "train_count", default=6000, show_default=True, help="FER-2013 Training faces for 'effect'")
@click.option("--seed", default=0, show_default=True)
def main(part, wild_count, fer_count, cnn_count, train_count, seed):
    started = time.time()
    if part in ("training", "all"):
        training_part(fer_count, seed)
    if part in ("wild", "all"):
        wild_part(wild_count, cnn_count, seed)
    if part in ("effect", "all"):
        effect_part(train_count, seed)
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
