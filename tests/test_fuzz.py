"""Fuzz tier (issue 24): Hypothesis mutates real model files and real images and a separate
process (tests/fuzz_worker.py) loads each one, under a memory limit and a time limit. Every
mutation must end in a prediction or in one clear refusal (a FacialExpressionError with a
one-line message): a crash, a hang, any other exception or an allocation beyond the limit fails.

Mutations of model files are the ones an attacker would make, checksums recomputed: a value of a
fitted array inside the pipeline (tree children and features, selected columns, scales, ...), a
byte of an XGBoost booster, a value anywhere in meta.json, a value of the numeric form; and
plain byte flips and truncations of the file. Images: byte flips, truncations and repeated
chunks of a JAFFE TIFF, a PNG, a baseline and a progressive JPEG.

Budget: FER_FUZZ_EXAMPLES examples per test (default 15: CI); `make fuzz` runs 1,000 per test
(BENCHMARKS.md, "Fuzzing", says what that run tried and found). FER_FUZZ_MEMORY bounds the
worker's address space (default 3 GB), FER_FUZZ_TIMEOUT each file (default 60 s).
"""

import hashlib
import io
import json
import math
import os
import select
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import DATASETS_DIR, PROJECT_DIR

pytestmark = pytest.mark.integration  # a JAFFE face; and a few seconds of budget, kept out of the unit tier

EXAMPLES = int(os.environ.get("FER_FUZZ_EXAMPLES", "15"))
MEMORY = int(float(os.environ.get("FER_FUZZ_MEMORY", 3e9)))
TIMEOUT = float(os.environ.get("FER_FUZZ_TIMEOUT", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


class Worker:
    """The fuzz worker process; restarted after a crash or a hang."""

    def __init__(self):
        self.process = None

    def start(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(PROJECT_DIR))
        self.process = subprocess.Popen([sys.executable, str(PROJECT_DIR / "tests" / "fuzz_worker.py"), str(MEMORY)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env, cwd=PROJECT_DIR)
        assert self._reply(120)["outcome"] == "ready"

    def _reply(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return {"outcome": "hang", "message": f"no answer within {timeout} s"}
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            error = self.process.stderr.read()[-2000:]
            self.process = None
            return {"outcome": "crash", "message": f"the worker died (exit code {code}): {error}"}
        return json.loads(line)

    def ask(self, kind, path):
        if self.process is None:
            self.start()
        self.process.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
        self.process.stdin.flush()
        return self._reply(TIMEOUT)

    def stop(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    w.start()
    yield w
    w.stop()


def assert_handled(reply, path):
    """A prediction, or one refusal line naming the file (what happened is counted: pytest
    --hypothesis-show-statistics lists how often each kind of refusal came up)."""
    reason = reply["message"].removeprefix(f"{path}: ").split("(")[0].strip()[:60]
    event(f"{reply['outcome']}: {reason if reply['outcome'] == 'refused' else ''}")
    assert reply["outcome"] in ("ok", "refused"), f"{path}: {reply['outcome']}: {reply['message']}"
    if reply["outcome"] == "refused":
        assert "\n" not in reply["message"].strip(), reply["message"]


class Seeds(dict):
    """Seed files by name (a short repr: Hypothesis prints the arguments of a failing example)."""

    def __repr__(self):
        return f"Seeds({sorted(self)})"


# ---- the seeds --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_seeds(tmp_path_factory):
    """The shipped model file and small Random Forest and XGBoost files (fitted on random rows)."""
    from classifiers import artifact
    from classifiers.models import make_pipeline
    from features.describe import FeatureConfig

    folder = tmp_path_factory.mktemp("seeds")
    config = FeatureConfig(groups=("geometry", "action_units"))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, len(config.columns()[0]))).astype(np.float32)
    y = np.array(["angry", "happy", "sad"] * 20)
    X[y == "happy", 0] += 3
    seeds = {"shipped": artifact.DEFAULT_MODEL}
    for name, params in (("rf", {"model__n_estimators": 3}), ("xgboost", {"model__n_estimators": 2})):
        pipe = make_pipeline(name, config.columns()[1], seed=0).set_params(**params).fit(X, y)
        seeds[name] = artifact.save_model(folder / f"{name}.skops", pipe, config) and folder / f"{name}.skops"
    return Seeds({name: open(path, "rb").read() for name, path in seeds.items()})


@pytest.fixture(scope="module")
def image_seeds():
    from PIL import Image

    face = DATASETS_DIR / "jaffe" / "happy" / "KA.HA1.29.tiff"
    pixels = Image.open(face)
    out = {"tiff": face.read_bytes()}
    for name, kwargs in (("png", {"format": "PNG"}), ("jpeg", {"format": "JPEG", "quality": 90}),
                         ("progressive", {"format": "JPEG", "quality": 90, "progressive": True})):
        buffer = io.BytesIO()
        pixels.save(buffer, **kwargs)
        out[name] = buffer.getvalue()
    return Seeds(out)


# ---- mutations --------------------------------------------------------------------------------------

#: Values that break assumptions: indices just outside, signs, extremes, non-finite numbers.
INTERESTING = st.sampled_from([-(2**31), -2, -1, 0, 1, 2, 3, 29, 30, 44, 45, 255, 256, 2**31 - 1, 2**63 - 1,
                               math.nan, math.inf, -math.inf, 1e308, -1e-308, 0.5])

byte_edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8)


def flip_bytes(data, edits, cut=None):
    data = bytearray(data)
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[:int(cut * len(data))]
    return bytes(data)


def _zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members, compression=zipfile.ZIP_STORED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return out.getvalue()


def _set_element(npy, index, value):
    """The .npy bytes with one element (index modulo its size) set to ``value`` as its type allows."""
    array = np.load(io.BytesIO(npy), allow_pickle=False)
    if array.size == 0 or array.dtype.kind not in "iufb" and array.dtype.names is None:
        return npy
    flat = array.reshape(-1).copy() if array.dtype.names is None else array.reshape(-1).copy()
    i = index % flat.size
    if array.dtype.names is not None:  # a tree's node records: set one field
        field = array.dtype.names[index % len(array.dtype.names)]
        target, i = flat[field], i
    else:
        target = flat
    kind = target.dtype.kind
    try:
        if kind in "iu":
            if not math.isfinite(value):
                return npy
            info = np.iinfo(target.dtype)
            target[i] = int(min(max(int(value), info.min), info.max))
        elif kind == "b":
            target[i] = bool(value == value and value)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                target[i] = value
    except (OverflowError, ValueError):
        return npy
    out = io.BytesIO()
    np.save(out, flat.reshape(array.shape), allow_pickle=False)
    return out.getvalue()


def _reseal(members, meta):
    """Recompute the checksums an attacker can recompute (the feature digest too, when the mutated
    configuration is still readable)."""
    from classifiers import artifact
    from features.describe import FeatureConfig

    meta = dict(meta)
    meta["pipeline_sha256"] = hashlib.sha256(members["pipeline.skops"]).hexdigest()
    if "linear.npz" in members:
        meta["linear_sha256"] = hashlib.sha256(members["linear.npz"]).hexdigest()
    try:
        meta["features_sha256"] = artifact.features_digest(FeatureConfig.from_dict(meta["feature_config"]))
    except Exception:  # noqa: BLE001 -- a configuration the loader will refuse anyway
        pass
    members = dict(members, **{"meta.json": json.dumps(meta).encode()})
    return _zip(members)


def mutate_pipeline(data, choice, index, value, edits):
    """One value of one array of the pipeline (or bytes of a non-array member, e.g. a booster)."""
    members = _zip_members(data)
    inner = _zip_members(members["pipeline.skops"])
    names = sorted(n for n in inner if n != "schema.json")
    name = names[choice % len(names)]
    if name.endswith(".npy"):
        inner[name] = _set_element(inner[name], index, value)
    else:
        inner[name] = flip_bytes(inner[name], edits)
    members["pipeline.skops"] = _zip(inner, zipfile.ZIP_DEFLATED)
    return _reseal(members, json.loads(members["meta.json"]))


def mutate_linear(data, choice, index, value):
    members = _zip_members(data)
    if "linear.npz" not in members:
        return data
    arrays = _zip_members(members["linear.npz"])
    name = sorted(arrays)[choice % len(arrays)]
    arrays[name] = _set_element(arrays[name], index, value)
    members["linear.npz"] = _zip(arrays, zipfile.ZIP_DEFLATED)
    return _reseal(members, json.loads(members["meta.json"]))


json_values = st.recursive(st.none() | st.booleans() | INTERESTING | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4) |
                           st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)


def mutate_meta(data, path_choices, value):
    """Replace the value at a path of meta.json (chosen by ``path_choices``) with ``value``."""
    members = _zip_members(data)
    meta = json.loads(members["meta.json"])
    node, parent, key = meta, None, None
    for choice in path_choices:  # walk down: each choice picks a key (or index) of the node reached
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        if not children:
            break
        parent, (key, node) = node, children[choice % len(children)]
    if parent is None:
        return data
    parent[key] = value
    return _reseal(members, meta)


# ---- the tests ----------------------------------------------------------------------------------------

seed_names = st.sampled_from(["shipped", "rf", "xgboost"])


@FUZZ
@given(seed=seed_names, choice=st.integers(0, 10**6), index=st.integers(0, 10**6), value=INTERESTING,
       edits=byte_edits)
def test_fuzz_values_inside_the_pipeline(worker, model_seeds, tmp_path, seed, choice, index, value, edits):
    path = tmp_path / "fuzzed.skops"
    path.write_bytes(mutate_pipeline(model_seeds[seed], choice, index, value, edits))
    assert_handled(worker.ask("model", path), path)


@FUZZ
@given(seed=seed_names, path_choices=st.lists(st.integers(0, 100), min_size=1, max_size=5), value=json_values)
def test_fuzz_meta_json(worker, model_seeds, tmp_path, seed, path_choices, value):
    path = tmp_path / "fuzzed.skops"
    path.write_bytes(mutate_meta(model_seeds[seed], path_choices, value))
    assert_handled(worker.ask("model", path), path)


@FUZZ
@given(choice=st.integers(0, 100), index=st.integers(0, 10**6), value=INTERESTING)
def test_fuzz_the_numeric_form(worker, model_seeds, tmp_path, choice, index, value):
    path = tmp_path / "fuzzed.skops"
    path.write_bytes(mutate_linear(model_seeds["shipped"], choice, index, value))
    assert_handled(worker.ask("model", path), path)


@FUZZ
@given(seed=seed_names, edits=byte_edits, cut=st.none() | st.floats(0, 1))
def test_fuzz_model_file_bytes(worker, model_seeds, tmp_path, seed, edits, cut):
    path = tmp_path / "fuzzed.skops"
    path.write_bytes(flip_bytes(model_seeds[seed], edits, cut))
    assert_handled(worker.ask("model", path), path)


@FUZZ
@given(seed=st.sampled_from(["tiff", "png", "jpeg", "progressive"]), edits=byte_edits,
       cut=st.none() | st.floats(0, 1), repeat=st.none() | st.tuples(st.floats(0, 1), st.integers(1, 2000),
                                                                   st.integers(1, 50)))
def test_fuzz_images(worker, image_seeds, tmp_path, seed, edits, cut, repeat):
    data = image_seeds[seed]
    if repeat is not None:  # a chunk repeated (JPEG scans, PNG chunks, TIFF strips)
        where, length, times = repeat
        start = int(where * len(data))
        data = data[:start] + data[start:start + length] * times + data[start:]
    path = tmp_path / f"fuzzed.{'tif' if seed == 'tiff' else 'png' if seed == 'png' else 'jpg'}"
    path.write_bytes(flip_bytes(data, edits, cut))
    assert_handled(worker.ask("image", path), path)
