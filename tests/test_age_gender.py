"""Apparent age and gender (issue 22): the UTKFace preset, feature tables with a numeric target,
the age and gender benchmarks and training through the emotion machinery, explanations of a
regressor, and the shipped age and gender models behind recognise(..., age_gender=True).

Real UTKFace faces, in small subsets (a few hundred images) to stay fast.
"""

import csv
import dataclasses
import io
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from classifiers import FacePrediction, recognise
from classifiers import artifact
from classifiers import benchmark as benchmark_cli
from classifiers import predict as predict_cli
from classifiers import train as train_cli
from classifiers.age import age_ranges, coverage, range_table
from classifiers.data import load_training_data
from classifiers.explain import explain
from classifiers.models import make_pipeline
from classifiers.results import AgeBaseline, AgeModelResult, AgeScores, BenchmarkResult
from common.errors import DatasetError, ModelFileError
from common.labels import AGE_GROUP_NAMES, age_group
from features.describe import AGE_GENDER_GROUPS, FeatureConfig
from features.table import FeatureTable, load_table

SAMPLE_PHOTO = os.path.join(os.path.dirname(__import__("matplotlib").__file__), "mpl-data", "sample_data",
                            "grace_hopper.jpg")
#: Model files are at most this large (issue 22: shipped models within 30 MB, fast to load).
MAX_MODEL_BYTES = 30_000_000
#: The FacePrediction.to_dict keys with age and gender, in order.
AGE_GENDER_KEYS = ["box", "label", "probabilities", "landmarks", "valence", "arousal", "age", "age_range", "gender",
                   "p_female"]


def run(command, args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


# ---- labels, tables (no dataset needed) ---------------------------------------------------------

def test_age_groups_cover_every_age_once():
    ages = [0, 5.5, 12, 12.9, 13, 19.99, 20, 39, 40, 59, 60, 111, -1, np.nan]
    assert age_group(ages).tolist() == ["0-12", "0-12", "0-12", "0-12", "13-19", "13-19", "20-39", "20-39",
                                        "40-59", "40-59", "60+", "60+", "0-12", ""]
    assert AGE_GROUP_NAMES == ("0-12", "13-19", "20-39", "40-59", "60+")


def _table(n=4, **extra):
    return FeatureTable(X=np.arange(n * 3, dtype=np.float32).reshape(n, 3), columns=np.array(["a", "b", "c"]),
                        groups={"geometry": slice(0, 3)}, labels=np.array(["female", "male"] * (n // 2)),
                        subjects=np.full(n, ""), sources=np.array([f"{i}.jpg" for i in range(n)]),
                        splits=np.full(n, ""), status=np.full(n, "ok"), n_faces=np.ones(n, dtype=int),
                        config={}, **extra)


def test_a_table_keeps_its_numeric_target_and_old_tables_still_load(tmp_path):
    ages = np.array([3, 40, 75, 20], dtype=np.float32)
    table = _table(targets=ages, target_name="age")
    table.save(tmp_path / "new.npz")
    again = load_table(tmp_path / "new.npz")
    assert again.target_name == "age" and np.array_equal(again.targets, ages)
    assert np.array_equal(again.select([2, 0]).targets, [75, 3]) and again.select([1]).target_name == "age"
    # a table without a numeric target is written exactly as before (no new array), and one
    # written before the column existed reads back with no target
    _table().save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as data:
        assert "targets" not in data.files and "target_name" not in json.loads(str(data["meta"]))
    old = load_table(tmp_path / "old.npz")
    assert old.target_name == "" and old.targets.shape == (4,) and np.all(np.isnan(old.targets))


def test_age_scores_and_the_ranges_of_estimates():
    truth = np.array([2, 10, 16, 25, 30, 45, 70, 80], dtype=float)
    estimate = truth + np.array([1, -2, 3, -4, 6, 0, -10, 2])
    scores = AgeScores.compute(truth, estimate)
    assert scores.mae == pytest.approx(3.5) and scores.cs5 == pytest.approx(6 / 8) and scores.bias == pytest.approx(-0.5)
    assert scores.rmse == pytest.approx(np.sqrt(np.mean(np.square(estimate - truth))), abs=1e-3)
    assert scores.per_age_group["0-12"] == {"n": 2, "mae": 1.5, "rmse": pytest.approx(1.581, abs=1e-3),
                                            "cs5": 1.0, "bias": -0.5}
    assert list(scores.per_age_group) == list(AGE_GROUP_NAMES)
    rng = np.random.default_rng(0)
    ages = rng.uniform(1, 90, 4000)
    estimates = ages + rng.normal(0, 1 + ages / 10)  # errors grow with age
    table = range_table(estimates, ages)
    widths = {g: high - low for g, (low, high) in table["offsets"].items()}
    assert widths["0-12"] < widths["20-39"] < widths["60+"]
    assert coverage(estimates, ages, table) == pytest.approx(0.8, abs=0.03)
    ranges = age_ranges([0.5, 30, 85], table)
    assert np.all(ranges[:, 0] >= 0) and np.all(ranges[:, 0] <= [0.5, 30, 85]) and np.all(ranges[:, 1] >= [0.5, 30, 85])


def test_age_results_read_back_whole():
    scores = vars(AgeScores.compute([5, 30, 70], [7, 28, 60]))
    result = BenchmarkResult(
        dataset="utkface", protocol="seeded_kfold", protocol_description="5 folds", n_folds=5, subsets={},
        n_augmented=0, n_samples=3, n_tested=3, n_subjects=None, excluded_rows={}, n_excluded=0,
        classes=["0-12", "20-39", "60+"], class_counts={"0-12": 1, "20-39": 1, "60+": 1},
        baseline=AgeBaseline(**scores), quick=True, seed=0, jobs=1, feature_config={}, versions={}, target="age",
        models=[AgeModelResult(**scores, name="ridge", description="Ridge", fold_mae_mean=4.7, fold_mae_std=0.1,
                               best_params={"model__alpha": 3000}, best_params_per_fold=[{}], fit_seconds=1.0,
                               predict_ms_per_face=0.1, top_features={"60+": [["wrinkles", 3.0]]})])
    text = result.to_json()
    again = BenchmarkResult.from_dict(json.loads(text))
    assert again.regression and isinstance(again.models[0], AgeModelResult) and again.to_json() == text
    assert json.loads(text)["target"] == "age" and "accuracy" not in json.loads(text)["models"][0]


# ---- the dataset and its tables ------------------------------------------------------------------

@pytest.fixture(scope="module")
def utkface_dir(datasets_dir):
    path = datasets_dir / "utkface"
    if not path.is_dir():
        pytest.fail(f"UTKFace not found at {path}", pytrace=False)
    return path


def test_utkface_preset_reads_age_and_gender_from_the_names_and_never_the_race(utkface_dir):
    from landmarks.datasets import load_dataset

    samples = load_dataset(utkface_dir)  # the preset is guessed from the folder name
    assert len(samples) == 6000
    assert {s.label for s in samples} == {"female", "male"}
    for s in samples:
        age, gender = re.match(r"(\d+)_([01])_", os.path.basename(s.path)).groups()
        assert s.target == float(age) and s.label == ("female" if gender == "1" else "male")
        assert s.subject == "" and s.split == ""
    assert min(s.target for s in samples) == 1 and max(s.target for s in samples) == 111
    assert not [f for f in vars(samples[0]) if "race" in f]


def test_utkface_preset_refuses_names_without_age_and_gender(tmp_path, utkface_dir):
    from landmarks.datasets import load_dataset

    name = sorted(os.listdir(utkface_dir))[0]
    (tmp_path / name).symlink_to(utkface_dir / name)
    (tmp_path / "holiday.jpg").symlink_to(utkface_dir / name)
    with pytest.raises(DatasetError, match="1 image names do not follow .*'holiday.jpg'"):
        load_dataset(tmp_path, "utkface")


@pytest.fixture(scope="module")
def utk_table(utkface_dir, tmp_path_factory):
    """A feature table of 400 real UTKFace faces (every 15th file: every age group, both genders)."""
    from features.extract import extract_dataset

    folder = tmp_path_factory.mktemp("utkface")
    subset = folder / "utkface"
    subset.mkdir()
    for name in sorted(os.listdir(utkface_dir))[::15]:
        (subset / name).symlink_to(utkface_dir / name)
    table, summary = extract_dataset(subset, folder / "utkface.npz", jobs=2, progress=False)
    assert summary["images"] == 400 and summary["faces"] >= 380  # dlib's HOG detector finds nearly all
    return folder / "utkface.npz"


def test_the_table_holds_gender_labels_and_ages_and_no_race(utk_table):
    table = load_table(utk_table)
    assert table.preset == "utkface" and table.target_name == "age"
    with np.load(utk_table) as data:
        assert not [k for k in data.files if "race" in k]
    for source, label, age in zip(table.sources, table.labels, table.targets):
        years, gender = re.match(r"(\d+)_([01])_", os.path.basename(source)).groups()
        assert age == float(years) and label == ("female" if gender == "1" else "male")
    age = load_training_data(utk_table, target="age")
    assert age.regression and age.y.dtype.kind == "f" and np.array_equal(age.y, age.ages)
    assert list(age.class_counts()) == list(AGE_GROUP_NAMES)
    gender = load_training_data(utk_table, target="gender")
    assert set(gender.y) == {"female", "male"} and np.array_equal(gender.ages, age.ages)


def test_age_and_gender_need_a_table_that_has_them(tables):
    with pytest.raises(DatasetError, match="holds no ages"):
        load_training_data(tables["jaffe"], target="age")
    with pytest.raises(DatasetError, match="not female and male"):
        load_training_data(tables["jaffe"], target="gender")


# ---- benchmark and training ----------------------------------------------------------------------

def _quick_benchmark(table, report, target, models):
    """(command output, BenchmarkResult) of a quick benchmark of ``models`` on ``target``."""
    result = run(benchmark_cli.main, [table, "--target", target, "--models", models, "--quick", "-o", report,
                                      "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    return result, BenchmarkResult.read(report / "results.json")


def test_quick_age_benchmark_beats_the_mean_age_by_a_wide_margin(utk_table, tmp_path):
    report = tmp_path / "age"
    result, results = _quick_benchmark(utk_table, report, "age", "ridge,svr_pca,svr_groups")
    assert results.target == "age" and results.protocol == "seeded_kfold" and results.n_folds == 5
    assert results.classes == list(AGE_GROUP_NAMES) and results.baseline.name == "mean_age"
    assert results.baseline.mae > 12
    for m in results.models:
        assert m.mae < 0.75 * results.baseline.mae, (m.name, m.mae, results.baseline.mae)
        assert m.cs5 > results.baseline.cs5 and list(m.per_age_group) == list(AGE_GROUP_NAMES)
    ridge = results.models[0]
    assert set(ridge.top_features) == set(AGE_GROUP_NAMES)  # what pushed the estimates, per age group
    # the oldest faces are estimated older than the youngest, by the features' contributions
    assert sum(v for _, v in ridge.top_features["60+"]) > 0 > sum(v for _, v in ridge.top_features["0-12"])
    text = (report / "report.md").read_text()
    assert "| mean age |" in text and "## Per age group" in text and "MAE" in result.output
    assert not list(report.glob("confusion_*.png")) and (report / "comparison.png").stat().st_size > 1000
    # train --benchmark carries the model's cross-validated figures into the model file
    trained = run(train_cli.main, [utk_table, "--target", "age", "--model", "ridge", "--quick", "--benchmark",
                                   report / "results.json", "-o", tmp_path / "ridge.skops", "-q"])
    assert trained.exit_code == 0, trained.output
    [figures] = artifact.load_model(tmp_path / "ridge.skops").meta["benchmarks"]
    assert figures["mae"] == ridge.mae and list(figures["per_age_group"]) == list(AGE_GROUP_NAMES)
    assert "5-fold" in figures["protocol"]


def test_quick_gender_benchmark_beats_the_majority_class(utk_table, tmp_path):
    report = tmp_path / "gender"
    result, results = _quick_benchmark(utk_table, report, "gender", "logreg")
    assert results.target == "gender" and results.classes == ["female", "male"]
    logreg = results.models[0]
    assert logreg.accuracy > results.baseline.accuracy + 0.2
    assert list(logreg.per_age_group) == list(AGE_GROUP_NAMES) == list(results.baseline.per_age_group)
    assert "accuracy per age group" in result.output and "## Per age group" in (report / "report.md").read_text()


def test_train_age_with_a_holdout_records_figures_and_ranges(utk_table, tmp_path):
    path = tmp_path / "age.skops"
    result = run(train_cli.main, [utk_table, "--target", "age", "--model", "ridge", "--quick", "--holdout", "0.25",
                                  "-o", path, "-q"])
    assert result.exit_code == 0, result.output
    assert "held out" in result.output and "mean-age estimate" in result.output
    model = artifact.load_model(path)
    assert model.regression and model.labels == [] and model.meta["target"] == "age"
    holdout = model.meta["holdout"]
    assert holdout["figures"]["mae"] < 0.8 * holdout["baseline"]["mae"]
    assert 0.5 < holdout["figures"]["range_coverage"] <= 1 and len(holdout["images"]) == holdout["n_test"]
    assert set(model.meta["age_range"]["offsets"]) == set(AGE_GROUP_NAMES)
    estimates = model.predict(load_training_data(utk_table, target="age").X[:5])
    assert estimates.dtype == np.float64 and np.all((estimates > -10) & (estimates < 130))


def test_a_regressor_and_a_target_must_agree(utk_table, tables, tmp_path):
    # the commands in this process (no interpreter start-up): an exception escaping them fails the test
    wrong = run(train_cli.main, [utk_table, "--target", "age", "--model", "logreg", "-o", tmp_path / "never.skops"])
    assert wrong.exit_code == 1 and wrong.stderr.strip().splitlines() == [
        "error: --model logreg does not fit --target age; choose from ridge, svr_pca, svr_groups, xgboost_reg"]
    none = run(benchmark_cli.main, [tables["jaffe"], "--target", "age", "-o", tmp_path / "never"])
    assert none.exit_code == 1 and none.stderr.strip().startswith("error: ") and "holds no ages" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1 and none.stdout == wrong.stdout == ""
    assert "Traceback" not in wrong.output + none.output
    assert not (tmp_path / "never.skops").exists()
    assert not (tmp_path / "never").exists(), "a refused benchmark leaves no empty report folder"
    (tmp_path / "kept").mkdir()   # a folder that was there before stays, empty or not
    run(benchmark_cli.main, [tables["jaffe"], "--target", "age", "-o", tmp_path / "kept"])
    assert (tmp_path / "kept").is_dir()


# ---- explanations of a regressor -----------------------------------------------------------------

def _age_model(utk_table, name, **params):
    data = load_training_data(utk_table, target="age")
    pipe = make_pipeline(name, data.groups, seed=0).set_params(**params).fit(data.X, data.y)
    background = data.X[::40].astype(np.float64).tolist()
    model = artifact.Model(pipeline=pipe, labels=[], config=FeatureConfig.from_dict(data.config),
                           meta={"target": "age", "explain_background": background})
    return model, data


@pytest.mark.parametrize("name, params", [("ridge", {"model__alpha": 3000}),
                                          ("xgboost_reg", {"model__n_estimators": 20})])
def test_a_regressors_contributions_sum_to_its_age_estimate(utk_table, name, params):
    model, data = _age_model(utk_table, name, **params)
    rows = data.X[::50]
    for e, estimate in zip(explain(model, rows), model.predict(rows)):
        assert e.label == "age" and e.output_kind == "years"
        assert e.bias + e.contributions.sum() == pytest.approx(estimate, abs=1e-2)
        assert e.output == pytest.approx(estimate, abs=1e-2)


@pytest.mark.parametrize("name", ["svr_pca", "svr_groups"])
def test_an_svr_is_explained_by_shapley_values_in_years(utk_table, name):
    model, data = _age_model(utk_table, name)
    e = explain(model, data.X[:1])[0]
    assert e.output_kind == "years" and e.output == pytest.approx(model.predict(data.X[:1])[0])
    toward, against = e.top(3)
    assert toward or against


# ---- the shipped models --------------------------------------------------------------------------

@pytest.mark.parametrize("path, target", [(artifact.AGE_MODEL, "age"), (artifact.GENDER_MODEL, "gender")])
def test_shipped_models_are_small_and_say_what_they_are(path, target):
    # (their load time is a benchmark's: benchmarks/model_load.py)
    assert os.path.getsize(path) <= MAX_MODEL_BYTES
    model = artifact.load_model(path)
    # the expression model's features and the whole face's skin texture
    expression = artifact.load_model().config
    assert model.target == target and model.config == dataclasses.replace(expression, groups=AGE_GENDER_GROUPS)
    meta = model.meta
    assert "research" in meta["training_data"]["terms"] and list(meta["training_data"]["datasets"]) == ["utkface"]
    assert meta["holdout"]["fraction"] == 0.2 and meta["holdout"]["seed"] == 0
    # the 5-fold cross-validation of its pipeline (train --benchmark), as README and BENCHMARKS give them
    [cv] = meta["benchmarks"]
    assert cv["dataset"] == "utkface" and "5-fold" in cv["protocol"]
    assert list(cv["per_age_group"]) == list(AGE_GROUP_NAMES)
    if target == "age":
        assert model.regression and set(meta["age_range"]["offsets"]) == set(AGE_GROUP_NAMES)
        assert meta["holdout"]["figures"]["mae"] < 0.6 * meta["holdout"]["baseline"]["mae"]
        assert meta["holdout"]["figures"]["mae"] < 6.0 and cv["mae"] < 6.5   # 5.59 and 6.05 (README)
        assert type(model.pipeline[-1]).__name__ == "AgeGroupSVR"
    else:
        assert model.labels == ["female", "male"]
        assert meta["holdout"]["figures"]["accuracy"] > 0.8 > meta["holdout"]["baseline"]["accuracy"]
        assert meta["holdout"]["figures"]["accuracy"] > 0.895 and cv["accuracy"] > 0.895   # 90.1% and 90.0%
        # svm_pca: an RBF SVM with Platt scaling, evaluated by matrix products (models.predict_proba)
        assert type(model.pipeline[-1]).__name__ == "CalibratedClassifierCV"
        assert type(model.pipeline[-1].calibrated_classifiers_[0].estimator).__name__ == "SVC"
        # ... in the form the batched kernel evaluates (explanations in seconds, not minutes)
        assert model.pipeline[-1].method == "sigmoid" and len(model.pipeline[-1].calibrated_classifiers_) == 1
        from classifiers import models
        rows = np.asarray(meta["explain_background"], dtype=np.float32)
        np.testing.assert_allclose(models.predict_proba(model.pipeline, rows), model.pipeline.predict_proba(rows),
                                   atol=1e-9)


def test_recognise_adds_age_and_gender_only_when_asked():
    plain = recognise(SAMPLE_PHOTO)[0]
    assert plain.age is plain.age_range is plain.gender is plain.p_female is None
    assert "age" not in plain.to_dict() and "gender" not in plain.to_dict()
    face = recognise(SAMPLE_PHOTO, age_gender=True)[0]
    assert isinstance(face, FacePrediction)
    assert (face.label, face.probabilities, face.box) == (plain.label, plain.probabilities, plain.box)
    assert isinstance(face.age, float) and isinstance(face.age_range, tuple) and len(face.age_range) == 2
    assert face.age_range[0] <= face.age <= face.age_range[1]
    assert face.gender in ("female", "male") and 0 <= face.p_female <= 1
    assert (face.gender == "female") == (face.p_female >= 0.5)
    assert list(face.to_dict()) == AGE_GENDER_KEYS
    # Grace Hopper, 78 when photographed (1984), a face from outside UTKFace: an old face
    assert face.age > 50, face.age


@pytest.mark.integration  # no dataset, but the RBF age model's explanation takes 20-40 s
def test_recognise_explains_age_and_gender_in_years():
    face = recognise(SAMPLE_PHOTO, age_gender=True)[0]
    explained = recognise(SAMPLE_PHOTO, age_gender=True, explain=2)[0]
    assert explained.age_explanation.kind == "years" and explained.age == face.age
    assert 1 <= len(explained.age_explanation.toward) + len(explained.age_explanation.against) <= 4
    record = explained.to_dict()
    assert record["age_explanation_kind"] == "years" and record["gender_explanation"]


def test_a_regressor_is_not_an_expression_model():
    with pytest.raises(ModelFileError, match="age_gender=True"):
        recognise(SAMPLE_PHOTO, model=artifact.AGE_MODEL)


def test_children_and_old_people_it_never_saw_land_in_plausible_ranges(utkface_dir):
    """Faces of the shipped models' held-out fifth: young children are estimated as children,
    people over 75 as old; most children's labelled ages fall inside their range, and old faces,
    estimated too young (README: 57% of the held-out faces of 75 and over), still often do."""
    held_out = artifact.load_model(artifact.AGE_MODEL).meta["holdout"]["images"]
    assert len(held_out) > 1000

    def estimates(low, high, n=20):
        names = [n for n in held_out if low <= int(n.split("_")[0]) <= high][:n]
        faces = [(int(name.split("_")[0]), recognise(utkface_dir / name, age_gender=True, max_faces=1))
                 for name in names]
        return [(age, f[0]) for age, f in faces if f]

    children, old = estimates(2, 8), estimates(75, 100)
    assert len(children) >= 15 and len(old) >= 15
    assert np.median([f.age for _, f in children]) < 15 < 55 < np.median([f.age for _, f in old])

    def inside(faces):
        return np.mean([f.age_range[0] <= age <= f.age_range[1] for age, f in faces])

    assert inside(children) >= 0.6 and inside(old) >= 0.4, (inside(children), inside(old))


def test_predict_age_gender_in_text_json_and_csv():
    text = run(predict_cli.main, [SAMPLE_PHOTO, "--age-gender"])
    assert text.exit_code == 0 and re.search(r"apparent age \d+ \(likely \d+-\d+\), apparent gender (fe)?male \d+%",
                                             text.output), text.output
    face = recognise(SAMPLE_PHOTO, age_gender=True)[0]
    line = json.loads(run(predict_cli.main, [SAMPLE_PHOTO, "--age-gender", "--json"]).output)
    assert line["faces"] == [face.to_dict()]
    rows = list(csv.DictReader(io.StringIO(run(predict_cli.main, [SAMPLE_PHOTO, "--age-gender", "--csv"]).output)))
    assert list(rows[0])[-5:] == ["age", "age_low", "age_high", "gender", "p_female"]
    assert float(rows[0]["age"]) == round(face.age, 1) and rows[0]["gender"] == face.gender
    assert "age" not in run(predict_cli.main, [SAMPLE_PHOTO, "--csv"]).output.splitlines()[0].split(",")


@pytest.mark.integration  # no dataset, but the RBF age model's explanation takes 20-40 s
def test_predict_explains_the_age_estimate():
    explained = run(predict_cli.main, [SAMPLE_PHOTO, "--age-gender", "--explain", "2"])
    assert "age up: " in explained.output and "age down: " in explained.output


@pytest.mark.parametrize("gamma", ["scale", 2e-3])
def test_the_batched_rbf_svr_gives_libsvms_estimates(gamma):
    """predict_regressor evaluates an RBF SVR with matrix products: the same estimates as
    SVR.predict (libsvm), on more rows than one batch holds."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from classifiers import models

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 40)).astype(np.float32)
    y = X[:, 0] * 10 + np.sin(X[:, 1]) * 5 + rng.normal(size=300)
    pipe = Pipeline([("scale", StandardScaler()), ("model", SVR(C=10.0, gamma=gamma))]).fit(X, y)
    assert len(pipe[-1].support_vectors_) > 100
    rows = rng.normal(size=(2_500, 40)).astype(np.float32)
    old = models.KERNEL_VALUES
    models.KERNEL_VALUES = 100_000  # several batches
    try:
        got = models.predict_regressor(pipe, rows)
    finally:
        models.KERNEL_VALUES = old
    np.testing.assert_allclose(got, pipe.predict(rows), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(models.predict_regressor(pipe[-1:], pipe[:-1].transform(rows)), got, rtol=1e-9)


@pytest.mark.parametrize("gamma", ["scale", 2e-3])
def test_the_batched_rbf_svc_gives_libsvms_probabilities(gamma, monkeypatch):
    """predict_proba evaluates a binary RBF SVC with Platt scaling (the gender model's svm_pca)
    with matrix products: the same probabilities as libsvm's decision function and the fitted
    sigmoid, on more rows than one batch holds; other classifiers go through their own."""
    from classifiers import models

    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 30)).astype(np.float32)
    y = np.where(X[:, 0] + np.sin(2 * X[:, 1]) + 0.5 * rng.normal(size=400) > 0, "female", "male")
    pipe = models.make_pipeline("svm_pca", {"all": slice(0, 30)}, probability=True)
    pipe.set_params(pca__n_components=20, model__estimator__gamma=gamma)
    pipe.fit(X, y)
    assert len(pipe[-1].calibrated_classifiers_[0].estimator.support_vectors_) > 100
    rows = rng.normal(size=(2_000, 30)).astype(np.float32)
    expected = pipe.predict_proba(rows)
    monkeypatch.setattr(models, "KERNEL_VALUES", 50_000)  # several batches
    svc = pipe[-1].calibrated_classifiers_[0].estimator

    def libsvm(*args, **kwargs):
        raise AssertionError("libsvm's decision function was called: the batched path was not taken")

    monkeypatch.setattr(svc, "decision_function", libsvm)
    got = models.predict_proba(pipe, rows)
    monkeypatch.undo()
    assert 0.05 < expected[:, 0].mean() < 0.95
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    three = np.array(["a", "b", "c"])[np.argmax(X[:, :3], axis=1)]   # more than two classes: libsvm's own
    pipe.fit(X, three)
    np.testing.assert_array_equal(models.predict_proba(pipe, rows), pipe.predict_proba(rows))


def test_the_age_group_svr_estimates_with_its_chosen_groups_svr():
    """AgeGroupSVR: each row's estimate is that of a plain SVR fitted on the rows of the chosen age
    group and its neighbours (support vectors stored once, kernel in batches), and it survives a
    model file's round trip through the trusted types."""
    import skops.io as sio
    from sklearn.svm import SVR

    from classifiers import models

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 12))
    age = np.clip(30 + 18 * X[:, 0] + 3 * rng.normal(size=500), 1, 95)
    model = models.AgeGroupSVR(gamma=0.05).fit(X, age)
    groups = np.digitize(age, model.bounds)
    assert list(model.groups_) == [0, 1, 2, 3, 4] and len(model.vectors_) <= len(X)
    rows = rng.normal(size=(300, 12))
    old = models.KERNEL_VALUES
    models.KERNEL_VALUES = 5_000  # several batches
    try:
        got = model.predict(rows)
    finally:
        models.KERNEL_VALUES = old
    chosen = model.groups_[model.predict_group(rows)]
    for g in np.unique(chosen):
        near = np.abs(groups - g) <= 1
        plain = SVR(C=30, gamma=0.05, epsilon=1).fit(X[near], age[near])
        np.testing.assert_allclose(got[chosen == g], plain.predict(rows[chosen == g]), rtol=1e-9, atol=1e-9)
    assert len(np.unique(chosen)) >= 3   # the rows were not all sent to one group
    blob = sio.dumps(model)
    assert set(sio.get_untrusted_types(data=blob)) <= artifact.trusted_types()
    loaded = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    adults = models.AgeGroupSVR(gamma=0.05).fit(X[:50], np.full(50, 30.0) + rng.normal(size=50))
    assert adults.classifier_ is None and np.all(adults.predict_group(rows) == 0)   # one group: nothing to choose


def test_age_and_gender_rows_add_only_the_groups_the_expression_rows_lack():
    """recognise describes a face once under the expression model's groups; a model that also
    reads face_lbp gets those columns plus face_lbp, in its own column order, exactly as if the face
    had been described under its configuration."""
    import dataclasses

    from classifiers.api import _rows_for
    from features.describe import AGE_GENDER_GROUPS, describe_face, describe_image
    from landmarks.io import read_image

    expression = artifact.load_model().config
    faces, X, _ = describe_image(read_image(SAMPLE_PHOTO), expression, symmetric=True)
    wider = dataclasses.replace(expression, groups=("face_lbp",) + tuple(expression.groups))
    assert set(wider.groups) == set(AGE_GENDER_GROUPS)
    model = artifact.Model(pipeline=None, labels=[], config=wider, meta={"target": "age"})
    rows = _rows_for(model, faces, X, expression)
    np.testing.assert_array_equal(rows, np.vstack([describe_face(face, wider) for face in faces]))
    assert rows.shape == (len(faces), len(wider.columns()[0])) and _rows_for(artifact.load_model(), faces, X, expression) is X


def test_a_utkface_table_gets_the_skin_texture_group_unless_told_otherwise(utkface_dir, tmp_path):
    from features import extract as extract_cli
    from features.describe import AGE_GENDER_GROUPS, DEFAULT_GROUPS

    for args, groups in (([], AGE_GENDER_GROUPS), (["--groups", ",".join(DEFAULT_GROUPS)], DEFAULT_GROUPS)):
        out = tmp_path / f"t{len(args)}.npz"
        result = run(extract_cli.main, [utkface_dir, "-o", out, "--limit", "3", "--jobs", "1", "-q"] + args)
        assert result.exit_code == 0, result.output
        assert tuple(load_table(out).config["groups"]) == groups
    assert "for UTKFace (age and gender) also face_lbp" in " ".join(run(extract_cli.main, ["--help"]).output.split())
