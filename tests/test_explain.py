"""Explanations: exact contributions that add up to the model output, in words, on real faces."""

import functools
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from classifiers import predict as predict_cli
from classifiers.artifact import Model, load_model
from classifiers.data import load_training_data
from classifiers.explain import FACE_PARTS, explain, feature_unit
from classifiers.models import make_pipeline
from features.describe import GROUPS, FeatureConfig, describe_image, mirror_averaged
from landmarks.io import read_image

SMILES = ("KA.HA1.29.tiff", "KL.HA1.158.tiff", "YM.HA1.52.tiff")


def _fitted(name, table_path, groups=None, **params):
    """(Model, TrainingData) of ``name`` fitted on the table with these settings: once per session
    for the same arguments (a logistic regression on all of JAFFE's columns takes seconds; the
    tests only read the model and the data)."""
    return _fitted_once(name, table_path, groups, tuple(sorted(params.items())))


@functools.lru_cache(maxsize=None)
def _fitted_once(name, table_path, groups, params):
    params = dict(params)
    data = load_training_data(table_path)
    pipe = make_pipeline(name, data.groups, seed=0)
    if groups:
        pipe.set_params(select__groups=groups)
    pipe.set_params(**params)
    pipe.fit(data.X, data.y)
    return Model(pipeline=pipe, labels=[str(c) for c in pipe.classes_], config=FeatureConfig.from_dict(data.config)), data


@pytest.mark.parametrize("percentile", [100, 40])
def test_logistic_regression_contributions_sum_to_the_logit(tables, percentile):
    model, data = _fitted("logreg", tables["jaffe"], model__C=0.01, anova__percentile=percentile)
    rows = data.X[::17]
    explanations = explain(model, rows)
    logits = model.pipeline.decision_function(rows)
    for e, logit in zip(explanations, logits):
        k = model.labels.index(e.label)
        assert e.output_kind == "logit"
        assert e.bias + e.contributions.sum() == pytest.approx(logit[k], abs=1e-4)
        assert e.label == model.labels[int(np.argmax(logit))]


def test_columns_the_anova_filter_drops_do_not_enter_the_explanation(tables):
    """Behind logreg's ANOVA filter, contributions land on the units of the kept columns: changing
    a dropped column changes nothing, changing a kept one moves its own unit only."""
    model, data = _fitted("logreg", tables["jaffe"], model__C=0.01, anova__percentile=40)
    names = model.config.columns()[0]
    kept = np.flatnonzero(model.pipeline.named_steps["anova"].get_support())
    dropped = np.setdiff1d(np.arange(data.X.shape[1]), kept)
    label = model.labels.index(explain(model, data.X[:1])[0].label)
    x = data.X[0].copy()
    before = explain(model, x[None], class_index=label)[0]
    x[dropped] += 5.0
    after = explain(model, x[None], class_index=label)[0]
    assert np.array_equal(before.contributions, after.contributions)
    column = kept[len(kept) // 2]
    unit = feature_unit(names[column])[0]
    x[column] += 5.0
    moved = explain(model, x[None], class_index=label)[0]
    changed = [u for u, a, b in zip(moved.units, before.contributions, moved.contributions) if a != b]
    assert changed == [unit]


def test_xgboost_contributions_plus_bias_equal_the_margin(tables):
    import xgboost as xgb

    model, data = _fitted("xgboost", tables["jaffe"], model__n_estimators=40, model__max_depth=3)
    rows = data.X[::23]
    explanations = explain(model, rows)
    booster = model.pipeline.named_steps["model"].booster_
    selected = model.pipeline[:-1].transform(rows)
    margins = np.asarray(booster.predict(xgb.DMatrix(selected), output_margin=True)).reshape(len(rows), -1)
    for e, margin in zip(explanations, margins):
        k = model.labels.index(e.label)
        assert e.output_kind == "margin"
        assert e.bias + e.contributions.sum() == pytest.approx(float(margin[k]), abs=1e-3)


def test_random_forest_shap_values_sum_to_the_probability(tables):
    model, data = _fitted("rf", tables["ck_subset"], groups=("geometry", "action_units"), model__n_estimators=50)
    rows = data.X[::29]
    proba = model.pipeline.predict_proba(rows)
    for e, p in zip(explain(model, rows), proba):
        k = model.labels.index(e.label)
        assert e.output_kind == "probability"
        assert e.bias + e.contributions.sum() == pytest.approx(float(p[k]), abs=1e-4)


def _with_background(name, table, **params):
    from classifiers.train import explain_background

    model, data = _fitted(name, table, **params)
    model.meta["explain_background"] = explain_background(model.pipeline, data)
    return model, data


def test_few_units_get_their_exact_shapley_values(tables):
    """An RBF SVM on the landmark positions only (5 units: jaw, brows, nose, eyes, mouth): the
    explanation equals Shapley values computed here from their definition, over all 32 subsets
    of units, each absent unit taking a background face's values."""
    from itertools import combinations
    from math import factorial

    model, data = _with_background("svm_rbf", tables["jaffe"], select__groups=("landmarks",))
    names = model.config.columns()[0]
    columns = model.pipeline.named_steps["select"].columns_
    units = sorted({feature_unit(names[c])[0] for c in columns})
    assert len(units) == 5
    background = np.asarray(model.meta["explain_background"], dtype=np.float32)
    x = data.X[100]
    k = int(np.argmax(model.pipeline.predict_proba(x[None])[0]))

    def value(present):
        mixed = background.copy()
        for c in columns:
            if feature_unit(names[c])[0] in present:
                mixed[:, c] = x[c]
        return model.pipeline.predict_proba(mixed)[:, k].mean()

    n = len(units)
    expected = {}
    for unit in units:
        others = [u for u in units if u != unit]
        expected[unit] = sum(factorial(len(s)) * factorial(n - len(s) - 1) / factorial(n)
                             * (value(set(s) | {unit}) - value(set(s)))
                             for size in range(n) for s in combinations(others, size))
    e = explain(model, x[None])[0]
    assert e.label == model.labels[k]
    got = dict(zip(e.units, e.contributions))
    assert got.keys() == expected.keys()
    for unit in units:
        assert got[unit] == pytest.approx(expected[unit], abs=1e-9), unit
    assert e.bias == pytest.approx(value(set()), abs=1e-9)
    assert max(abs(v) for v in expected.values()) > 0.01


def test_many_units_get_a_repeatable_shapley_estimate(tables):
    """The SVM on PCA components (which mix every column) is explained in the same named units
    as logistic regression; the units' values sum to the class probability, toward the
    predicted class or any other, the same on every call, and numpy's global random state is
    left alone. (40 components: with all 212 whitened ones every face is equally far from
    every other and the SVM says 15% to every class.)"""
    model, data = _with_background("svm_pca", tables["jaffe"], pca__n_components=40)
    rows = data.X[[5, 100]]
    proba = model.pipeline.predict_proba(rows)
    native, _ = _fitted("logreg", tables["jaffe"], model__C=0.01, anova__percentile=100)  # 100: every column (the default)
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first = explain(model, rows)
    assert np.array_equal(np.random.get_state()[1], before)
    for e, again, p in zip(first, explain(model, rows), proba):
        k = model.labels.index(e.label)
        assert k == int(np.argmax(p)) and e.output_kind == "probability"
        assert e.bias + e.contributions.sum() == pytest.approx(float(p[k]), abs=1e-6)
        assert e.units == explain(native, rows[:1])[0].units
        assert np.array_equal(e.contributions, again.contributions)
        assert np.abs(e.contributions).max() > 1e-3
    other = int(np.argsort(proba[1])[-3])  # the third most likely class
    e = explain(model, rows[1:], class_index=other)[0]
    assert e.label == model.labels[other]
    assert e.bias + e.contributions.sum() == pytest.approx(float(proba[1, other]), abs=1e-6)


def test_logistic_regression_behind_pca_is_explained_with_shapley_values(tables):
    """Principal components mix every column, so logistic regression behind a PCA has no
    contributions per named feature: training stores a background sample for it (and none for
    plain logreg), and its explanation is Shapley values of the units that sum to the probability."""
    from sklearn.base import clone
    from sklearn.decomposition import PCA
    from sklearn.pipeline import Pipeline

    from classifiers.train import explain_background

    plain, data = _fitted("logreg", tables["jaffe"], groups=("landmarks",), model__C=0.01)
    assert explain_background(plain.pipeline, data) is None
    steps = clone(plain.pipeline).steps
    pipe = Pipeline(steps[:-1] + [("pca", PCA(10, random_state=0))] + steps[-1:]).fit(data.X, data.y)
    model = Model(pipeline=pipe, labels=plain.labels, config=plain.config)
    model.meta["explain_background"] = explain_background(pipe, data)
    assert len(model.meta["explain_background"]) >= 7
    rows = data.X[[5, 100]]
    proba = pipe.predict_proba(rows)
    for e, p in zip(explain(model, rows), proba):
        k = model.labels.index(e.label)
        assert e.output_kind == "probability" and k == int(np.argmax(p))
        assert sorted(e.units) == sorted(explain(plain, rows[:1])[0].units)
        assert e.bias + e.contributions.sum() == pytest.approx(float(p[k]), abs=1e-6)


def test_a_clear_smile_is_explained_by_the_mouth(tables, jaffe_dir):
    """Explainable model (action units + geometry): the top reason for a smile is a mouth feature."""
    model, _ = _fitted("logreg_au", tables["jaffe"], model__C=0.1)
    for name in SMILES:
        _, X, _ = describe_image(read_image(jaffe_dir / "happy" / name), model.config)
        e = explain(model, X[:1])[0]
        assert e.label == "happy", name
        top = e.top(1)[0][0]
        unit, part, _ = feature_unit(next(c for c in model.config.columns()[0]
                                          if feature_unit(c)[0] == top["feature"]))
        assert part == "mouth", f"{name}: top reason {top}"
        assert e.parts["mouth"] == max(e.parts.values()), e.parts


def test_units_have_words_and_parts():
    config = FeatureConfig()
    names = config.columns()[0]
    units = {feature_unit(c) for c in names}
    assert ("lip corners pulled up", "mouth", True) in units
    assert ("mouth appearance (HOG)", "mouth", False) in units
    assert ("brows texture (Gabor jets)", "brows", False) in units
    # every column of every group has words: none falls through as its raw name
    every = FeatureConfig(groups=GROUPS).columns()[0]
    assert [c for c in every if feature_unit(c) == (c, None, True)] == []
    assert {part for _, part, _ in units} - {None} == set(FACE_PARTS)


def test_predict_explain_json_and_annotation(jaffe_model, jaffe_dir, tmp_path):
    face = jaffe_dir / "happy" / "KA.HA1.29.tiff"
    result = CliRunner().invoke(predict_cli.main, [str(face), "--model", str(jaffe_model), "--explain", "2", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[0])
    explanation = record["faces"][0]["explanation"]
    assert 1 <= len(explanation) <= 4
    for item in explanation:
        assert set(item) == {"feature", "value", "contribution"} and item["contribution"] != 0
    # the JSON reasons are the model's own: the largest one matches a recomputation
    model = load_model(jaffe_model)
    # predict reads a face with its mirror image by default: symmetric landmarks, mirror-averaged row
    faces, X, _ = describe_image(read_image(face), model.config, symmetric=True)
    X = mirror_averaged(faces, X, model.config)
    assert explanation[0]["contribution"] == pytest.approx(float(explain(model, X)[0].contributions.max()), abs=1e-3)

    out = tmp_path / "explained.png"
    plain = tmp_path / "plain.png"
    assert CliRunner().invoke(predict_cli.main, [str(face), "--model", str(jaffe_model), "--explain",
                                                 "--annotate", str(out)]).exit_code == 0
    assert CliRunner().invoke(predict_cli.main, [str(face), "--model", str(jaffe_model),
                                                 "--annotate", str(plain)]).exit_code == 0
    a, b = read_image(out, "rgb"), read_image(plain, "rgb")
    assert a.shape == b.shape and np.any(a != b)  # the parts are coloured by contribution
    human = CliRunner().invoke(predict_cli.main, [str(face), "--model", str(jaffe_model), "--explain"])
    assert "against:" in human.output and f"for {record['faces'][0]['label']}:" in human.output
    assert os.path.getsize(out) > 0
