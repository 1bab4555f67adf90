"""The neutral reference the action units are measured against."""

import dataclasses
import json

import numpy as np

from features import action_units as au
from features.table import load_table


def test_shipped_reference_comes_from_no_face_a_benchmark_tests():
    # JAFFE's and CK+48's faces are all test subjects in some fold of their subject-independent
    # benchmarks; FER-2013's Training part is never tested (learn_reference drops its test parts).
    with open(au.REFERENCE_FILE) as fh:
        shipped = json.load(fh)
    assert shipped["learned_from"] == ["fer2013.npz"]
    assert shipped["neutral_faces"] > 1000
    assert len(shipped["points"]) == 136


def test_learn_reference_uses_only_original_training_neutral_faces(tables):
    table = load_table(tables["jaffe"])
    neutral = np.flatnonzero(table.ok & (table.labels == "neutral"))
    assert len(neutral) >= 20
    splits = np.full(len(table), "Training", dtype=object)
    splits[neutral[:5]] = "PublicTest"          # a test part: never learned from
    augmented = np.zeros(len(table), dtype=bool)
    augmented[neutral[5:8]] = True              # mirrored copies: not learned from
    marked = dataclasses.replace(table, splits=splits.astype(str), augmented=augmented)

    points, n = au.learn_reference([marked])
    kept = neutral[8:]
    assert n == len(kept)
    expected = table.X[kept][:, table.groups["landmarks"]].mean(axis=0).reshape(68, 2)
    np.testing.assert_allclose(points, expected, rtol=1e-6)
    # and it differs from the mean over every neutral face, so the exclusions mattered
    everything = table.X[neutral][:, table.groups["landmarks"]].mean(axis=0).reshape(68, 2)
    assert np.abs(points - everything).max() > 1e-4
