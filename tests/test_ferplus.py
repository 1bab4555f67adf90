"""FER+ labels as a label source: majority vote, vote-share weights, FER+ split (issue 21)."""

import csv

import numpy as np
import pytest

from common.labels import ferplus_distribution, ferplus_majority


def test_ferplus_majority_drops_unknown_not_a_face_and_ties():
    # neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    assert ferplus_majority([2, 1, 2, 0, 4, 0, 0, 0, 1, 0]) == "angry"
    assert ferplus_majority([0, 0, 0, 0, 0, 0, 0, 6, 4, 0]) == "contempt"
    assert ferplus_majority([4, 4, 0, 0, 0, 0, 0, 0, 2, 0]) is None     # tie
    assert ferplus_majority([1, 0, 0, 0, 0, 0, 0, 0, 6, 3]) is None     # unknown wins
    assert ferplus_majority([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) is None    # not a face
    assert ferplus_majority([0] * 10) is None
    share = ferplus_distribution([2, 1, 2, 0, 4, 0, 0, 0, 1, 0])
    assert share == pytest.approx({"neutral": 2 / 9, "happy": 1 / 9, "surprise": 2 / 9, "angry": 4 / 9})


def _ferplus_rows(fer_dir, count):
    with open(fer_dir / "ferplus.csv", newline="") as fh:
        return [row for _, row in zip(range(count), csv.DictReader(fh))]


def _table(sources, labels, splits):
    from features.table import FeatureTable

    n = len(sources)
    rng = np.random.default_rng(0)
    return FeatureTable(X=rng.normal(size=(n, 4)).astype(np.float32), columns=np.array(["a", "b", "c", "d"]),
                        groups={"geometry": slice(0, 4)}, labels=np.array(labels), subjects=np.full(n, ""),
                        sources=np.array(sources), splits=np.array(splits), status=np.full(n, "ok"),
                        n_faces=np.ones(n, dtype=int), config={}, dataset="fer2013", preset="fer2013")


def test_training_data_takes_ferplus_labels_splits_and_weights(fer_dir):
    from classifiers.data import NO_FERPLUS_MAJORITY, load_training_data

    rows = _ferplus_rows(fer_dir, 60)
    sources = [str(fer_dir / r["image"]) for r in rows] + ["/elsewhere/jaffe/happy/KA.HA1.29.tiff"]
    folder_labels = [r["image"].split("/")[1] for r in rows]
    labels = [{"sadness": "sad", "anger": "angry"}.get(label, label) for label in folder_labels] + ["happy"]
    table = _table(sources, labels, ["PublicTest"] * 60 + [""])
    plain = load_training_data(table)
    assert plain.weights is None and list(plain.y) == labels

    data = load_training_data(table, ferplus=fer_dir / "ferplus.csv", ferplus_weights=True)
    expected = [ferplus_majority([int(r[c]) for c in ("neutral", "happiness", "surprise", "sadness", "anger",
                                                      "disgust", "fear", "contempt", "unknown", "NF")]) for r in rows]
    kept = [e for e in expected if e is not None]
    assert list(data.y) == kept + ["happy"]                    # the JAFFE row keeps its own label
    assert list(data.splits[:-1]) == [r["ferplus_usage"] for r, e in zip(rows, expected) if e is not None]
    assert data.dropped_labels.get(NO_FERPLUS_MAJORITY, 0) == expected.count(None)
    assert data.weights[-1] == 1.0 and np.all((data.weights[:-1] >= 0.25) & (data.weights[:-1] <= 1.0))
    assert data.weights[0] == pytest.approx(4 / 9)             # the first csv row: anger 4 of 9 emotion votes
    assert sum(a != b for a, b in zip(kept, [l for l, e in zip(labels, expected) if e is not None])) >= 5
    sub = data.select(np.arange(3))
    assert np.array_equal(sub.weights, data.weights[:3]) and set(sub.fit_params()) == {"model__sample_weight"}


def test_ferplus_preset_and_weighted_fit(fer_dir):
    from classifiers.data import load_training_data
    from classifiers.models import make_pipeline
    from landmarks.datasets import load_dataset

    samples = load_dataset(fer_dir, "ferplus")
    assert 33_000 < len(samples) < 35_710
    assert {s.split for s in samples} == {"Training", "PublicTest", "PrivateTest"}
    assert "contempt" in {s.label for s in samples}

    rows = _ferplus_rows(fer_dir, 200)
    table = _table([str(fer_dir / r["image"]) for r in rows], ["happy"] * 200, ["Training"] * 200)
    data = load_training_data(table, ferplus=fer_dir / "ferplus.csv", ferplus_weights=True)
    pipe = make_pipeline("logreg", data.groups)
    weighted = pipe.fit(data.X, data.y, **data.fit_params()).predict_proba(data.X)
    unweighted = make_pipeline("logreg", data.groups).fit(data.X, data.y).predict_proba(data.X)
    assert not np.allclose(weighted, unweighted)               # the weights reach the classifier


def test_extract_benchmark_and_train_with_ferplus_labels(fer_dir, tmp_path):
    """The whole path on 90 real FER-2013 images: one table, FER+ labels at benchmark and train time."""
    import json
    import os

    from click.testing import CliRunner

    from classifiers import benchmark as benchmark_cli
    from classifiers import train as train_cli
    from classifiers.artifact import load_model
    from features.extract import extract_dataset

    rows = [r for r in _ferplus_rows(fer_dir, 4000)
            if r["image"].split("/")[1] in ("happy", "surprise", "neutral")]
    chosen = [r for r in rows if r["ferplus_usage"] == "PrivateTest"][:30]
    train_rows = [r for r in _ferplus_rows(fer_dir, 40000) if r["ferplus_usage"] == "Training"
                  and r["image"].split("/")[1] in ("happy", "surprise", "neutral")][:60]
    root = tmp_path / "fer"
    for r in chosen + train_rows:
        link = root / r["image"]
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(fer_dir / r["image"], link)
    table_path = tmp_path / "fer.npz"
    extract_dataset(root, table_path, preset="fer2013", jobs=1, progress=False)

    ferplus = str(fer_dir / "ferplus.csv")
    result = CliRunner().invoke(benchmark_cli.main, [str(table_path), "-o", str(tmp_path / "report"), "--models",
                                                     "logreg", "--quick", "-j", "1", "-q", "--ferplus", ferplus],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "official FER-2013 split" in result.output
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    majority = {r["image"]: ferplus_majority([int(r[c]) for c in ("neutral", "happiness", "surprise", "sadness",
                                                                   "anger", "disgust", "fear", "contempt", "unknown",
                                                                   "NF")]) for r in chosen + train_rows}
    kept = [label for label in majority.values() if label is not None]
    assert report["protocol"] == "fer2013_split" and report["n_samples"] == len(kept)
    assert report["class_counts"] == {c: kept.count(c) for c in sorted(set(kept))}   # FER+'s labels, not the folders'

    model_path = tmp_path / "ferplus.skops"
    result = CliRunner().invoke(train_cli.main, [str(table_path), "-o", str(model_path), "--model", "logreg",
                                                 "--quick", "-j", "1", "-q", "--ferplus", ferplus,
                                                 "--ferplus-weights"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model = load_model(model_path)
    assert model.meta["label_source"] == "FER+ majority, vote-share weights"
    assert set(model.labels) == set(kept)
