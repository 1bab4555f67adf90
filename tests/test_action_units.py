"""The neutral reference the action units are measured against, and re-measuring them."""

import dataclasses
import json

import numpy as np
import pytest

from classifiers.data import load_training_data
from features import action_units as au
from features import geometry
from features.table import load_table
from common.errors import DatasetError


def test_shipped_reference_comes_from_no_face_a_benchmark_tests():
    # JAFFE's and CK+48's faces are all test subjects in some fold of their subject-independent
    # benchmarks; FER-2013's Training part is never tested (learn_reference drops its test parts).
    with open(au.REFERENCE_FILE) as fh:
        shipped = json.load(fh)
    assert shipped["learned_from"] == ["fer2013.npz"]
    assert shipped["neutral_faces"] > 1000
    assert len(shipped["points"]) == 136


def test_raw_measures_are_the_geometry_measures_averaged_over_both_sides():
    """Action units build on features.geometry's measures rather than measuring the face again."""
    shape = np.reshape(json.load(open(au.REFERENCE_FILE))["points"], (68, 2))
    points = shape + np.random.default_rng(0).normal(0, 0.03, shape.shape)
    g = dict(zip(geometry.NAMES, geometry.measures(points)))
    raw = dict(zip(au.RAW, au.raw_measures(points)))
    assert raw["inner_brow"] == (g["left_inner_brow_raise"] + g["right_inner_brow_raise"]) / 2
    assert raw["eye_openness"] == (g["left_eye_openness"] + g["right_eye_openness"]) / 2
    assert raw["corner_height"] == (g["left_lip_corner_raise"] + g["right_lip_corner_raise"]) / 2
    assert (raw["chin_drop"], raw["lips_gap"], raw["nose_to_lip"]) == (g["jaw_drop"], g["mouth_opening"],
                                                                       g["upper_lip_to_nose"])
    upper, lower = np.hypot(*(points[51] - points[62])), np.hypot(*(points[66] - points[57]))
    assert raw["lip_thickness"] == pytest.approx(upper + lower, abs=1e-12)   # geometry has no thickness


def test_learn_reference_uses_only_original_training_neutral_faces(tables):
    table = load_table(tables["jaffe"])
    neutral = np.flatnonzero(table.ok & (table.labels == "neutral"))
    assert len(neutral) >= 20
    splits = np.full(len(table), "Training", dtype=object)
    splits[neutral[:5]] = "PublicTest"          # a test part: never learned from
    augmented = np.zeros(len(table), dtype=bool)
    augmented[neutral[5:8]] = True              # mirrored copies: not learned from
    status, X = table.status.copy(), table.X.copy()
    status[neutral[8]], X[neutral[8]] = "no_face", 0.0   # a failed row, as extraction writes it
    marked = dataclasses.replace(table, X=X, status=status, splits=splits.astype(str), augmented=augmented)

    points, n = au.learn_reference([marked])
    kept = neutral[9:]
    assert n == len(kept)
    expected = table.X[kept][:, table.groups["landmarks"]].mean(axis=0).reshape(68, 2)
    np.testing.assert_allclose(points, expected, rtol=1e-6)
    # and it differs from the mean over every neutral face, so the exclusions mattered
    everything = table.X[neutral][:, table.groups["landmarks"]].mean(axis=0).reshape(68, 2)
    assert np.abs(points - everything).max() > 1e-4


def test_with_reference_remeasures_action_units_from_the_landmarks(tables):
    table = load_table(tables["jaffe"])
    columns = table.groups["action_units"]
    shipped = np.asarray(json.load(open(au.REFERENCE_FILE))["points"]).reshape(68, 2)

    same = au.with_reference(table, shipped)
    np.testing.assert_allclose(same.X[:, columns], table.X[:, columns], atol=1e-5)

    jaffe_points, _ = au.learn_reference([table])
    other = au.with_reference(table, jaffe_points)
    assert other.X is not table.X and np.array_equal(load_table(tables["jaffe"]).X, table.X)  # input untouched
    status, X = table.status.copy(), table.X.copy()
    status[0], X[0] = "no_face", 0.0   # a failed row stays all zeros (its points cannot be measured)
    failed = au.with_reference(dataclasses.replace(table, X=X, status=status), jaffe_points)
    assert not failed.X[0].any() and np.array_equal(failed.X[1:], other.X[1:])
    others = [c for c in range(table.X.shape[1]) if not columns.start <= c < columns.stop]
    assert np.array_equal(other.X[:, others], table.X[:, others])
    # an unrectified unit moves by the same constant on every face: sign x (old - new reference) x 10
    shift = au.raw_measures(shipped) - au.raw_measures(jaffe_points)
    index = list(au.RAW)
    for k, (_, _, measure, sign, rectified) in enumerate(au.ACTION_UNITS.values()):
        if rectified:
            continue
        moved = other.X[table.ok, columns.start + k] - table.X[table.ok, columns.start + k]
        np.testing.assert_allclose(moved, sign * shift[index.index(measure)] * au.SCALE, atol=1e-4)
    assert np.abs(shift).max() * au.SCALE > 1e-2  # the two references really differ


def test_with_reference_needs_landmark_columns(tables):
    table = load_table(tables["jaffe"])
    keep = np.concatenate([np.arange(s.start, s.stop) for g, s in table.groups.items() if g != "landmarks"])
    groups, start = {}, 0
    for g, s in table.groups.items():
        if g != "landmarks":
            groups[g] = slice(start, start + s.stop - s.start)
            start += s.stop - s.start
    without = dataclasses.replace(table, X=table.X[:, keep], columns=table.columns[keep], groups=groups)
    with pytest.raises(DatasetError, match="landmarks"):
        au.with_reference(without, np.zeros((68, 2)))


def test_training_data_from_loaded_tables_equals_from_files(tables):
    from_files = load_training_data([tables["jaffe"], tables["ck_subset"]])
    from_tables = load_training_data([load_table(tables["jaffe"]), load_table(tables["ck_subset"])])
    assert np.array_equal(from_files.X, from_tables.X)
    assert np.array_equal(from_files.y, from_tables.y) and np.array_equal(from_files.subjects, from_tables.subjects)
    single = load_training_data(load_table(tables["jaffe"]))
    assert np.array_equal(single.X, load_training_data(tables["jaffe"]).X)


def test_cross_dataset_features_do_not_depend_on_the_tested_dataset(tables):
    from benchmarks.cross_dataset import direction_data

    jaffe, ck = load_table(tables["jaffe"]), load_table(tables["ck_subset"])
    first = np.isin(jaffe.subjects, sorted(set(jaffe.subjects))[:5])
    a = dataclasses.replace(jaffe.select(first), dataset="jaffe_a")
    b = dataclasses.replace(jaffe.select(~first), dataset="jaffe_b")
    loaded = {"ck": ck, "a": a, "b": b}
    train, test, n_neutral = direction_data(loaded, "b")
    assert n_neutral == int(np.sum(a.labels == "neutral"))   # CK+48 has no neutral faces
    assert set(train.datasets) == {"ckplus48", "jaffe_a"} and set(test.datasets) == {"jaffe_b"}
    au_columns = b.groups["action_units"]
    assert not np.allclose(test.X[:, au_columns], b.X[np.isin(b.labels, list(test.y))][:, au_columns], atol=1e-3)

    # move the tested dataset's neutral faces (never tested: neutral is not a shared class)
    X = b.X.copy()
    X[np.ix_(b.labels == "neutral", np.arange(b.groups["landmarks"].start, b.groups["landmarks"].stop))] *= 1.2
    moved = dict(loaded, b=dataclasses.replace(b, X=X))
    train2, test2, _ = direction_data(moved, "b")
    assert np.array_equal(train.X, train2.X) and np.array_equal(test.X, test2.X)
    # whereas moving a training dataset's neutral faces moves every face's action units
    X = a.X.copy()
    X[np.ix_(a.labels == "neutral", np.arange(a.groups["landmarks"].start, a.groups["landmarks"].stop))] *= 1.2
    train3, test3, _ = direction_data(dict(loaded, a=dataclasses.replace(a, X=X)), "b")
    assert not np.allclose(test.X[:, au_columns], test3.X[:, au_columns], atol=1e-3)


def test_cross_dataset_mirror_rows_are_predicts_mirror_images(tables):
    """--mirror's tables: the chosen rows described again as recognise reads them (symmetric
    landmarks: other rows than the table's one-view ones) and their faces' mirror images, whose
    mean is what recognise reads; other rows are untouched."""
    from benchmarks.cross_dataset import mirrored_table
    from features.describe import FeatureConfig, describe_image, mirror_averaged
    from landmarks.io import read_image

    jaffe = load_table(tables["jaffe"])
    rows = np.flatnonzero(jaffe.ok)[:6]
    again, flipped, differ = mirrored_table(jaffe, rows, jobs=1)
    assert differ == len(rows)
    untouched = np.setdiff1d(np.arange(len(jaffe)), rows)
    assert np.array_equal(flipped.X[untouched], jaffe.X[untouched])
    assert np.array_equal(again.X[untouched], jaffe.X[untouched])
    config = FeatureConfig.from_dict(jaffe.config)
    for i in rows[:2]:
        faces, X, _ = describe_image(read_image(str(jaffe.sources[i])), config, max_faces=1, symmetric=True)
        np.testing.assert_array_equal(X[0], again.X[i])
        np.testing.assert_allclose((again.X[i] + flipped.X[i]) / 2, mirror_averaged(faces, X, config)[0], rtol=1e-6,
                                   atol=1e-6)
        assert not np.allclose(flipped.X[i], again.X[i], atol=1e-2)


def test_reference_command_writes_the_learned_shape_and_keeps_it_on_error(tables, run_python, tmp_path):
    out = tmp_path / "reference.json"
    done = run_python(["-m", "features.reference", tables["jaffe"], "-o", out])
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr          # the module is not loaded twice (runpy's RuntimeWarning)
    written = json.loads(out.read_text())
    points, n = au.learn_reference([load_table(tables["jaffe"])])
    assert written["learned_from"] == ["jaffe.npz"] and written["neutral_faces"] == n
    np.testing.assert_allclose(np.reshape(written["points"], (68, 2)), points, atol=1e-5)

    before = out.read_bytes()
    failed = run_python(["-m", "features.reference", tables["ck_subset"], "-o", out])  # CK+48: no neutral faces
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == ["error: no neutral training faces to learn a neutral shape "
                                                  "from in: ckplus48"]
    assert out.read_bytes() == before            # the earlier reference is untouched
    missing = run_python(["-m", "features.reference", tmp_path / "nope.npz", "-o", out])
    assert missing.returncode != 0 and "nope.npz" in missing.stderr and out.read_bytes() == before
