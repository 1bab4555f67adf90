"""Dataset loaders on the real CK+48, JAFFE and FER-2013 folders, the fer2013.csv format and the label table."""

import collections
import csv
import os
import re

import numpy as np
import pytest

from common.labels import EMOTIONS, LABEL_ALIASES, canonical_label
from landmarks.datasets import (FER2013_CSV_LABELS, PRESETS, guess_preset, load_class_folders, load_dataset, load_fer2013_csv,
                                load_fer2013_folders, write_fer2013_csv)
from common.errors import DatasetError
from landmarks.io import read_image

CKPLUS_COUNTS = {"angry": 135, "contempt": 54, "disgust": 177, "fear": 75, "happy": 207, "sad": 84, "surprise": 249}
JAFFE_COUNTS = {"angry": 30, "disgust": 29, "fear": 32, "happy": 31, "neutral": 30, "sad": 31, "surprise": 30}
FER_TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
                    "surprise": 3171}
FER_TEST_COUNTS = {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233, "sad": 1247,
                   "surprise": 831}


# --- CK+48 ---------------------------------------------------------------------------------------

def test_ckplus_counts_labels_subjects(ckplus_dir, ckplus_samples):
    samples = ckplus_samples
    assert len(samples) == 981
    assert dict(collections.Counter(s.label for s in samples)) == CKPLUS_COUNTS
    assert len({s.subject for s in samples}) == 118
    assert all(re.fullmatch(r"S\d{3}", s.subject) for s in samples)
    by_name = {os.path.basename(s.path): s for s in samples}
    target = by_name["S010_004_00000017.png"]
    assert target.subject == "S010"
    assert target.label == "angry"  # the file sits in anger/
    assert target.path == target.source == os.path.join(str(ckplus_dir), "anger", "S010_004_00000017.png")
    for s in samples:
        assert os.path.basename(s.path).startswith(s.subject + "_")
        assert os.path.isfile(s.path) and s.split == "" and s.pixels is None
    # the folder name, mapped through the one alias table, is the label
    folder_of = {s.path: os.path.basename(os.path.dirname(s.path)) for s in samples}
    assert {(folder_of[s.path], s.label) for s in samples} == {
        ("anger", "angry"), ("contempt", "contempt"), ("disgust", "disgust"), ("fear", "fear"),
        ("happy", "happy"), ("sadness", "sad"), ("surprise", "surprise")}


def test_ckplus_samples_are_sorted_and_deterministic(ckplus_dir, ckplus_samples):
    again = load_dataset(ckplus_dir, "ckplus48")
    assert [s.path for s in again] == [s.path for s in ckplus_samples]
    keys = [(os.path.basename(os.path.dirname(s.path)), os.path.basename(s.path)) for s in ckplus_samples]
    assert keys == sorted(keys)


# --- JAFFE ---------------------------------------------------------------------------------------

def test_jaffe_counts_labels_subjects(jaffe_samples):
    samples = jaffe_samples
    assert len(samples) == 213
    assert dict(collections.Counter(s.label for s in samples)) == JAFFE_COUNTS
    subjects = collections.Counter(s.subject for s in samples)
    assert sorted(subjects) == ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
    assert all(19 <= n <= 23 for n in subjects.values()), subjects
    by_name = {os.path.basename(s.path): s for s in samples}
    assert by_name["KA.AN1.39.tiff"].subject == "KA" and by_name["KA.AN1.39.tiff"].label == "angry"
    for s in samples:
        # <SUBJECT>.<EXPR><take>.<id>.tiff: the expression code maps to the folder's label
        subject, expr = re.fullmatch(r"([A-Z]{2})\.([A-Z]{2})\d\.\d+\.tiff", os.path.basename(s.path)).groups()
        assert subject == s.subject
        assert canonical_label(expr) == s.label, s.path


# --- FER-2013 folders ----------------------------------------------------------------------------

def test_fer2013_folders(fer_dir):
    samples = load_fer2013_folders(fer_dir)
    assert len(samples) == 28709 + 3589 + 3589
    assert collections.Counter(s.split for s in samples) == {"Training": 28709, "PublicTest": 3589,
                                                             "PrivateTest": 3589}
    train = collections.Counter(s.label for s in samples if s.split == "Training")
    test = collections.Counter(s.label for s in samples if s.split != "Training")
    assert dict(train) == FER_TRAIN_COUNTS and dict(test) == FER_TEST_COUNTS
    for s in samples:
        assert os.path.basename(s.path).startswith(s.split + "_")
        assert s.subject == ""
    assert [s.path for s in load_dataset(fer_dir)] == [s.path for s in samples]  # preset guessed


def test_guess_preset(datasets_dir, tmp_path):
    assert guess_preset(datasets_dir / "ckplus48") == "ckplus48"
    assert guess_preset(datasets_dir / "jaffe") == "jaffe"
    assert guess_preset(datasets_dir / "fer2013") == "fer2013"
    csv_path = tmp_path / "anything.csv"
    csv_path.write_text("emotion,pixels\n")
    assert guess_preset(csv_path) == "fer2013"
    assert guess_preset(tmp_path) == "folder"
    assert guess_preset(datasets_dir / "utkface") == "utkface"
    assert set(PRESETS) == {"ckplus48", "jaffe", "fer2013", "ferplus", "folder", "utkface"}  # ferplus: chosen, never guessed


# --- fer2013.csv ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fer_csv_rows(fer_dir):
    """(label, usage, pixels) of 35 real FER-2013 images: every class, every usage."""
    by_key = collections.defaultdict(list)
    for s in load_fer2013_folders(fer_dir):
        by_key[(s.label, s.split)].append(s)
    rows = []
    for (label, usage), group in sorted(by_key.items()):
        for s in group[:2] if usage == "Training" else group[:1]:
            rows.append((label, usage, read_image(s.path)))
    assert len(rows) == 7 * 2 + 7 + 7
    return rows


def test_fer2013_csv_round_trip(tmp_path, fer_csv_rows):
    path = tmp_path / "fer2013.csv"
    write_fer2013_csv(fer_csv_rows, path)
    with open(path, newline="") as fh:
        raw = list(csv.reader(fh))
    assert raw[0] == ["emotion", "pixels", "Usage"]
    assert [int(r[0]) for r in raw[1:]] == [FER2013_CSV_LABELS.index(label) for label, _, _ in fer_csv_rows]
    assert FER2013_CSV_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    samples = load_fer2013_csv(path)
    assert len(samples) == len(fer_csv_rows)
    for i, (sample, (label, usage, pixels)) in enumerate(zip(samples, fer_csv_rows)):
        assert sample.label == label and sample.split == usage
        assert sample.pixels.dtype == np.uint8 and sample.pixels.shape == (48, 48)
        np.testing.assert_array_equal(sample.pixels, pixels)
        assert sample.source == f"fer2013.csv#{i}" and sample.path is None and sample.subject == ""
    assert {s.label for s in samples} == set(FER2013_CSV_LABELS)
    assert {s.split for s in samples} == {"Training", "PublicTest", "PrivateTest"}
    # the generic entry point sees a .csv as FER-2013
    assert [s.label for s in load_dataset(path)] == [s.label for s in samples]


def test_fer2013_csv_without_usage_column(tmp_path, fer_csv_rows):
    label, _, pixels = fer_csv_rows[0]
    path = tmp_path / "two_columns.csv"
    path.write_text("emotion,pixels\n%d,%s\n" % (FER2013_CSV_LABELS.index(label), " ".join(map(str, pixels.ravel()))))
    (sample,) = load_fer2013_csv(path)
    assert sample.label == label and sample.split == ""
    np.testing.assert_array_equal(sample.pixels, pixels)


def test_write_fer2013_csv_is_atomic(tmp_path, fer_csv_rows):
    path = tmp_path / "out.csv"
    with pytest.raises(ValueError):
        write_fer2013_csv(fer_csv_rows[:3] + [("not-a-label", "Training", fer_csv_rows[0][2])], path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


GOOD_PIXELS = " ".join(["0"] * 2303 + ["255"])
MALFORMED_CSV = {
    "empty file": "",
    "header only": "emotion,pixels,Usage\n",
    "wrong columns": "label,data\n0,1 2 3 4\n",
    "missing pixels column": "emotion,Usage\n0,Training\n",
    "short row": "emotion,pixels,Usage\n0\n",
    "non-square pixel count": "emotion,pixels\n0,1 2 3\n",
    "no pixels": "emotion,pixels,Usage\n0,,Training\n",
    "pixel above 255": f"emotion,pixels\n0,256 {GOOD_PIXELS[2:]}\n",
    "negative pixel": "emotion,pixels\n0,-1 2 3 4\n",
    "float pixel": "emotion,pixels\n0,1.5 2 3 4\n",
    "huge pixel": "emotion,pixels\n0,99999999999999999999 2 3 4\n",
    "text pixel": "emotion,pixels\n0,a b c d\n",
    "emotion 7": f"emotion,pixels\n7,{GOOD_PIXELS}\n",
    "emotion -1": f"emotion,pixels\n-1,{GOOD_PIXELS}\n",
    "emotion text": f"emotion,pixels\nhappy,{GOOD_PIXELS}\n",
    "emotion empty": f"emotion,pixels\n,{GOOD_PIXELS}\n",
    "bad row after good ones": f"emotion,pixels\n3,{GOOD_PIXELS}\n3,{GOOD_PIXELS}\n3,1 2 3\n",
    "NUL byte": "emotion,pixels\n0,1 2\x00 3 4\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CSV))
def test_malformed_fer2013_csv(tmp_path, case):
    path = tmp_path / "bad.csv"
    path.write_text(MALFORMED_CSV[case])
    with pytest.raises(DatasetError) as info:
        load_fer2013_csv(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_fer2013_csv_that_is_not_text_missing_or_a_folder(tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    for path in (binary, tmp_path / "missing.csv", tmp_path):
        with pytest.raises(DatasetError):
            load_fer2013_csv(path)


# --- the one label table -------------------------------------------------------------------------

def test_every_dataset_class_name_maps_onto_the_canonical_set(datasets_dir):
    folders = set(os.listdir(datasets_dir / "ckplus48")) | set(os.listdir(datasets_dir / "jaffe"))
    folders |= set(os.listdir(datasets_dir / "fer2013" / "train")) | set(os.listdir(datasets_dir / "fer2013" / "test"))
    folders = {f for f in folders if not f.startswith(".") and "." not in f}
    assert len(folders) == 10  # anger/angry, sadness/sad, contempt, ...
    mapped = {f: canonical_label(f) for f in folders}
    assert set(mapped.values()) == set(EMOTIONS)
    assert mapped["anger"] == mapped["angry"] == "angry" and mapped["sadness"] == mapped["sad"] == "sad"


def test_label_table():
    assert len(EMOTIONS) == len(set(EMOTIONS)) == 8
    assert set(LABEL_ALIASES.values()) == set(EMOTIONS)
    for label in EMOTIONS:
        assert LABEL_ALIASES[label] == label  # canonical names map to themselves
    assert set(FER2013_CSV_LABELS) == set(EMOTIONS) - {"contempt"}
    for code, label in {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral",
                        "SA": "sad", "SU": "surprise"}.items():
        assert canonical_label(code) == label  # JAFFE file-name codes
    assert canonical_label("  Sadness ") == "sad" and canonical_label("ANGER") == "angry"
    for unknown in ("joyful-ish", "", "calm", "7"):
        with pytest.raises(DatasetError):
            canonical_label(unknown)


# --- layouts that are not datasets ---------------------------------------------------------------

def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_unknown_class_folder(tmp_path, ckplus_samples):
    _link(ckplus_samples[0].path, tmp_path / "ds" / "happy" / "S001_001_00000001.png")
    _link(ckplus_samples[1].path, tmp_path / "ds" / "bored" / "S002_001_00000001.png")
    with pytest.raises(DatasetError, match="bored"):
        load_dataset(tmp_path / "ds", "ckplus48")
    kept = load_class_folders(tmp_path / "ds", labels_known_only=False)
    assert [s.label for s in kept] == ["happy"]


def test_subject_pattern_must_match(tmp_path, ckplus_samples):
    _link(ckplus_samples[0].path, tmp_path / "ds" / "happy" / "S001_001_00000001.png")
    _link(ckplus_samples[1].path, tmp_path / "ds" / "happy" / "someone.png")
    with pytest.raises(DatasetError, match="someone.png"):
        load_dataset(tmp_path / "ds", "ckplus48")
    assert len(load_dataset(tmp_path / "ds", "folder")) == 2  # no subjects asked for: fine


def test_non_images_and_hidden_files_are_not_samples(tmp_path, ckplus_samples):
    _link(ckplus_samples[0].path, tmp_path / "ds" / "happy" / "S001_001_00000001.png")
    (tmp_path / "ds" / "happy" / "notes.txt").write_text("x")
    (tmp_path / "ds" / "happy" / ".S001_hidden.png").write_bytes(b"x")
    (tmp_path / "ds" / ".cache").mkdir()
    samples = load_dataset(tmp_path / "ds", "ckplus48")
    assert [os.path.basename(s.path) for s in samples] == ["S001_001_00000001.png"]


@pytest.mark.parametrize("make", ["missing", "empty folder", "empty class folders", "a file"])
def test_not_a_dataset(tmp_path, make):
    target = tmp_path / "ds"
    if make == "empty folder":
        target.mkdir()
    elif make == "empty class folders":
        (target / "happy").mkdir(parents=True)
    elif make == "a file":
        target.write_text("x")
    with pytest.raises(DatasetError):
        load_dataset(target, "folder")


def test_unknown_preset(ckplus_dir):
    with pytest.raises(DatasetError, match="preset"):
        load_dataset(ckplus_dir, "affectnet")


def test_fer2013_folder_without_test_part(tmp_path, fer_dir):
    src = next((fer_dir / "train" / "happy").iterdir())
    _link(src, tmp_path / "fer" / "train" / "happy" / src.name)
    with pytest.raises(DatasetError, match="train/ and test/"):
        load_fer2013_folders(tmp_path / "fer")
