"""Hostile model files (issue 24, items 1, 4 and 5): well-formed files whose contents would crash,
hang or exhaust the process are refused on load, in one line, and `predict` / `evaluate` exit 1.

Every file is crafted here, in tmp_path, from small models fitted on random rows (no dataset): a
Random Forest and an XGBoost model whose trees point outside their node array, at themselves, or at
a feature beyond the columns (before the fix: a segmentation fault or an endless loop at the first
prediction); a meta.json that unpacks to more than its bound or nests too deep; a SHAP background
that is a scalar or too large; a column selection beyond its input; an align_size the features
cannot be made at.
"""

import hashlib
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from classifiers import artifact
from classifiers import evaluate as evaluate_cli
from classifiers import predict as predict_cli
from classifiers.trees import TreeError, check_tree, decode_ubj
from common.errors import IncompatibleModelError, ModelFileError
from common.limits import json_depth, loads_bounded
from features.describe import FeatureConfig

CONFIG = FeatureConfig(groups=("geometry",))  # 30 named columns: small, fast models


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, len(CONFIG.columns()[0]))).astype(np.float32)
    y = np.array(["angry", "happy", "sad"] * 20)
    X[y == "happy", 0] += 3
    X[y == "sad", 1] -= 3
    return X, y


def fitted(name, rows, **params):
    from classifiers.models import make_pipeline

    X, y = rows
    return make_pipeline(name, CONFIG.columns()[1], seed=0).set_params(**params).fit(X, y)


@pytest.fixture(scope="module")
def forest(rows):
    return fitted("rf", rows, model__n_estimators=3)


@pytest.fixture(scope="module")
def boosted(rows):
    return fitted("xgboost", rows, model__n_estimators=2, model__max_depth=2)


@pytest.fixture(scope="module")
def svm(rows):
    return fitted("svm_rbf", rows, model__estimator__C=1.0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(an image, a labelled dataset folder) for the commands: a blank picture, never reached."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "data" / "happy").mkdir(parents=True)
    image = folder / "data" / "happy" / "blank.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(image)
    return image, folder / "data"


def refused(path, inputs, match=None, error=ModelFileError):
    """load_model refuses ``path`` in one line naming it; predict and evaluate print one
    ``error: PATH: ...`` line and exit 1."""
    with pytest.raises(error, match=match) as info:
        artifact.load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    image, dataset = inputs
    for command, args in ((predict_cli.main, [image, "--model", path, "--jobs", "1"]),
                          (evaluate_cli.main, [path, dataset, "-q", "--jobs", "1"])):
        result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
        assert "Traceback" not in result.output
    return message


def saved(path, pipeline, meta=None):
    artifact.save_model(path, pipeline, CONFIG, meta)
    return path


def rewritten(path, edit_meta=None, members=None):
    """The model file at ``path`` with meta.json changed by ``edit_meta(meta)`` or members replaced
    (checksums recomputed, as anyone can)."""
    with zipfile.ZipFile(path) as zf:
        data = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(data["meta.json"])
    if edit_meta is not None:
        edit_meta(meta)
    data.update(members or {})
    meta["pipeline_sha256"] = hashlib.sha256(data["pipeline.skops"]).hexdigest()
    if "meta.json" not in (members or {}):
        data["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in data.items():
            zf.writestr(name, content)
    return path


# ---- item 1: tree structure --------------------------------------------------------------------------

def test_check_tree_accepts_trees_and_refuses_everything_else():
    # 0 -> (1, 2), 2 -> (3, 4)
    left, right, feature = [1, -1, 3, -1, -1], [2, -1, 4, -1, -1], [0, -2, 4, -2, -2]
    assert check_tree(left, right, feature, 5) == 2
    assert check_tree([-1], [-1], [-2], 1) == 0
    bad = {
        "outside": ([1, -1, 3, -1, -1], [2, -1, 99, -1, -1], feature, 5),
        "itself": ([0, -1, 3, -1, -1], [2, -1, 4, -1, -1], feature, 5),
        "before its parent": ([1, -1, 0, -1, -1], [2, -1, 4, -1, -1], feature, 5),
        "one child": ([1, -1, 3, -1, -1], [2, -1, -1, -1, -1], feature, 5),
        "two parents": ([1, 3, 3, -1, -1], [2, 4, 4, -1, -1], [0, 1, 2, -2, -2], 5),
        "feature": (left, right, [0, -2, 5, -2, -2], 5),
        "negative feature": (left, right, [-1, -2, 0, -2, -2], 5),
        "lengths": (left, right[:4], feature, 5),
        "empty": ([], [], [], 5),
    }
    for name, args in bad.items():
        with pytest.raises(TreeError):
            check_tree(*args)
    with pytest.raises(TreeError, match="NaN or infinity"):
        check_tree(left, right, feature, 5, values=[np.array([0.0, np.nan])])
    chain = 1200  # deeper than MAX_DEPTH: node 2k splits into a leaf 2k+1 and node 2k+2
    n = 2 * chain + 1
    left = [i + 1 if i % 2 == 0 and i < 2 * chain else -1 for i in range(n)]
    right = [i + 2 if i % 2 == 0 and i < 2 * chain else -1 for i in range(n)]
    with pytest.raises(TreeError, match="deeper than"):
        check_tree(left, right, np.zeros(n, np.int64), 1)


def _spoil_forest(forest, change):
    """A copy of the fitted forest pipeline with its first tree's arrays changed in place."""
    import copy

    pipe = copy.deepcopy(forest)
    tree = pipe.named_steps["model"].estimators_[0].tree_
    inner = np.flatnonzero(tree.children_left != -1)
    node = int(inner[-1])
    if change == "child outside":
        tree.children_left[node] = 10**6
    elif change == "child is itself":
        tree.children_right[node] = node
    elif change == "child before parent":
        tree.children_left[node] = 0
    elif change == "feature outside":
        tree.feature[node] = 10**6
    elif change == "negative feature":
        tree.feature[int(inner[0])] = -5
    return pipe


@pytest.mark.parametrize("change", ["child outside", "child is itself", "child before parent", "feature outside",
                                    "negative feature"])
def test_a_random_forest_with_a_malformed_tree_is_refused(tmp_path, forest, inputs, change):
    """Before the fix these loaded; the first prediction then crashed (exit 139) or never ended."""
    path = saved(tmp_path / "forest.skops", _spoil_forest(forest, change))
    assert "decision tree of the model is malformed" in refused(path, inputs)


def test_a_forest_tree_built_for_other_columns_is_refused(tmp_path, forest, inputs):
    """A forest hands its trees its own input unchecked: a tree that says it reads 40 columns of 30."""
    import copy

    pipe = copy.deepcopy(forest)
    pipe.named_steps["model"].estimators_[1].n_features_in_ = 40
    refused(saved(tmp_path / "forest.skops", pipe), inputs, "malformed")


def test_valid_tree_models_still_load_and_predict(tmp_path, forest, boosted, rows):
    for name, pipe in (("rf", forest), ("xgboost", boosted)):
        model = artifact.load_model(saved(tmp_path / f"{name}.skops", pipe))
        assert np.allclose(model.predict_proba(rows[0][:5]), pipe.predict_proba(rows[0][:5]))


# XGBoost: the booster is stored as UBJSON; the crafted ones are written by this encoder.

def _ubj(value):
    if isinstance(value, dict):
        return b"{" + b"".join(b"L" + struct.pack(">q", len(k.encode())) + k.encode() + _ubj(v)
                               for k, v in value.items()) + b"}"
    if isinstance(value, np.ndarray):
        marker = {"i1": b"i", "u1": b"U", "i2": b"I", "i4": b"l", "i8": b"L", "f4": b"d",
                  "f8": b"D"}[value.dtype.str[1:]]
        data = value.astype(value.dtype.newbyteorder(">")).tobytes()
        return b"[$" + marker + b"#L" + struct.pack(">q", len(value)) + data
    if isinstance(value, list):
        return b"[#L" + struct.pack(">q", len(value)) + b"".join(_ubj(v) for v in value)
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return b"L" + struct.pack(">q", value)
    if isinstance(value, float):
        return b"d" + struct.pack(">f", value)
    if isinstance(value, str):
        return b"S" + b"L" + struct.pack(">q", len(value.encode())) + value.encode()
    if value is None:
        return b"Z"
    raise TypeError(type(value))


def test_the_ubjson_reader_reads_what_xgboost_writes(boosted):
    raw = bytes(boosted.named_steps["model"].booster_.save_raw("ubj"))
    doc = decode_ubj(raw)
    as_json = json.loads(bytes(boosted.named_steps["model"].booster_.save_raw("json")))
    tree, reference = doc["learner"]["gradient_booster"]["model"]["trees"][0], \
        as_json["learner"]["gradient_booster"]["model"]["trees"][0]
    assert tree["left_children"].tolist() == reference["left_children"]
    assert np.allclose(tree["split_conditions"], reference["split_conditions"])
    assert doc["learner"]["learner_model_param"] == as_json["learner"]["learner_model_param"]
    for broken in (raw[:len(raw) // 2], raw + b"Z", b"[" * 100 + b"]" * 100, b"[$Z#L" + struct.pack(">q", 10**12),
                   b"[$l#L" + struct.pack(">q", 10**12), b"S" + b"L" + struct.pack(">q", 10**15), b"?"):
        with pytest.raises(TreeError):
            decode_ubj(broken)


def _spoil_booster(doc, change):
    model = doc["learner"]["gradient_booster"]["model"]
    tree = model["trees"][1]
    inner = np.flatnonzero(tree["left_children"] != -1)
    node = int(inner[-1])
    if change == "child outside":
        tree["left_children"][node] = 10**6
    elif change == "child is itself":
        tree["right_children"][node] = node
    elif change == "feature outside":
        tree["split_indices"][node] = 10**6
    elif change == "parent outside":
        tree["parents"][int(tree["left_children"][node])] = 10**6
    elif change == "node count":
        tree["tree_param"]["num_nodes"] = str(10**6)
    elif change == "tree class":
        model["tree_info"][1] = 7
    elif change == "classes":
        doc["learner"]["learner_model_param"]["num_class"] = "2"
    elif change == "categorical split":
        tree["split_type"][node] = 1
    elif change == "threshold":
        tree["split_conditions"][node] = np.inf


@pytest.mark.parametrize("change", ["child outside", "child is itself", "feature outside", "parent outside",
                                    "node count", "tree class", "classes", "categorical split", "threshold"])
def test_an_xgboost_model_with_a_malformed_tree_is_refused_before_xgboost_reads_it(tmp_path, boosted, inputs,
                                                                                 monkeypatch, change):
    from classifiers.models import XGBoostModel

    raw = bytes(boosted.named_steps["model"].booster_.save_raw("ubj"))
    import xgboost as xgb

    control = xgb.Booster()
    control.load_model(bytearray(_ubj(decode_ubj(raw))))  # the encoder writes what XGBoost reads
    assert control.num_boosted_rounds() == 2
    doc = decode_ubj(raw)
    _spoil_booster(doc, change)
    crafted, original = _ubj(doc), XGBoostModel.__getstate__

    def getstate(self):
        return dict(original(self), booster_ubj_=crafted)

    monkeypatch.setattr(XGBoostModel, "__getstate__", getstate)
    path = saved(tmp_path / "boosted.skops", boosted)
    monkeypatch.undo()
    refused(path, inputs, "XGBoost|TreeError")


# ---- item 4: bounded members, JSON depth and background ---------------------------------------------

def test_json_is_bounded_before_it_is_parsed():
    assert json_depth(b'{"a": [1, {"b": "[[[["}], "c": "\\"]]"}') == 3
    assert loads_bounded(b'{"a": [1]}', 100, 2) == {"a": [1]}
    with pytest.raises(ValueError, match="nests 3 levels"):
        loads_bounded(b'{"a": [[1]]}', 100, 2)
    with pytest.raises(ValueError, match="bytes"):
        loads_bounded(b"[" + b"0," * 100 + b"0]", 100, 2)


def test_a_highly_compressed_meta_json_is_refused_before_it_is_unpacked(tmp_path, forest, inputs):
    """6 MB of meta.json in a file of about 10 kB: refused from the sizes the zip declares, before
    unpacking (it was unpacked and parsed: a 440 MB one took 5.4 GB)."""
    import tracemalloc

    path = saved(tmp_path / "bomb.skops", forest)

    def pad(meta):
        meta["padding"] = [0] * 2_000_000
    rewritten(path, pad)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="meta.json"):
            artifact.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, peak
    refused(path, inputs, "meta.json")


def test_a_deeply_nested_meta_json_is_refused(tmp_path, forest, inputs):
    path = saved(tmp_path / "deep.skops", forest)
    nested = json.dumps(dict(artifact.read_meta(path), extra=json.loads("[" * 500 + "]" * 500)))
    rewritten(path, members={"meta.json": nested.encode()})
    refused(path, inputs, "nests 50[0-9] levels")


@pytest.mark.parametrize("background", [5, "x", [1, 2, 3], [[0.0] * 29], [[0.0] * 30] * 65, [["a"] * 30],
                                        [[None] * 30], [[[0.0]] * 30]])
def test_a_bad_explanation_background_is_refused(tmp_path, svm, inputs, background):
    """A scalar background gave a 40-line traceback with --explain; 2,000 rows took 4.8 GB."""
    path = saved(tmp_path / "svm.skops", svm, {"explain_background": [[0.0] * 30] * 3})
    assert artifact.load_model(path).meta["explain_background"]
    rewritten(path, lambda meta: meta.update(explain_background=background))
    refused(path, inputs, "explanation background")


def test_explaining_against_a_background_stays_within_memory_bounds(rows, svm, monkeypatch):
    """The faces mixed from the face and its background (SHAP's coalitions) are built a bounded batch at
    a time: the same values with batches of 3 coalitions as with all at once, and no batch larger."""
    from classifiers import explain as explain_module

    x, background = rows[0][0], rows[0][1:5]
    keep = np.random.default_rng(0).random((16, 30)) < 0.5
    whole = explain_module.coalition_values(svm, x, background, keep, 1)
    sizes = []

    class Counting:
        def predict_proba(self, X):
            sizes.append(len(X))
            return svm.predict_proba(X)

    monkeypatch.setattr(explain_module, "MIXED_VALUES", 3 * background.size)
    assert np.allclose(whole, explain_module.coalition_values(Counting(), x, background, keep, 1))
    assert max(sizes) == 3 * len(background) and sum(sizes) == 16 * len(background)


# ---- item 5: bad values inside a well-formed file ------------------------------------------------------

def without_numeric_form(path):
    """The model file at ``path`` without linear.npz (the pipeline is then loaded, and checked, at once)."""
    with zipfile.ZipFile(path) as zf:
        data = {name: zf.read(name) for name in zf.namelist() if name != "linear.npz"}
    meta = json.loads(data["meta.json"])
    meta.pop("linear_sha256", None)
    data["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in data.items():
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize("name", ["rf", "logreg"])
def test_a_column_selection_beyond_the_input_is_refused(tmp_path, rows, forest, inputs, name):
    """GroupSelector columns past the 30 inputs gave an IndexError traceback at the first prediction
    (or, for a linear model, with --explain)."""
    import copy

    pipe = copy.deepcopy(forest) if name == "rf" else fitted("logreg", rows, model__C=0.1)
    path = saved(tmp_path / "selection.skops", pipe)  # saved whole: its numeric form is made here
    selector = pipe.named_steps["select"]
    selector.columns_ = selector.columns_.copy()
    selector.columns_[-1] = 10**6
    import skops.io as sio

    rewritten(path, members={"pipeline.skops": sio.dumps(pipe, compression=zipfile.ZIP_DEFLATED)})
    if name == "logreg":  # the numeric form predicts; the pipeline is refused when first needed (--explain)
        model = artifact.load_model(path)
        with pytest.raises(ModelFileError, match="cannot predict"):
            model.pipeline
        without_numeric_form(path)
    refused(path, inputs, "cannot predict")


def test_an_align_size_the_features_are_not_made_at_is_refused(tmp_path, inputs):
    """align_size 16 with the pixel feature groups (digest recomputed, as anyone can): part HOG
    cannot be computed on a 16 px face, and face HOG gives another number of columns."""
    model = artifact.load_model()
    path = tmp_path / "align16.skops"
    with open(artifact.DEFAULT_MODEL, "rb") as src:
        path.write_bytes(src.read())

    def align16(meta):
        meta["feature_config"]["align_size"] = 16
        config = FeatureConfig.from_dict(meta["feature_config"])
        meta["features_sha256"] = artifact.features_digest(config)
    rewritten(path, align16)
    refused(path, inputs, "aligned at 96 px", IncompatibleModelError)
    assert model.config.unsupported() is None
    assert FeatureConfig(groups=("geometry", "action_units"), align_size=16).unsupported() is None


@pytest.mark.parametrize("key, value", [("format_version", "2\nsecond line"), ("detector", "hog\nx" * 100),
                                        ("version", ["1\n2"]), ("groups", ["geometry\nlandmarks"])])
def test_values_of_meta_json_never_break_the_one_line_message(tmp_path, forest, inputs, key, value):
    """Messages quote what a file says; a newline or a long value inside it stays one short line (found by
    the fuzz tier: the format version was quoted as it stood)."""
    path = saved(tmp_path / "quoted.skops", forest)

    def edit(meta):
        (meta if key == "format_version" else meta["feature_config"])[key] = value
    message = refused(rewritten(path, edit), inputs, None, IncompatibleModelError)
    assert len(message) < len(str(path)) + 300, message


def test_a_library_error_of_several_lines_while_loading_is_one_line(tmp_path, boosted, inputs, monkeypatch):
    """XGBoost's own errors carry a stack of several lines (found by the fuzz tier: a booster whose bytes
    XGBoost refused); only the first line of such a message is quoted."""
    from classifiers import trees

    path = saved(tmp_path / "boosted.skops", boosted)

    def refuse(raw, n_features, n_classes):
        raise ValueError("[20:13:49] json.h:88: Invalid cast, from Null to I32Array\nStack trace:\n  [bt] (0) ...")
    monkeypatch.setattr(trees, "check_xgboost_ubj", refuse)
    assert refused(path, inputs, "Invalid cast").endswith("(ValueError: [20:13:49] json.h:88: Invalid cast, from "
                                                           "Null to I32Array)")


@pytest.mark.parametrize("member", ["pipeline", "numeric form"])
def test_an_array_declaring_more_than_it_holds_is_refused_before_numpy_allocates_it(tmp_path, rows, inputs, member):
    """numpy allocates what a .npy header declares before reading: 10**12 float64 (8 TB) from a few bytes."""
    path = saved(tmp_path / "declared.skops", fitted("logreg", rows, model__C=0.1))
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    huge = huge.getvalue() + bytes(64)
    with zipfile.ZipFile(path) as zf:
        outer = {name: zf.read(name) for name in zf.namelist()}
    key = "pipeline.skops" if member == "pipeline" else "linear.npz"
    with zipfile.ZipFile(io.BytesIO(outer[key])) as zf:
        inner = {name: zf.read(name) for name in zf.namelist()}
    name = sorted(n for n in inner if n.endswith(".npy"))[0]
    inner[name] = huge
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in inner.items():
            zf.writestr(n, data)
    linear = buffer.getvalue() if key == "linear.npz" else outer["linear.npz"]
    digest = hashlib.sha256(linear).hexdigest()
    rewritten(path, lambda m: m.update(linear_sha256=digest), members={key: buffer.getvalue()})
    assert "declares 8,000,000,000,000 bytes" in refused(path, inputs)


# ---- an age model by age group whose arrays do not fit together ---------------------------------------

def _spoil_age_model(model, change):
    final = model[-1]
    if change == "member outside":
        final.member_index_ = final.member_index_.copy()
        final.member_index_[-1] = 10 ** 9
    elif change == "negative member":
        final.member_index_ = final.member_index_.copy()
        final.member_index_[0] = -1
    elif change == "repeated member":   # a small file that would make predict allocate rows x members
        final.member_index_ = np.zeros_like(final.member_index_)
    elif change == "offsets cut short":
        final.member_offsets_ = final.member_offsets_[:-1]
    elif change == "offset outside":
        final.member_offsets_ = final.member_offsets_.copy()
        final.member_offsets_[2] = 10 ** 9
    elif change == "intercepts cut short":
        final.intercepts_ = final.intercepts_[:-1]
    elif change == "groups reversed":
        final.groups_ = final.groups_[::-1].copy()
    elif change == "negative width":
        final.gamma_ = -1.0
    elif change == "vectors of other inputs":
        final.vectors_ = final.vectors_[:, :-1].copy()
    return model


@pytest.mark.parametrize("change", ["member outside", "negative member", "repeated member", "offsets cut short",
                                    "offset outside", "intercepts cut short", "groups reversed", "negative width",
                                    "vectors of other inputs"])
def test_an_age_model_whose_groups_do_not_fit_together_is_refused(tmp_path, rows, inputs, change):
    import copy

    from classifiers.models import make_pipeline

    X, _ = rows
    age = np.clip(35 + 15 * X[:, 0] + 10 * X[:, 1], 1, 95)   # every age group present
    model = make_pipeline("svr_groups", CONFIG.columns()[1], seed=0).set_params(model__gamma="scale").fit(X, age)
    assert len(model[-1].groups_) >= 4
    good = saved(tmp_path / "good.skops", model, {"target": "age"})
    assert artifact.load_model(good).predict(X[:3]).shape == (3,)
    spoiled = saved(tmp_path / "age.skops", _spoil_age_model(copy.deepcopy(model), change), {"target": "age"})
    assert "the age model's parts do not fit together" in refused(spoiled, inputs)
