"""The same jobs on a Dask cluster: a distributed.LocalCluster with two worker processes."""

import numpy as np
import pytest

import distributed  # an install requirement: a missing one fails, never skips


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local_cluster:
        yield local_cluster


def test_extraction_on_dask_equals_local_run(cluster, jaffe_dir, tables, tmp_path):
    from features import load_table
    from features.describe import FeatureConfig
    from features.extract import extract_dataset

    # the local run: conftest's JAFFE table, extracted on this machine's cores (2 processes, the
    # default chunks) for the other tests; extracting it again here only repeated that work
    local = load_table(tables["jaffe"])
    remote, remote_summary = extract_dataset(jaffe_dir, tmp_path / "dask.npz", "jaffe", progress=False,
                                             chunk_size=16, backend="dask", scheduler=cluster.scheduler_address)
    assert int(local.ok.sum()) == remote_summary["faces"] == 213
    assert (local.dataset, local.preset) == (remote.dataset, remote.preset)
    assert FeatureConfig.from_dict(local.config) == FeatureConfig.from_dict(remote.config)
    assert np.array_equal(local.X, remote.X)
    for field in ("columns", "labels", "subjects", "sources", "status", "n_faces"):
        assert np.array_equal(getattr(local, field), getattr(remote, field)), field
    # the work really ran in the cluster's worker processes: they loaded the shape predictor
    with distributed.Client(cluster.scheduler_address) as client:
        loaded = client.run(_shape_predictor_loaded)
    assert len(loaded) == 2 and sum(loaded.values()) >= 1, loaded


def _shape_predictor_loaded():
    from landmarks.models import shape_predictor

    return shape_predictor.cache_info().currsize


def test_dask_backend_from_environment(cluster, jaffe_dir, tmp_path, run_python):
    import os

    env = dict(os.environ, FER_DASK_SCHEDULER=cluster.scheduler_address)
    out = tmp_path / "env.npz"
    result = run_python(["-m", "features.extract", str(jaffe_dir), "-o", str(out), "--limit", "20", "-q"], env=env)
    assert result.returncode == 0, result.stderr
    from features import load_table

    assert int(load_table(out).ok.sum()) == 20


def test_unreachable_scheduler_is_a_one_line_error(jaffe_dir, tmp_path, run_python):
    result = run_python(["-m", "features.extract", str(jaffe_dir), "-o", str(tmp_path / "x.npz"), "--limit", "5",
                         "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", "-q"])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot reach the Dask scheduler" in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_quick_benchmark_on_dask_equals_local_run(cluster, small_tables):
    from classifiers.benchmark import run_benchmark
    from classifiers.data import load_training_data
    from common.parallel import compute_backend

    data = load_training_data(small_tables["jaffe"])  # every JAFFE face, 1,081 columns
    local = run_benchmark(data, ["logreg", "xgboost"], quick=True, seed=3, jobs=2, progress=False)
    with compute_backend("dask", cluster.scheduler_address):
        remote = run_benchmark(data, ["logreg", "xgboost"], quick=True, seed=3, progress=False, backend="dask")
    assert local.protocol_description == remote.protocol_description
    for a, b in zip(local.models, remote.models):
        assert a.name == b.name
        assert a.accuracy == b.accuracy and a.accuracy > local.baseline.accuracy + 0.2
        assert a.confusion_matrix == b.confusion_matrix
        assert a.best_params_per_fold == b.best_params_per_fold


def test_xgboost_trains_through_xgboost_dask_into_a_normal_model_file(cluster, small_tables, tmp_path):
    from click.testing import CliRunner

    from classifiers import train as train_cli
    from classifiers.artifact import load_model
    from classifiers.data import load_training_data
    from classifiers.explain import explain

    out = tmp_path / "dask_xgb.skops"  # every JAFFE face, 1,081 columns: XGBoost on all 5,303 proves no more
    result = CliRunner().invoke(train_cli.main, [str(small_tables["jaffe"]), "-o", str(out), "--model", "xgboost",
                                                 "--backend", "dask", "--scheduler", cluster.scheduler_address, "-q"])
    assert result.exit_code == 0, result.output
    model = load_model(out)
    data = load_training_data(small_tables["jaffe"])
    assert (model.predict(data.X) == data.y).mean() > 0.9  # fits its training data
    e = explain(model, data.X[:3])  # native contributions work on the Dask-trained booster too
    assert all(x.output_kind == "margin" for x in e)


def test_label_schemes_on_benchmark_and_train(small_tables, tmp_path):
    from classifiers.benchmark import run_benchmark
    from classifiers.data import load_training_data

    six = load_training_data(small_tables["jaffe"], scheme="basic6")
    assert sorted(set(six.y)) == ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    assert six.dropped_labels == {"neutral": 30}
    valence = load_training_data(small_tables["jaffe"], scheme="valence3")
    assert dict(zip(*np.unique(valence.y, return_counts=True))) == {"negative": 122, "neutral": 30, "positive": 61}
    results = run_benchmark(valence, ["logreg"], quick=True, jobs=2, progress=False)
    assert results.classes == ["negative", "neutral", "positive"]
    assert results.models[0].accuracy > results.baseline.accuracy + 0.15


def _quick_jaffe_benchmark(small_tables, out, *options):
    """The benchmark CLI, logreg with quick grids on the JAFFE table's SMALL_GROUPS columns (every
    face: the label schemes and the calibration need no more), into ``out``; must succeed."""
    from click.testing import CliRunner

    from classifiers import benchmark

    result = CliRunner().invoke(benchmark.main, [str(small_tables["jaffe"]), "-o", str(out), "--models", "logreg",
                                                 "--quick", "-j", "2", "-q", *options], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_benchmark_reports_every_label_scheme(small_tables, tmp_path):
    import json

    from click.testing import CliRunner

    from classifiers import benchmark
    from classifiers.results import BenchmarkResult

    out = tmp_path / "schemes"
    _quick_jaffe_benchmark(small_tables, out, "--scheme", "each")
    summary = json.loads((out / "schemes.json").read_text())
    assert [s["label_scheme"] for s in summary] == ["basic7", "basic6", "valence3"]
    assert [len(s["classes"]) for s in summary] == [7, 6, 3]
    assert [s["n_tested"] for s in summary] == [213, 183, 213]
    for s in summary:
        own = BenchmarkResult.read(out / s["label_scheme"] / "results.json")
        assert own.label_scheme == s["label_scheme"]
        assert s["models"]["logreg"]["accuracy"] == own.models[0].accuracy
        assert s["models"]["logreg"]["accuracy"] > s["baseline_accuracy"] + 0.15
    table = (out / "schemes.md").read_text()
    assert "| valence3 | 3 (negative, neutral, positive) | 213 | logreg |" in table
    bad = CliRunner().invoke(benchmark.main, [str(small_tables["jaffe"]), "-o", str(tmp_path / "x"), "--scheme", "basic9"])
    assert bad.exit_code == 2 and "unknown label scheme" in bad.output


def test_per_subject_calibration_is_labelled_and_needs_subjects(tables, small_tables, tmp_path):
    import dataclasses

    from classifiers.data import centre_by_subject, load_training_data
    from classifiers.results import BenchmarkResult
    from common.errors import DatasetError

    data = load_training_data(tables["jaffe"])
    centred = centre_by_subject(data)
    for subject in np.unique(data.subjects):
        rows = data.subjects == subject
        assert np.abs(centred.X[rows].mean(axis=0)).max() < 1e-4
        assert not np.allclose(centred.X[rows], data.X[rows])
    assert np.array_equal(centred.y, data.y)
    with pytest.raises(DatasetError, match="needs a subject"):
        centre_by_subject(dataclasses.replace(data, subjects=np.full(len(data.y), "")))
    out = tmp_path / "calibrated"
    _quick_jaffe_benchmark(small_tables, out, "--calibrate", "subject")
    results = BenchmarkResult.read(out / "results.json")
    assert results.calibration == "subject"
    assert "PER-SUBJECT CALIBRATION" in (out / "report.md").read_text()
    assert results.models[0].accuracy > results.baseline.accuracy + 0.3
