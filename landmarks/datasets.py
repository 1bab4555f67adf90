"""Labelled datasets: class-per-folder layouts, FER-2013 folders, the original fer2013.csv, and
UTKFace (age and gender in the file names).

One canonical label set; every dataset's class names map onto it in :data:`common.labels.LABEL_ALIASES`.
"""

import csv
import os
import re
from dataclasses import dataclass, field

import numpy as np

from common.errors import DatasetError
from common.labels import UTKFACE_GENDER_CODES, canonical_label

#: fer2013.csv's integer ``emotion`` column.
FER2013_CSV_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".pgm", ".ppm")

#: Subject id from a file name, per preset (None: subjects unknown).
SUBJECT_PATTERNS = {
    "ckplus48": r"^(S\d+)_",
    "jaffe": r"^([A-Z]{2})\.",
    "fer2013": None,
    "ferplus": None,
    "folder": None,
    "utkface": None,
}
PRESETS = tuple(SUBJECT_PATTERNS)
#: What a preset's numeric sample targets (:attr:`Sample.target`) are; a feature table records it.
TARGET_NAMES = {"utkface": "age"}


@dataclass
class Sample:
    """One labelled image: a file (``path``) or pixels held in memory (``pixels``)."""

    source: str
    label: str
    subject: str = ""
    split: str = ""
    path: str = None
    pixels: np.ndarray = field(default=None, repr=False)
    target: float = None      # a numeric target (UTKFace: age in years), None where there is none


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _class_folders(root):
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def load_class_folders(root, subject_pattern=None, split="", labels_known_only=True):
    """Samples of a ``root/<class>/<image>`` tree, sorted by class then file name.

    ``subject_pattern`` is a regex whose first group is the subject id in the file name.
    Folders whose name is not a known class raise DatasetError unless
    ``labels_known_only=False`` (then they are skipped).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder")
    regex = re.compile(subject_pattern) if subject_pattern else None
    samples = []
    for folder in _class_folders(root):
        try:
            label = canonical_label(folder)
        except DatasetError:
            if labels_known_only:
                raise
            continue
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if not _is_image_name(name):
                continue
            subject = ""
            if regex is not None:
                match = regex.search(name)
                if match is None:
                    raise DatasetError(f"{folder}/{name}: no subject id matches {subject_pattern!r}")
                subject = match.group(1)
            path = os.path.join(root, folder, name)
            samples.append(Sample(source=path, label=label, subject=subject, split=split, path=path))
    if not samples:
        raise DatasetError(f"{root}: no images in class folders (expected {root}/<class>/<image>)")
    return samples


def fer2013_usage(name):
    """'Training', 'PublicTest' or 'PrivateTest' from a FER-2013 image-folder file name."""
    for usage in ("Training", "PublicTest", "PrivateTest"):
        if os.path.basename(name).startswith(usage):
            return usage
    return ""


def load_fer2013_folders(root):
    """FER-2013 image-folder release: ``root/train/<class>/`` and ``root/test/<class>/``.

    ``split`` is the original Usage column: Training, PublicTest or PrivateTest.
    """
    samples = []
    for part in ("train", "test"):
        folder = os.path.join(root, part)
        if not os.path.isdir(folder):
            raise DatasetError(f"{root}: expected train/ and test/ folders (FER-2013 layout)")
        for s in load_class_folders(folder):
            s.split = fer2013_usage(s.path) or ("Training" if part == "train" else "PublicTest")
            samples.append(s)
    return samples


def load_fer2013_csv(path):
    """Samples of the original ``fer2013.csv`` (columns emotion, pixels, Usage), pixels in memory."""
    samples = []
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"emotion", "pixels"} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: not a fer2013.csv (missing columns {sorted(missing)})")
            for row_number, row in enumerate(reader):
                if row["emotion"] is None or row["pixels"] is None:
                    raise DatasetError(f"{path}: row {row_number + 2} has too few fields")
                values = np.array(row["pixels"].split(), dtype=np.int64)
                side = int(round(np.sqrt(values.size)))
                if side * side != values.size or values.size == 0 or values.min() < 0 or values.max() > 255:
                    raise DatasetError(f"{path}: row {row_number + 2} does not hold a square 8-bit image")
                emotion = int(row["emotion"])
                if not 0 <= emotion < len(FER2013_CSV_LABELS):
                    raise DatasetError(f"{path}: row {row_number + 2} has emotion {emotion} outside 0..6")
                samples.append(Sample(source=f"{os.path.basename(path)}#{row_number}",
                                      label=FER2013_CSV_LABELS[emotion], split=row.get("Usage", ""),
                                      pixels=values.astype(np.uint8).reshape(side, side)))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, OverflowError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot read as fer2013.csv ({exc})") from None
    if not samples:
        raise DatasetError(f"{path}: no rows")
    return samples


def ferplus_key(path):
    """The key of a FER-2013 image in ferplus.csv: ``train|test/<class>/<file>`` for the folder
    release, ``fer2013.csv#<row>`` for a row of the original csv (FER+ numbers its images by row)."""
    path = os.fspath(path)
    if re.search(r"\.csv#\d+$", path):
        return "fer2013.csv#" + path.rsplit("#", 1)[1]
    return "/".join(os.path.normpath(path).replace(os.sep, "/").split("/")[-3:])


def load_ferplus_votes(path):
    """{image key (:func:`ferplus_key`): (FER+ usage, int array of the 10 vote counts)} of ferplus.csv."""
    from common.labels import FERPLUS_VOTES

    votes = {}
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"image", "ferplus_usage", *FERPLUS_VOTES} - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: not a ferplus.csv (missing columns {sorted(missing)})")
            for row in reader:
                entry = (row["ferplus_usage"], np.array([int(row[c]) for c in FERPLUS_VOTES]))
                votes[ferplus_key(row["image"])] = entry
                number = re.fullmatch(r"fer(\d+)\.png", row.get("ferplus_image") or "")
                if number:
                    votes[f"fer2013.csv#{int(number.group(1))}"] = entry
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read as ferplus.csv ({exc})") from None
    if not votes:
        raise DatasetError(f"{path}: no rows")
    return votes


def load_ferplus(root, votes_path=None):
    """FER-2013 folder images with their FER+ majority label and FER+ usage as the split.

    Images without a FER+ row, or whose FER+ winner is unknown, not-a-face or a tie, are left
    out. ``votes_path`` defaults to ``root/ferplus.csv``.
    """
    from common.labels import ferplus_majority

    votes = load_ferplus_votes(votes_path or os.path.join(root, "ferplus.csv"))
    samples = []
    for sample in load_fer2013_folders(root):
        usage, counts = votes.get(ferplus_key(sample.path), (None, None))
        label = ferplus_majority(counts) if counts is not None else None
        if label is not None:
            sample.label, sample.split = label, usage
            samples.append(sample)
    return samples


def write_fer2013_csv(samples_and_pixels, path):
    """Write ``(label, usage, pixels)`` rows in the original fer2013.csv format."""
    from common.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for label, usage, pixels in samples_and_pixels:
            writer.writerow([FER2013_CSV_LABELS.index(label), " ".join(str(int(v)) for v in np.ravel(pixels)), usage])


#: UTKFace's ``AGE_GENDER_RACE_TIMESTAMP.jpg``: only age and gender are read. The race field is
#: never a target or a feature, so it is not even parsed.
UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_")


def load_utkface(root):
    """Samples of a UTKFace folder (images directly inside, sorted by name): ``label`` is the
    apparent gender ("female"/"male"), ``target`` the age in years; no subjects, no splits.
    Raises DatasetError naming the first file whose name does not start with AGE_GENDER_."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: not a folder")
    samples, bad = [], []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not _is_image_name(name) or not os.path.isfile(path):
            continue
        match = UTKFACE_NAME.match(name)
        if match is None:
            bad.append(name)
            continue
        age, gender = match.groups()
        samples.append(Sample(source=path, label=UTKFACE_GENDER_CODES[gender], path=path, target=float(age)))
    if bad:
        raise DatasetError(f"{root}: {len(bad)} image names do not follow UTKFace's AGE_GENDER_RACE_TIMESTAMP.jpg "
                           f"(gender 0 or 1), e.g. {bad[0]!r}")
    if not samples:
        raise DatasetError(f"{root}: no images named AGE_GENDER_RACE_TIMESTAMP.jpg (UTKFace layout)")
    return samples


def guess_preset(path):
    """The preset a dataset path looks like."""
    path = os.fspath(path)
    if os.path.isfile(path) and path.lower().endswith(".csv"):
        return "fer2013"
    if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test")):
        return "fer2013"
    name = os.path.basename(os.path.normpath(path)).lower()
    if "ck" in name:
        return "ckplus48"
    if "jaffe" in name:
        return "jaffe"
    if "utk" in name:
        return "utkface"
    return "folder"


def load_dataset(path, preset=None):
    """Samples of a dataset at ``path`` with ``preset`` in :data:`PRESETS` (guessed if None)."""
    path = os.fspath(path)
    preset = preset or guess_preset(path)
    if preset not in SUBJECT_PATTERNS:
        raise DatasetError(f"unknown preset {preset!r}; choose from {PRESETS}")
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or folder")
    if preset == "ferplus":
        if os.path.isfile(path):
            raise DatasetError(f"{path}: the ferplus preset reads the FER-2013 folder release beside ferplus.csv")
        return load_ferplus(path)
    if preset == "fer2013":
        if os.path.isfile(path):
            return load_fer2013_csv(path)
        return load_fer2013_folders(path)
    if preset == "utkface":
        return load_utkface(path)
    return load_class_folders(path, SUBJECT_PATTERNS[preset])
