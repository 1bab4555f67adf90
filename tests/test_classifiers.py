"""classifiers/: models, benchmark, model files, train -> predict -> evaluate, on real data.

Feature tables are extracted here from ../shared/datasets (a fresh clone has no data/).
"""

import csv
import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.base import clone

from features.table import load_table
from common.errors import IncompatibleModelError, ModelFileError

from conftest import DATASETS_DIR

from classifiers import artifact
from classifiers import benchmark as benchmark_cli
from classifiers import evaluate as evaluate_cli
from classifiers import predict as predict_cli
from classifiers.data import load_training_data
from classifiers.models import ALL, SHAPE, CappedPCA, GroupSelector, make_pipeline
from classifiers.results import BenchmarkResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = str(DATASETS_DIR)
JAFFE = os.path.join(DATASETS, "jaffe")
CKPLUS = os.path.join(DATASETS, "ckplus48")
SAMPLE_PHOTO = os.path.join(os.path.dirname(__import__("matplotlib").__file__), "mpl-data", "sample_data",
                            "grace_hopper.jpg")


def run(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    return result


# shared fixtures `tables` and `jaffe_model` live in conftest.py


@pytest.fixture()
def images(tmp_path):
    gray = tmp_path / "flat_gray.png"
    Image.fromarray(np.full((200, 200), 128, dtype=np.uint8)).save(gray)
    corrupt = tmp_path / "corrupt.jpg"
    with open(SAMPLE_PHOTO, "rb") as fh:
        corrupt.write_bytes(fh.read()[:400])
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    return {"gray": gray, "corrupt": corrupt, "text": text, "missing": tmp_path / "missing.jpg",
            "face": os.path.join(JAFFE, "happy", "KA.HA1.29.tiff")}


# ---- models -----------------------------------------------------------------------------

def test_group_selector_follows_the_estimator_contract(tables):
    table = load_table(tables["jaffe"])
    slices = {g: (s.start, s.stop) for g, s in table.groups.items()}
    selector = GroupSelector(groups=SHAPE, slices=slices)
    copy = clone(selector)
    assert copy.get_params() == {"groups": SHAPE, "slices": slices} and copy.slices is not None
    named = GroupSelector(groups=("landmarks", "geometry"), slices=slices).fit(table.X)
    assert np.array_equal(named.columns_, table.group_columns(["geometry", "landmarks"]))
    assert len(GroupSelector(groups=ALL, slices=slices).fit(table.X).columns_) == table.X.shape[1]
    assert not hasattr(copy, "columns_")
    out = selector.fit(table.X).transform(table.X)
    shape_groups = [g for g in table.groups if g in ("geometry", "landmarks", "action_units")]
    assert np.array_equal(out, table.X[:, table.group_columns(shape_groups)])
    assert out.shape[1] == sum(table.groups[g].stop - table.groups[g].start for g in shape_groups) >= 30 + 136
    with pytest.raises(ValueError):
        GroupSelector(groups=("nope",), slices=slices).fit(table.X)


def test_svm_pca_on_a_small_table_keeps_only_directions_the_data_has(tables):
    """On 213 JAFFE faces the PCA keeps the 212 directions the centred data spans, not a 213th
    of zero variance whose whitening blew rounding noise up 1e5 times: a face's whitened
    components are the same alone as in a batch (before: differences up to 0.28)."""
    data = load_training_data(tables["jaffe"])
    pipe = make_pipeline("svm_pca", data.groups, seed=0).fit(data.X, data.y)
    pca = pipe.named_steps["pca"]
    assert pca.n_components_ == len(data.X) - 1 and pca.n_components == 256
    assert pca.explained_variance_.min() > 1e-3 * pca.explained_variance_.max()
    head, rows = pipe[:-1], data.X[::20]
    alone = np.vstack([head.transform(r[None]) for r in rows])
    np.testing.assert_allclose(head.transform(rows), alone, atol=1e-4)


def test_svm_pca_drops_directions_that_repeated_faces_do_not_span(tables):
    """60 JAFFE faces each given twice span 59 directions, not the 119 that 120 rows could:
    the PCA keeps 59 (before: 60 more of variance ~1e-12, whitened into noise), and a face's
    whitened components are the same alone as in a batch."""
    data = load_training_data(tables["jaffe"])
    X, y = np.vstack([data.X[:60], data.X[:60]]), np.concatenate([data.y[:60], data.y[:60]])
    head = make_pipeline("svm_pca", data.groups, seed=0)[:-1].fit(X, y)
    pca = head.named_steps["pca"]
    assert pca.n_components_ == 59 == len(pca.components_) == len(pca.explained_variance_)
    assert pca.explained_variance_.min() > 1e-3 * pca.explained_variance_.max()
    rows = data.X[100:140]
    np.testing.assert_allclose(head.transform(rows), np.vstack([head.transform(r[None]) for r in rows]), atol=1e-4)
    np.testing.assert_allclose(head.fit_transform(X, y), head.transform(X), atol=1e-4)
    # 25 faces' standardised landmarks, each 60 times: tall and narrow, where "auto" picks the
    # covariance_eigh solver, whose float32 rounding noise is far above the SVD solvers'
    narrow = head.named_steps["scale"].transform(data.X[:25])[:, data.groups["landmarks"]]
    for solver in ("full", "randomized", "auto"):
        pca = CappedPCA(256, whiten=True, svd_solver=solver, random_state=0).fit(np.vstack([narrow] * 60))
        assert pca.n_components_ == 24, solver


def test_logreg_anova_filter_keeps_its_share_of_columns_and_survives_a_model_file(tables, tmp_path):
    """logreg's grid can keep the 40% or 60% of columns with the largest ANOVA F on the training
    rows; the filter's score function is allowed in a model file and reloads to the same model."""
    from classifiers.models import param_grid

    data = load_training_data(tables["jaffe"])
    grid = param_grid("logreg", groups=data.groups)
    assert any(sub.get("anova__percentile") == [40, 60] for sub in grid)
    pipe = make_pipeline("logreg", data.groups, seed=0).set_params(anova__percentile=60, model__C=0.01)
    pipe.fit(data.X, data.y)
    kept = pipe.named_steps["anova"].get_support()
    assert kept.sum() == pytest.approx(0.6 * data.X.shape[1], abs=1)
    assert pipe.named_steps["model"].coef_.shape[1] == kept.sum()
    path = tmp_path / "logreg.skops"
    artifact.save_model(path, pipe, data.config)
    model = artifact.load_model(path)
    assert np.allclose(model.predict_proba(data.X[:20]), pipe.predict_proba(data.X[:20]), atol=1e-6)
    assert "anova" not in make_pipeline("logreg_au", data.groups).named_steps


def test_feature_importance_averages_over_every_explained_face(tables):
    """Two leave-one-person-out folds of JAFFE, each a logreg that keeps 10% of the columns:
    a unit one fold's filter dropped contributed nothing to that fold's faces, so its mean
    in the chart is its sum over the faces of both folds, not over the faces of one."""
    from classifiers.search import fold_importance, top_features

    data = load_training_data(tables["jaffe"])
    persons = np.unique(data.subjects)[:2]
    results = []
    for person in persons:
        train, test = np.flatnonzero(data.subjects != person), np.flatnonzero(data.subjects == person)
        pipe = make_pipeline("logreg", data.groups, seed=0).set_params(anova__percentile=10, model__C=0.01)
        results.append(fold_importance(pipe.fit(data.X[train], data.y[train]), data, test))
    label = next(k for k in results[0] if k in results[1])
    (n0, units0), (n1, units1) = results[0][label], results[1][label]
    assert n0 == (data.y[data.subjects == persons[0]] == label).sum() > 0
    only_one = set(units0) ^ set(units1)
    assert only_one, "the two filters kept the same units"
    top = dict(map(tuple, top_features(results, n=10 ** 6)[label]))
    for unit in only_one:
        total = units0.get(unit, 0.0) + units1.get(unit, 0.0)
        assert top[unit] == pytest.approx(total / (n0 + n1), abs=1e-4)
    both = next(u for u in units0 if u in units1 and abs(units0[u] + units1[u]) > 1e-3)
    assert top[both] == pytest.approx((units0[both] + units1[both]) / (n0 + n1), abs=1e-4)


def test_xgboost_encodes_labels_and_survives_a_model_file(tables, tmp_path):
    data = load_training_data(tables["jaffe"])
    pipe = make_pipeline("xgboost", data.groups, seed=3).set_params(model__n_estimators=15)
    pipe.fit(data.X, data.y)
    assert list(pipe.classes_) == sorted(set(data.y))
    path = tmp_path / "xgb.skops"
    artifact.save_model(path, pipe, data.config)
    model = artifact.load_model(path)
    assert model.labels == sorted(set(data.y))
    assert np.allclose(model.predict_proba(data.X[:20]), pipe.predict_proba(data.X[:20]), atol=1e-6)
    with zipfile.ZipFile(path) as zf:
        meta = json.loads(zf.read("meta.json"))
    assert meta["feature_config"] == data.config


# ---- benchmark --------------------------------------------------------------------------

def test_quick_benchmark_on_ckplus_beats_the_majority_baseline(small_tables, tmp_path):
    report = tmp_path / "report"  # every model, on the 327 faces' shape and face-HOG columns
    result = run(benchmark_cli.main, [small_tables["ck_subset"], "-o", report, "--quick", "--seed", "0", "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    results = BenchmarkResult.read(report / "results.json")
    assert results.to_json() == (report / "results.json").read_text()  # read back whole, key order included
    assert results.protocol == "subject_kfold" and results.n_folds == 5
    assert "StratifiedGroupKFold" in results.protocol_description
    assert results.n_samples + results.n_excluded == 327 and results.n_samples > 300
    assert set(results.classes) == {"angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"}
    baseline = results.baseline.accuracy
    names = [m.name for m in results.models]
    assert names == ["rf", "svm_rbf", "svm_linear", "xgboost", "logreg", "logreg_au", "ensemble"]
    for m in results.models:
        assert m.accuracy > baseline + 0.2, (m.name, m.accuracy, baseline)
        assert set(m.per_class_recall) == set(results.classes)
        assert m.fit_seconds > 0 and m.predict_ms_per_face > 0 and m.best_params
        assert (report / f"confusion_{m.name}.png").stat().st_size > 1000
    assert (report / "comparison.png").stat().st_size > 1000
    text = (report / "report.md").read_text()
    assert "Protocol: subject-independent" in text and "| majority class |" in text


def test_benchmark_protocols_follow_the_table(tables):
    from classifiers.protocol import choose_protocol

    jaffe = load_training_data(tables["jaffe"])
    loso = choose_protocol(jaffe, quick=False)
    assert loso.name == "loso" and len(loso.folds) == 10
    for train, test in loso.folds:
        assert len(set(jaffe.subjects[test])) == 1 and not set(jaffe.subjects[train]) & set(jaffe.subjects[test])
    anonymous = jaffe.select(np.arange(len(jaffe)))
    anonymous.subjects = np.full(len(jaffe), "")
    plain = choose_protocol(anonymous, quick=True)
    assert plain.name == "stratified_kfold" and "NOT subject-independent" in plain.description
    fer_like = jaffe.select(np.arange(len(jaffe)))
    fer_like.splits = np.where(np.arange(len(jaffe)) % 4 == 0, np.where(np.arange(len(jaffe)) % 8 == 0,
                                                                        "PrivateTest", "PublicTest"), "Training")
    split = choose_protocol(fer_like)
    assert split.name == "fer2013_split" and len(split.folds) == 1 and "PrivateTest" in split.subsets


# ---- model files ------------------------------------------------------------------------

def test_model_file_records_what_it_needs(jaffe_model):
    model = artifact.load_model(jaffe_model)
    meta = model.meta
    assert model.labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert meta["training_data"]["class_counts"]["happy"] == 31
    assert set(meta["versions"]) >= {"python", "sklearn", "xgboost", "dlib", "project"}
    assert meta["model"]["model"] == "logreg" and "research" in meta["training_data"]["terms"]


def _rewrite(src, dest, meta_change=None, blob_change=None):
    with zipfile.ZipFile(src) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(members["meta.json"])
    if meta_change:
        meta_change(meta)
    members["meta.json"] = json.dumps(meta).encode()
    if blob_change:
        members["pipeline.skops"] = blob_change(members["pipeline.skops"])
    with zipfile.ZipFile(dest, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dest


def test_bad_model_files_are_refused(jaffe_model, tmp_path):
    data = open(jaffe_model, "rb").read()
    truncated = tmp_path / "truncated.skops"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.skops"
    foreign.write_bytes(b"\x80\x04\x95 definitely a pickle, not a model")
    with pytest.raises(ModelFileError):
        artifact.load_model(truncated)
    with pytest.raises(ModelFileError):
        artifact.load_model(foreign)
    with pytest.raises(ModelFileError):
        artifact.load_model(tmp_path / "absent.skops")

    # a pipeline changed after saving: the checksum no longer matches
    flipped = _rewrite(jaffe_model, tmp_path / "flipped.skops",
                       blob_change=lambda b: b[:-100] + bytes(x ^ 1 for x in b[-100:]))
    with pytest.raises(ModelFileError, match="checksum"):
        artifact.load_model(flipped)

    # a pipeline that names a type outside the allowlist, with a matching checksum
    import hashlib

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    evil = sio.dumps(FunctionTransformer(func=os.system))
    sneaky = _rewrite(jaffe_model, tmp_path / "sneaky.skops", blob_change=lambda b: evil,
                      meta_change=lambda m: m.update(pipeline_sha256=hashlib.sha256(evil).hexdigest()))
    with pytest.raises(ModelFileError, match="not trusted"):
        artifact.load_model(sneaky)

    # a feature configuration this code cannot reproduce
    future = _rewrite(jaffe_model, tmp_path / "future.skops",
                      meta_change=lambda m: m["feature_config"].update(version=999))
    with pytest.raises(IncompatibleModelError):
        artifact.load_model(future)
    odd = _rewrite(jaffe_model, tmp_path / "odd.skops",
                   meta_change=lambda m: m["feature_config"].update(groups=["geometry", "telepathy"]))
    with pytest.raises(IncompatibleModelError):
        artifact.load_model(odd)

    result = run(predict_cli.main, [os.path.join(JAFFE, "happy", "KA.HA1.29.tiff"), "--model", truncated])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


# ---- train -> predict -> evaluate -------------------------------------------------------

def test_predict_json_on_real_faces(jaffe_model):
    happy = os.path.join(JAFFE, "happy")
    result = run(predict_cli.main, [happy, "--model", jaffe_model, "--json"])
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(os.listdir(happy))
    labels = []
    for obj in lines:
        assert set(obj) == {"image", "mirror_averaged", "faces"} and obj["mirror_averaged"] is True and os.path.exists(obj["image"])
        assert len(obj["faces"]) >= 1
        face = obj["faces"][0]
        assert set(face) == {"box", "label", "probabilities", "landmarks", "valence", "arousal"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert len(face["landmarks"]) == 68 and all(len(p) == 2 for p in face["landmarks"])
        assert set(face["probabilities"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-2
        assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
        labels.append(face["label"])
    assert labels.count("happy") > len(labels) * 0.8  # the model saw these images: it must know them


def test_predict_human_csv_and_annotate(jaffe_model, tmp_path):
    image = os.path.join(JAFFE, "surprise", os.listdir(os.path.join(JAFFE, "surprise"))[0])
    result = run(predict_cli.main, [image, "--model", jaffe_model, "--annotate", tmp_path / "one.png"])
    assert result.exit_code == 0
    assert "1 face" in result.stdout and "face 1 at x=" in result.stdout
    assert Image.open(tmp_path / "one.png").size[0] >= 256
    result = run(predict_cli.main, [image, image, "--model", jaffe_model, "--csv", "--annotate", tmp_path / "many"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert result.exit_code == 0 and len(rows) == 2 and rows[0]["label"] in artifact.load_model(jaffe_model).labels
    assert os.listdir(tmp_path / "many") == [os.path.splitext(os.path.basename(image))[0] + ".png"]


def test_predict_exit_codes(jaffe_model, images):
    no_face = run(predict_cli.main, [images["gray"], "--model", jaffe_model])
    assert no_face.exit_code == 3 and "no face found" in no_face.stdout and no_face.stderr == ""
    for bad in ("corrupt", "text", "missing"):
        result = run(predict_cli.main, [images[bad], "--model", jaffe_model])
        assert result.exit_code == 1, bad
        assert len(result.stderr.strip().splitlines()) == 1 and str(images[bad]) in result.stderr
        assert "Traceback" not in result.output
    mixed = run(predict_cli.main, [images["missing"], images["face"], images["gray"], "--model", jaffe_model, "--json"])
    assert mixed.exit_code == 1
    objects = [json.loads(line) for line in mixed.stdout.splitlines()]
    assert [len(o["faces"]) for o in objects] == [0, 1, 0] and "error" in objects[0]


def test_evaluate_counts_misses_and_unknown_classes(jaffe_model, images, tmp_path):
    dataset = tmp_path / "mini"
    for label in ("happy", "surprise"):
        os.makedirs(dataset / label)
        for name in sorted(os.listdir(os.path.join(JAFFE, label)))[:4]:
            shutil.copy(os.path.join(JAFFE, label, name), dataset / label / name)
    shutil.copy(images["gray"], dataset / "happy" / "flat_gray.png")
    os.makedirs(dataset / "contempt")
    shutil.copy(os.path.join(CKPLUS, "contempt", sorted(os.listdir(os.path.join(CKPLUS, "contempt")))[0]),
                dataset / "contempt")
    result = run(evaluate_cli.main, [jaffe_model, dataset, "--preset", "folder", "--json", "-q", "-j", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 10 and report["scored"] == 9
    assert report["no_face"] == 1 and report["unknown_class_skipped"] == {"contempt": 1}
    assert 6 / 9 - 1e-3 <= report["accuracy"] <= 8 / 9 + 1e-3  # the flat gray image is a miss
    assert report["per_class_recall"]["happy"] <= 0.8
    assert np.sum(report["confusion_matrix"]) == 9
    assert report["confusion_labels"]["columns"][-1] == "no_face"
    human = run(evaluate_cli.main, [jaffe_model, dataset, "--preset", "folder", "-q", "-j", "1"])
    assert "no face found (counted as misses): 1" in human.stdout


# ---- the shipped default model ------------------------------------------------------------

def test_default_model_finds_the_face_on_the_sample_photo(tmp_path):
    assert os.path.isfile(artifact.DEFAULT_MODEL), "run `make model` to build the default model"
    assert os.path.getsize(artifact.DEFAULT_MODEL) < 30e6
    model = artifact.load_model()
    assert set(model.labels) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    # trained as `make model` says: FER-2013's faces with their FER+ majority, the three datasets
    assert model.meta["label_source"] == "FER+ majority"
    assert set(model.meta["training_data"]["datasets"]) == {"ckplus48", "jaffe", "fer2013"}
    result = run(predict_cli.main, [SAMPLE_PHOTO, "--json", "--annotate", tmp_path / "demo.png"])
    assert result.exit_code == 0, result.stderr
    obj = json.loads(result.stdout)
    assert len(obj["faces"]) == 1
    x, y, w, h = obj["faces"][0]["box"]
    assert 150 < x + w / 2 < 400 and 80 < y + h / 2 < 350 and w > 100  # her face, not the uniform
    assert (tmp_path / "demo.png").stat().st_size > 10000


def test_predict_sees_the_features_the_model_was_trained_on(tables, jaffe_model):
    from classifiers import recognise
    from landmarks.io import read_image

    table = load_table(tables["jaffe"])
    model = artifact.load_model(jaffe_model)
    for row in (0, 100, 212):
        faces = recognise(read_image(table.sources[row], "gray"), model=model, mirror=False)   # the face as it is
        expected = model.predict_proba(table.X[row:row + 1])[0]
        got = np.array([faces[0].probabilities[c] for c in model.labels])
        assert np.allclose(got, expected, atol=1e-3), table.sources[row]


@pytest.mark.parametrize("kernel, C, gamma", [("linear", 0.001, "scale"), ("rbf", 10.0, "scale"), ("rbf", 1.0, 1e-4)])
def test_kernel_svc_keeps_libsvms_solution_and_is_an_ordinary_svc(tables, kernel, C, gamma, monkeypatch):
    """KernelSVC solves on the kernel matrix computed at once: the same support vectors, dual
    coefficients and decisions as an SVC computing its kernel itself, and above MAX_ROWS it is one."""
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from classifiers.models import KernelSVC

    data = load_training_data([str(tables["jaffe"])])
    test = np.isin(data.subjects, data.subjects[:1])   # one subject's faces held out
    scaler = StandardScaler().fit(data.X[~test])
    X, T, y = scaler.transform(data.X[~test]), scaler.transform(data.X[test]), data.y[~test]
    settings = dict(kernel=kernel, C=C, gamma=gamma, class_weight="balanced", random_state=0)
    plain = SVC(**settings).fit(X, y)
    fast = KernelSVC(**settings).fit(X, y)
    assert len(X) > 150 and 0 < len(fast.support_) <= len(X)
    np.testing.assert_array_equal(fast.support_, plain.support_)
    np.testing.assert_array_equal(fast.support_vectors_, X[plain.support_])
    np.testing.assert_allclose(fast.dual_coef_, plain.dual_coef_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fast.intercept_, plain.intercept_, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fast.decision_function(T), plain.decision_function(T), rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(fast.predict(T), plain.predict(T))
    assert fast._gamma == plain._gamma and fast.shape_fit_ == plain.shape_fit_
    # a copy, a model file and the fallback give the same decisions
    np.testing.assert_array_equal(clone(fast).fit(X, y).predict(T), plain.predict(T))
    monkeypatch.setattr(KernelSVC, "MAX_ROWS", 10)
    np.testing.assert_allclose(KernelSVC(**settings).fit(X, y).decision_function(T), plain.decision_function(T),
                               rtol=1e-12, atol=1e-12)


def test_the_forests_search_ranks_candidates_on_fewer_trees_and_fits_the_winner_whole(small_tables):
    """The grid search fits its forests with the stand-in's 100 trees; the model it returns, a
    benchmark fold's or train's, has its own 300, with the parameters the search chose."""
    from classifiers.models import make_pipeline, param_grid, search_stand_in
    from classifiers.protocol import choose_protocol
    from classifiers.search import fit_search
    from classifiers.train import train_model

    data = load_training_data([str(small_tables["jaffe"])])
    pipe = make_pipeline("rf", data.groups)
    assert search_stand_in("rf", pipe).get_params()["model__n_estimators"] == 100
    assert pipe.get_params()["model__n_estimators"] == 300            # the copy, not the pipeline, changed
    assert search_stand_in("logreg", pipe) is pipe                     # no stand-in: the model itself
    assert len(param_grid("rf")["model__min_samples_leaf"]) == 2
    protocol = choose_protocol(data)
    train, _ = protocol.folds[0]
    model, best, _ = fit_search("rf", data, train, protocol, quick=False, seed=0)
    assert len(model[-1].estimators_) == 300 and model[-1].min_samples_leaf == best["model__min_samples_leaf"]
    trained, summary = train_model(data.select(train), "rf", progress=False)
    assert len(trained[-1].estimators_) == 300
    assert summary["best_params"]["model__min_samples_leaf"] == trained[-1].min_samples_leaf


def test_kernel_cache_shares_one_matrix_between_candidates_of_the_same_rows(tables, monkeypatch):
    """Inside kernel_cache, SVMs on the same rows, kernel and width share one kernel matrix (C
    aside); a new width or new rows get their own, the budget keeps at least the newest, and
    every fit gives the decisions of an SVC computing its kernel itself."""
    from sklearn.model_selection import ParameterGrid
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from classifiers import models
    from classifiers.models import KernelSVC, kernel_cache, param_grid
    from classifiers.search import group_by_group

    data = load_training_data([str(tables["jaffe"])])
    X = StandardScaler().fit_transform(data.X)
    y, T = data.y, X[::7]
    with kernel_cache():
        for C, gamma, rows, kept in [(1.0, 1e-4, 200, 1), (10.0, 1e-4, 200, 1), (1.0, 1e-3, 200, 2), (1.0, 1e-3, 180, 3)]:
            fast = KernelSVC(C=C, gamma=gamma).fit(X[:rows], y[:rows])
            assert len(models._KERNELS["matrices"]) == kept
            np.testing.assert_allclose(fast.decision_function(T), SVC(C=C, gamma=gamma).fit(X[:rows], y[:rows])
                                       .decision_function(T), rtol=1e-7, atol=1e-9)
        with kernel_cache(max_bytes=1):   # a budget smaller than one matrix keeps the newest only
            KernelSVC(C=1.0, gamma=1e-4).fit(X[:150], y[:150])
            KernelSVC(C=1.0, gamma=1e-3).fit(X[:150], y[:150])
            assert len(models._KERNELS["matrices"]) == 1
        assert len(models._KERNELS["matrices"]) == 3      # the outer cache is back
        monkeypatch.setattr(models, "_free_memory", lambda: 0)   # no room for a matrix: libsvm's own kernel
        fast = KernelSVC(C=1.0, gamma=1e-4).fit(X[:170], y[:170])
        assert len(models._KERNELS["matrices"]) == 3
        np.testing.assert_allclose(fast.decision_function(T), SVC(C=1.0, gamma=1e-4).fit(X[:170], y[:170])
                                   .decision_function(T), rtol=1e-7, atol=1e-9)
    assert models._KERNELS is None
    # two classes (sklearn flips the signs) and one-against-one decisions: libsvm's own
    two = np.isin(y, ["happy", "sad"])
    for fast, plain in [(KernelSVC(C=1.0, gamma=1e-4).fit(X[two], y[two]), SVC(C=1.0, gamma=1e-4).fit(X[two], y[two])),
                        (KernelSVC(kernel="linear", C=0.01, decision_function_shape="ovo").fit(X, y),
                         SVC(kernel="linear", C=0.01, decision_function_shape="ovo").fit(X, y))]:
        np.testing.assert_allclose(fast.decision_function(T), plain.decision_function(T), rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(fast.predict(T), plain.predict(T))
    # its predictions come from the matrix products, never from libsvm's loop over (row, vector) pairs
    expected = SVC(C=1.0, gamma=1e-4).fit(X, y).predict(T)
    monkeypatch.setattr(SVC, "predict", lambda self, X: pytest.fail("KernelSVC.predict ran libsvm's loop"))
    monkeypatch.setattr(SVC, "decision_function", lambda self, X: pytest.fail("libsvm's loop"))
    np.testing.assert_array_equal(KernelSVC(C=1.0, gamma=1e-4).fit(X, y).predict(T), expected)
    # a large table's search fits the candidates group choice by group choice: the same candidates
    grid = param_grid("svm_rbf", groups=data.groups)
    by_group = group_by_group(grid)
    assert len(by_group) == 2 and all(len(g["select__groups"]) == 1 for g in by_group)
    key = lambda params: sorted((k, str(v)) for k, v in params.items())
    assert sorted(map(key, ParameterGrid(grid))) == sorted(map(key, ParameterGrid(by_group)))


def test_a_benchmark_starts_the_costliest_search_first_and_reports_in_the_order_asked(small_tables, monkeypatch):
    """Two workers finish together when the longest searches start first: logistic regression's
    folds go before those of the action-unit model, whatever the order asked; the results keep
    that order."""
    from classifiers import search
    from classifiers.models import COSTLIEST_FIRST, DEFAULT_MODELS, costliest_first
    from classifiers.protocol import choose_protocol

    assert sorted(COSTLIEST_FIRST) == sorted(DEFAULT_MODELS)   # every default model has its place
    assert costliest_first(["logreg_au", "svm_pca", "rf", "logreg"]) == ["logreg", "rf", "logreg_au", "svm_pca"]
    data = load_training_data([str(small_tables["jaffe"])])
    protocol = choose_protocol(data, quick=True)
    started, fold_task = [], search._fold_task

    def recording(name, *args):
        started.append(name)
        return fold_task(name, *args)

    monkeypatch.setattr(search, "_fold_task", recording)
    results = search.search_models(data, ["logreg_au", "logreg"], protocol, sorted(set(data.y)), quick=True,
                                   jobs=1, progress=False)
    n = len(protocol.folds)
    assert started == ["logreg"] * n + ["logreg_au"] * n
    assert [result.name for result in results] == ["logreg_au", "logreg"]
    assert all(result.accuracy > 0.3 for result in results)   # real fits: the 7-class baseline is 0.15
