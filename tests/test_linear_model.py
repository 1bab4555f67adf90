"""The numeric form of linear models: the pipeline's probabilities with numpy alone, so that predicting
neither imports scikit-learn and skops nor rebuilds the pipeline (cold start)."""

import os
import textwrap
import zipfile

import numpy as np
import pytest

from classifiers import artifact
from classifiers.data import load_training_data
from classifiers.linear import LOGISTIC, SOFTMAX
from classifiers.models import make_pipeline

FACE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets",
                    "jaffe", "happy", "KA.HA1.29.tiff")
#: Libraries the plain predict command must not import (each costs 0.1-1 s of start-up).
HEAVY = ("sklearn", "skops", "scipy", "pandas", "joblib", "tqdm", "matplotlib", "skimage")


@pytest.fixture()
def pipeline_loads(monkeypatch):
    """A list that gets one entry each time a model file's pipeline is rebuilt."""
    calls, real = [], artifact._load_pipeline

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)
    monkeypatch.setattr(artifact, "_load_pipeline", counted)
    return calls


@pytest.mark.parametrize("dataset", ["jaffe", "ck_subset"])
def test_the_shipped_model_gives_its_pipelines_probabilities(tables, dataset, pipeline_loads):
    """Every face of JAFFE (213) and one image per CK+48 sequence (327): the numeric form's probabilities are the pipeline's
    (the same float32 operations in the same order: equal to the last bit here; 1e-6 allowed)."""
    X = load_training_data(tables[dataset]).X
    model = artifact.load_model()
    assert model.linear is not None and model.linear.kind == SOFTMAX
    proba = model.predict_proba(X)
    assert pipeline_loads == []
    reference = model.pipeline.predict_proba(X.astype(np.float32))
    assert pipeline_loads == [artifact.DEFAULT_MODEL]
    assert proba.shape == (len(X), len(model.labels)) and len(X) in (213, 327)
    assert np.abs(proba - reference).max() <= 1e-6
    assert np.array_equal(proba.argmax(axis=1), reference.argmax(axis=1))
    model.pipeline
    assert len(pipeline_loads) == 1, "the pipeline is rebuilt once"


def test_a_trained_logreg_with_its_anova_filter_has_a_numeric_form(tables, jaffe_model, pipeline_loads):
    data = load_training_data(tables["jaffe"])
    model = artifact.load_model(jaffe_model)
    assert model.linear is not None and pipeline_loads == []
    assert np.abs(model.predict_proba(data.X) - model.pipeline.predict_proba(data.X)).max() <= 1e-6

    pipe = make_pipeline("logreg", data.groups, seed=0).set_params(anova__percentile=40, model__C=0.01)
    pipe.fit(data.X, data.y)
    artifact.save_model(jaffe_model.parent / "anova40.skops", pipe, data.config)
    model = artifact.load_model(jaffe_model.parent / "anova40.skops")
    assert len(model.linear.columns) == pipe.named_steps["anova"].get_support().sum()
    assert np.abs(model.predict_proba(data.X) - pipe.predict_proba(data.X)).max() <= 1e-6


def test_a_two_class_model_uses_the_logistic_function(tables, tmp_path):
    data = load_training_data(tables["jaffe"], labels=["happy", "sad"])
    pipe = make_pipeline("logreg_au", data.groups, seed=0).fit(data.X, data.y)
    artifact.save_model(tmp_path / "binary.skops", pipe, data.config)
    model = artifact.load_model(tmp_path / "binary.skops")
    assert model.linear.kind == LOGISTIC and model.linear.coef.shape[0] == 1
    assert np.abs(model.predict_proba(data.X) - pipe.predict_proba(data.X)).max() <= 1e-6


def test_other_models_have_no_numeric_form(tables, tmp_path, pipeline_loads):
    data = load_training_data(tables["jaffe"])
    pipe = make_pipeline("svm_linear", data.groups, seed=0).fit(data.X, data.y)  # calibrated: not linear
    artifact.save_model(tmp_path / "svm.skops", pipe, data.config)
    with zipfile.ZipFile(tmp_path / "svm.skops") as zf:
        assert "linear.npz" not in zf.namelist()
    model = artifact.load_model(tmp_path / "svm.skops")
    assert model.linear is None and len(pipeline_loads) == 1
    assert np.allclose(model.predict_proba(data.X[:10]), pipe.predict_proba(data.X[:10]), atol=1e-6)


def test_predict_imports_no_heavy_library(run_python):
    """A fresh `predict` of one real face imports neither scikit-learn nor skops (nor SciPy, pandas,
    joblib, tqdm, matplotlib, scikit-image); --explain needs the pipeline and may."""
    code = textwrap.dedent(f"""
        import atexit, runpy, sys
        atexit.register(lambda: print("HEAVY", sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})),
                                      file=sys.stderr))
        sys.argv = ["predict"] + sys.argv[1:]
        runpy.run_module("classifiers.predict", run_name="__main__")
    """)
    result = run_python(["-c", code, FACE])
    assert result.returncode == 0, result.stderr
    assert "face 1" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "HEAVY []", result.stderr

    result = run_python(["-c", code, FACE, "--explain"])
    assert result.returncode == 0 and "for happy:" in result.stdout, result.stderr
