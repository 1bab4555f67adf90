"""classifiers.results: the benchmark's results type and its results.json form (no dataset needed)."""

import json

import pytest

from classifiers.results import Baseline, BenchmarkResult, ModelResult, Scores
from classifiers.train import benchmark_figures
from common.errors import FacialExpressionError

CLASSES = ["angry", "happy"]
#: results.json's top-level keys, in their order (label_scheme and calibration: set by the command).
KEYS = ["dataset", "protocol", "protocol_description", "n_folds", "subsets", "n_augmented", "n_samples",
        "n_tested", "n_subjects", "excluded_rows", "n_excluded", "classes", "class_counts", "baseline", "models",
        "quick", "seed", "jobs", "feature_config", "versions", "fit_seconds_note", "predict_ms_note"]
MODEL_KEYS = ["name", "description", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall",
              "fold_accuracy_mean", "fold_accuracy_std", "PrivateTest", "best_params", "best_params_per_fold",
              "fit_seconds", "predict_ms_per_face", "confusion_matrix", "top_features"]


def _scores(accuracy):
    return dict(accuracy=accuracy, balanced_accuracy=accuracy, macro_f1=accuracy,
                per_class_recall={c: accuracy for c in CLASSES})


def _model(name, accuracy, **extra):
    return ModelResult(name=name, description=f"{name} model", **_scores(accuracy), fold_accuracy_mean=accuracy,
                       fold_accuracy_std=0.01, best_params={"model__C": 1.0}, best_params_per_fold=[{"model__C": 1.0}],
                       fit_seconds=0.5, predict_ms_per_face=0.02, confusion_matrix=[[3, 1], [0, 4]], **extra)


def _result(**extra):
    return BenchmarkResult(
        dataset="jaffe", protocol="fer2013_split", protocol_description="official split", n_folds=1,
        subsets={"PrivateTest": 4}, n_augmented=0, n_samples=20, n_tested=8, n_subjects=None,
        excluded_rows={"no_face": 1}, n_excluded=1, classes=CLASSES, class_counts={"angry": 10, "happy": 10},
        baseline=Baseline(**_scores(0.5)),
        models=[_model("logreg", 0.875, subsets={"PrivateTest": Scores(**_scores(0.75))},
                       top_features={"happy": [["mouth_width", 0.4]]}),
                _model("svm_rbf", 0.625)],
        quick=True, seed=0, jobs=2, feature_config={"groups": ["geometry"]}, versions={"python": "3"}, **extra)


def test_results_json_keys_and_order():
    d = _result().to_dict()
    assert list(d) == KEYS  # no label_scheme / calibration until the command sets them
    assert list(d["models"][0]) == MODEL_KEYS  # a subset's scores sit after fold_accuracy_std
    assert d["models"][0]["PrivateTest"] == _scores(0.75)
    assert "top_features" not in d["models"][1] and "PrivateTest" not in d["models"][1]
    assert d["baseline"] == {**_scores(0.5), "name": "majority_class"}
    assert list(_result(label_scheme="basic7", calibration="none").to_dict())[-2:] == ["label_scheme", "calibration"]


def test_results_round_trip_through_json(tmp_path):
    result = _result(label_scheme="valence3", calibration="subject")
    path = tmp_path / "results.json"
    path.write_text(result.to_json())
    back = BenchmarkResult.read(path)
    assert back == result
    assert back.to_json() == path.read_text()
    assert back.models[0].subsets["PrivateTest"].accuracy == 0.75 and back.models[1].top_features is None


def test_older_results_files_read_with_defaults():
    """A results.json of an older version, without the keys added since, still reads."""
    old = _result().to_dict()
    for key in ("subsets", "n_augmented", "predict_ms_note"):
        del old[key]
    del old["models"][1]["best_params_per_fold"]
    back = BenchmarkResult.from_dict(old)
    assert back.subsets is None and back.n_augmented is None and back.label_scheme is None
    assert back.predict_ms_note == _result().predict_ms_note
    assert back.models[1].best_params_per_fold is None and back.models[1].accuracy == 0.625
    with pytest.raises(ValueError, match="JSON object"):
        BenchmarkResult.from_dict([old])


def test_scores_compute():
    scores = Scores.compute(["angry", "angry", "happy", "happy"], ["angry", "happy", "happy", "happy"],
                            CLASSES + ["sad"])
    assert scores.accuracy == 0.75 and scores.per_class_recall == {"angry": 0.5, "happy": 1.0, "sad": 0.0}
    assert list(scores.to_dict()) == ["accuracy", "balanced_accuracy", "macro_f1", "per_class_recall"]


def test_training_takes_a_models_figures_from_results_files(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(_result().to_json())
    assert benchmark_figures([path], "logreg") == [
        {"dataset": "jaffe", "protocol": "official split", "quick": True, "accuracy": 0.875,
         "balanced_accuracy": 0.875, "macro_f1": 0.875, "PrivateTest_accuracy": 0.75}]
    assert benchmark_figures([path], "rf") == []
    path.write_text(json.dumps(["not", "results"]))
    with pytest.raises(FacialExpressionError, match="cannot read benchmark results"):
        benchmark_figures([path], "logreg")
