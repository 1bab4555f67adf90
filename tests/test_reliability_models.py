"""Untrusted model files (issue 6): loading one executes nothing from it, and every damaged, tampered
or foreign file is one clear ModelFileError -- one line and exit code 1 from the commands.

The attacks are real: each crafted file is first shown to run its payload when loaded the unsafe
way (skops trusting whatever the file names, or pickle), in another process; then the project's
loader and commands refuse it and the payload's marker file never appears. The files are made from
the shipped model, so the checksum in meta.json is recomputed: the allowlist is what stops them.
Basic cases (half a file, wrong checksum, FunctionTransformer(os.system), future feature version)
are in test_classifiers.py::test_bad_model_files_are_refused.
"""

import hashlib
import io
import json
import os
import pickle
import textwrap
import time
import zipfile

import pytest
from click.testing import CliRunner

from conftest import DATASETS_DIR

from classifiers import artifact
from classifiers import evaluate as evaluate_cli
from classifiers import predict as predict_cli
from common.errors import IncompatibleModelError, ModelFileError

FACE = str(DATASETS_DIR / "jaffe" / "happy" / "KA.HA1.29.tiff")


@pytest.fixture(scope="module")
def shipped():
    """(meta dict, pipeline.skops bytes, whole file bytes) of the shipped model."""
    with open(artifact.DEFAULT_MODEL, "rb") as fh:
        data = fh.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("meta.json")), zf.read("pipeline.skops"), data


def shipped_member(name):
    with zipfile.ZipFile(artifact.DEFAULT_MODEL) as zf:
        return zf.read(name)


def model_file(path, meta, blob, checksum=True, members=None, compression=zipfile.ZIP_STORED, linear=None):
    """Write a model zip; ``checksum``: make meta.json's pipeline_sha256 match ``blob`` (and
    linear_sha256 the numeric form). The numeric form is ``linear``, by default the shipped model's
    when ``meta`` names one."""
    meta = dict(meta)
    if linear is None and "linear_sha256" in meta:
        linear = shipped_member("linear.npz")
    if checksum:
        meta["pipeline_sha256"] = hashlib.sha256(blob).hexdigest()
        if linear is not None:
            meta["linear_sha256"] = hashlib.sha256(linear).hexdigest()
    if members is None:
        members = {"meta.json": json.dumps(meta).encode(), "pipeline.skops": blob}
        if linear is not None:
            members["linear.npz"] = linear
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def with_schema(blob, edit):
    """The skops blob with its schema.json changed by ``edit(schema)`` (arrays kept)."""
    inner = zipfile.ZipFile(io.BytesIO(blob))
    schema = json.loads(inner.read("schema.json"))
    edit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in inner.infolist():
            zf.writestr(info.filename, json.dumps(schema) if info.filename == "schema.json" else inner.read(info))
    return out.getvalue()


def _str(text):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(text),
            "is_json": True}


def _call(module, name, *args):
    """A skops node that, when constructed, calls ``module.name(*args)`` (the loader skops uses for
    objects rebuilt from a constructor call)."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                        "content": list(args)}}


def payloads(folder):
    """Name -> (skops node that writes a marker file in ``folder``, the marker)."""
    def marker(name):
        return os.path.join(folder, f"PWNED_{name}")
    return {
        "os.system": (_call("os", "system", _str(f"echo pwned > {marker('system')}")), marker("system")),
        "builtins.eval": (_call("builtins", "eval", _str(f"open({marker('eval')!r}, 'w').write('pwned')")),
                          marker("eval")),
        "subprocess.Popen": (_call("subprocess", "Popen", {"__class__": "list", "__module__": "builtins",
                                                           "__loader__": "ListNode",
                                                           "content": [_str("touch"), _str(marker("popen"))]}),
                             marker("popen")),
    }


def evil_models(folder, shipped):
    """Name -> (model file whose pipeline runs a payload while it is rebuilt, marker file)."""
    meta, blob, _ = shipped
    out = {}
    for name, (node, marker) in payloads(folder).items():
        def inject(schema, node=node):
            schema["content"]["content"]["memory"] = node  # a Pipeline parameter, set while loading
        path = os.path.join(folder, f"evil_{name}.skops")
        out[name] = (model_file(path, meta, with_schema(blob, inject)), marker)
    return out


def _wait_for(paths, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline and not all(os.path.exists(p) for p in paths):
        time.sleep(0.05)
    return [p for p in paths if os.path.exists(p)]


def one_line_cli_error(command, args, prefix):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def assert_refused(path, match=None, error=ModelFileError, cli=True):
    """load_model(path) raises ``error``, one line naming the file; so does predict --model path."""
    with pytest.raises(error, match=match) as info:
        artifact.load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    if cli:
        one_line_cli_error(predict_cli.main, [FACE, "--model", path], f"error: {path}: ")
    return message


# --- crafted attacks ---------------------------------------------------------------------------------

@pytest.mark.integration  # reads a JAFFE face
def test_crafted_skops_payloads_would_run_but_are_refused(tmp_path, shipped, run_python):
    """Three model files whose pipeline calls os.system, eval and subprocess.Popen while skops rebuilds
    it. Loaded the unsafe way (in another process) each one writes its marker file; load_model, the
    predict and the evaluate commands refuse each one by the type it names, and no marker appears."""
    control = tmp_path / "control"
    control.mkdir()
    live = evil_models(str(control), shipped)
    code = textwrap.dedent(f"""
        import zipfile, skops.io as sio
        for path in {[p for p, _ in live.values()]!r}:
            blob = zipfile.ZipFile(path).read("pipeline.skops")
            sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))  # what the allowlist prevents
    """)
    result = run_python(["-c", code])
    assert result.returncode == 0, result.stderr
    markers = [m for _, m in live.values()]
    assert _wait_for(markers) == markers, "a crafted file is not a working exploit: the test proves nothing"

    target = tmp_path / "target"
    target.mkdir()
    evil = evil_models(str(target), shipped)
    for name, (path, _) in evil.items():
        message = assert_refused(path, "not trusted")
        assert name in message
        one_line_cli_error(evaluate_cli.main, [path, os.path.dirname(os.path.dirname(FACE)), "-q"], "error: ")
    # and in a fresh process, through the command a user would run
    path, _ = evil["os.system"]
    result = run_python(["-m", "classifiers.predict", FACE, "--model", path])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and "os.system" in lines[0], lines
    time.sleep(0.5)  # a payload that had started a process would have written its marker by now
    assert sorted(os.listdir(target)) == sorted(os.path.basename(p) for p, _ in evil.values())


class _Exploit:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_pickles_disguised_as_model_files_are_refused_without_running(tmp_path, shipped, run_python):
    """A plain pickle renamed .skops, a model zip whose pipeline member is a pickle (checksum
    matching), and a zip holding a pickle member under another name: all refused, nothing run."""
    control = tmp_path / "control"
    control.mkdir()
    live = pickle.dumps(_Exploit(f"echo pwned > {control / 'PWNED'}"))
    result = run_python(["-c", f"import pickle; pickle.loads({live!r})"])
    assert result.returncode == 0, result.stderr
    assert _wait_for([control / "PWNED"]) == [control / "PWNED"], "the pickle is not a working exploit"

    target = tmp_path / "target"
    target.mkdir()
    marker = target / "PWNED"
    payload = pickle.dumps(_Exploit(f"echo pwned > {marker}"))
    meta = shipped[0]
    (target / "plain_pickle.skops").write_bytes(payload)
    files = {
        "plain_pickle.skops": "not a readable model file",
        "pickle_inside.skops": "cannot be read",
        "pickle_member.skops": "not a model file of this project",
    }
    model_file(target / "pickle_inside.skops", meta, payload)
    model_file(target / "pickle_member.skops", meta, payload,
               members={"meta.json": json.dumps(meta).encode(), "pipeline.pkl": payload})
    for name, match in files.items():
        assert_refused(target / name, match)
    time.sleep(0.3)
    assert not marker.exists()


# --- damaged, tampered and foreign files -----------------------------------------------------------------

def _data_offset(data, member):
    """Where ``member``'s bytes start in the zip ``data``."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    name_length, extra_length = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def test_truncated_model_files(tmp_path, shipped):
    data = shipped[2]
    n = len(data)
    for offset in (0, 1, 4, 30, 100, 1000, n // 4, n // 2, 3 * n // 4, n - 23, n - 1):
        path = tmp_path / f"cut_{offset}.skops"
        path.write_bytes(data[:offset])
        assert_refused(path)


def test_flipped_bytes(tmp_path, shipped):
    """One byte changed in place anywhere: in meta.json, in the pipeline or the numeric form (the zip's
    CRC catches it), in the pipeline with the zip rewritten around it (the checksum catches it), in the
    zip directory (where the last member starts)."""
    meta, blob, data = shipped
    meta_start, meta_size = _data_offset(data, "meta.json")
    pipe_start, pipe_size = _data_offset(data, "pipeline.skops")
    linear_start, linear_size = _data_offset(data, "linear.npz")
    places = {"meta": meta_start + meta_size // 2, "pipeline_start": pipe_start + 10,
              "pipeline_middle": pipe_start + pipe_size // 2, "pipeline_end": pipe_start + pipe_size - 5,
              "linear_middle": linear_start + linear_size // 2, "directory": data.rindex(b"PK\x01\x02") + 42}
    for name, where in places.items():
        damaged = bytearray(data)
        damaged[where] ^= 0x20
        path = tmp_path / f"flip_{name}.skops"
        path.write_bytes(bytes(damaged))
        assert_refused(path)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    path = model_file(tmp_path / "rezipped.skops", meta, bytes(flipped), checksum=False)
    assert_refused(path, "checksum")


def test_foreign_and_empty_files(tmp_path, shipped):
    import numpy as np

    np.savez(tmp_path / "table.npz", X=np.zeros((3, 4)))
    os.replace(tmp_path / "table.npz", tmp_path / "foreign_zip.skops")
    (tmp_path / "meta.json.skops").write_text(json.dumps(shipped[0]))
    (tmp_path / "empty.skops").write_bytes(b"")
    (tmp_path / "text.skops").write_text("this is not a model\n")
    (tmp_path / "folder.skops").mkdir()
    model_file(tmp_path / "extra_member.skops", shipped[0], shipped[1],
               members={"meta.json": json.dumps(shipped[0]).encode(), "pipeline.skops": shipped[1],
                        "readme.txt": b"hello"})
    other_meta = dict(shipped[0], format="someone-elses-model")
    model_file(tmp_path / "other_format.skops", other_meta, shipped[1])
    future = dict(shipped[0], format_version=99)
    model_file(tmp_path / "future_format.skops", future, shipped[1])
    for name in ("foreign_zip", "meta.json", "empty", "text", "extra_member", "other_format"):
        assert_refused(tmp_path / f"{name}.skops")
    # the command refuses a folder while parsing its options (click: usage error, exit code 2)
    assert_refused(tmp_path / "folder.skops", "no such model file", cli=False)
    assert_refused(tmp_path / "future_format.skops", "format 99", IncompatibleModelError)


@pytest.mark.parametrize("change", ["feature_config=5", "labels=7", "upsample='x'", "detector='telepathy'",
                                    "align_size=10**9", "groups=5", "nested_json"])
def test_tampered_descriptions(tmp_path, shipped, change):
    """meta.json is not under the checksum: whatever it says must be a clear error, not a crash later."""
    meta, blob, _ = shipped
    meta = json.loads(json.dumps(meta))
    config = meta["feature_config"]
    members = None
    if change == "feature_config=5":
        meta["feature_config"] = 5
    elif change == "labels=7":
        meta["labels"] = 7
    elif change == "upsample='x'":
        config["upsample"] = "x"
    elif change == "detector='telepathy'":
        config["detector"] = "telepathy"
    elif change == "align_size=10**9":
        config["align_size"] = 10**9
    elif change == "groups=5":
        config["groups"] = 5
    else:
        members = {"meta.json": b"[" * 100_000 + b"]" * 100_000, "pipeline.skops": blob}
    assert_refused(model_file(tmp_path / "tampered.skops", meta, blob, members=members))


def _refused_within(path, match, limit):
    """assert_refused(path, match), allocating at most ``limit`` bytes on the way (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match):
            artifact.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"{path.name}: {peak / 1e6:.1f} MB allocated while refusing it"
    return peak


@pytest.mark.integration  # reads a JAFFE face
def test_zip_bombs_are_refused_before_they_unpack(tmp_path, shipped, monkeypatch):
    """A model zip (or the pipeline zip inside it) whose members unpack to more than MAX_BYTES is refused
    without unpacking them, even when its directory understates the sizes. MAX_BYTES is lowered to 2 MB
    here, the bombs hold 20 MB of zeros in under 100 KB, and refusing one allocates under 6 MB."""
    meta, blob, _ = shipped
    monkeypatch.setattr(artifact, "MAX_BYTES", 2_000_000)
    zeros = bytes(20_000_000)
    bare_meta = {k: v for k, v in meta.items() if k != "linear_sha256"}  # the bomb, no numeric form beside it
    outer = model_file(tmp_path / "outer_bomb.skops", bare_meta, zeros, compression=zipfile.ZIP_DEFLATED)
    assert outer.stat().st_size < 100_000
    _refused_within(outer, "unpacks to more than 2 MB", 6_000_000)

    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("padding.npy", zeros)
    path = model_file(tmp_path / "inner_bomb.skops", meta, inner.getvalue())
    _refused_within(path, "unpacks to more than 2 MB", 6_000_000)

    # the central directory claims the 20 MB member holds 100 bytes (the local header keeps the truth)
    lying = bytearray(outer.read_bytes())
    entry = lying.index(b"PK\x01\x02")
    while lying[entry + 46:entry + 46 + len(b"pipeline.skops")] != b"pipeline.skops":
        entry = lying.index(b"PK\x01\x02", entry + 4)
    lying[entry + 24:entry + 28] = (100).to_bytes(4, "little")
    path = tmp_path / "lying_bomb.skops"
    path.write_bytes(bytes(lying))
    _refused_within(path, "not a readable model file", 6_000_000)
    one_line_cli_error(predict_cli.main, [FACE, "--model", path], f"error: {path}: ")


def test_the_shipped_model_still_loads():
    model = artifact.load_model()
    assert model.labels and model.config.detector in ("auto", "hog", "cnn", "whole")


# --- the feature layout and the parameters ----------------------------------------------------------------

def with_arrays(blob, edit):
    """The skops blob with each .npy array replaced by ``edit(attribute name, array)`` where that
    returns an array (the name is the key the array sits under in schema.json)."""
    import numpy as np

    inner = zipfile.ZipFile(io.BytesIO(blob))
    keys, stack = {}, [(None, json.loads(inner.read("schema.json")))]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            if node.get("__loader__") == "NdArrayNode" and "file" in node:
                keys[node["file"]] = key
            stack.extend((key if k == "content" else k, v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in inner.infolist():
            data = inner.read(info)
            if info.filename in keys:
                array = np.load(io.BytesIO(data), allow_pickle=False)
                changed = edit(keys[info.filename], array.copy())
                if changed is not None:
                    buffer = io.BytesIO()
                    np.save(buffer, changed, allow_pickle=False)
                    data = buffer.getvalue()
            zf.writestr(info.filename, data)
    return out.getvalue()


def with_linear_arrays(edit):
    """The shipped numeric form with ``edit(arrays)`` applied to its {name: array}."""
    import numpy as np

    with np.load(io.BytesIO(shipped_member("linear.npz")), allow_pickle=False) as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    edit(arrays)
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("change", ["reversed groups", "detector hog", "upsample 1", "align_size 112",
                                    "no digest", "digest of other columns"])
def test_the_feature_layout_is_pinned(tmp_path, shipped, change):
    """meta.json's feature configuration must be the one the pipeline was trained on, to the column: groups
    in another order (the same number of columns), another detector or upsampling (no column changes, but
    not the faces the model learnt from) were loaded and gave confident nonsense ("angry 100%")."""
    from features.describe import FeatureConfig

    meta, blob, _ = shipped
    meta = json.loads(json.dumps(meta))
    config = meta["feature_config"]
    if change == "reversed groups":
        config["groups"] = config["groups"][::-1]
    elif change == "detector hog":
        config["detector"] = "hog"
    elif change == "upsample 1":
        config["upsample"] = 1
    elif change == "align_size 112":
        config["align_size"] = 112
    elif change == "no digest":
        del meta["features_sha256"]
    else:
        names = FeatureConfig.from_dict(config).columns()[0]
        meta["features_sha256"] = artifact.features_digest(FeatureConfig.from_dict(config), names[::-1])
    path = model_file(tmp_path / "moved.skops", meta, blob)
    assert_refused(path, "not the one the model was trained on", IncompatibleModelError)


@pytest.mark.parametrize("name, value", [("coef", "nan"), ("intercept", "inf"), ("scale", "inf"), ("mean", "-inf")])
def test_non_finite_parameters_of_the_numeric_form_are_refused(tmp_path, shipped, name, value):
    def spoil(arrays):
        arrays[name].flat[len(arrays[name].flat) // 2] = float(value)

    meta, blob, _ = shipped
    path = model_file(tmp_path / "spoilt.skops", meta, blob, linear=with_linear_arrays(spoil))
    message = assert_refused(path, "NaN or infinity")
    assert name in message


@pytest.mark.integration  # reads a JAFFE face
def test_non_finite_parameters_of_the_pipeline_are_refused(tmp_path, shipped):
    """An infinite scale in the shipped pipeline, its numeric form intact: with the numeric form the file
    predicts (the pipeline is not loaded) and is refused, one line, when the pipeline is needed (--explain);
    without it the pipeline is loaded, and refused, by load_model."""
    meta, blob, _ = shipped
    spoilt = with_arrays(blob, lambda key, array: (array.__setitem__(0, float("inf")) or array)
                         if key == "scale_" else None)
    path = model_file(tmp_path / "spoilt_pipeline.skops", meta, spoilt)
    model = artifact.load_model(path)
    with pytest.raises(ModelFileError, match="NaN or infinity") as info:
        model.pipeline
    assert str(info.value).startswith(f"{path}: ") and "scale_" in str(info.value)
    line = one_line_cli_error(predict_cli.main, [FACE, "--model", path, "--explain"], f"error: {path}: ")
    assert "NaN or infinity" in line

    alone = model_file(tmp_path / "spoilt_alone.skops", {k: v for k, v in meta.items() if k != "linear_sha256"},
                       spoilt)
    assert_refused(alone, "NaN or infinity")


def _spoil_a_threshold(name, pipe):
    """One split threshold of the first tree of a fitted rf or xgboost pipeline -> NaN."""
    model = pipe.named_steps["model"]
    if name == "rf":
        model.estimators_[0].tree_.threshold[0] = float("nan")
        return
    import xgboost as xgb

    trees = json.loads(bytes(model.booster_.save_raw("json")))
    trees["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"][0] = float("nan")
    model.booster_ = xgb.Booster()
    model.booster_.load_model(bytearray(json.dumps(trees).encode()))


@pytest.mark.parametrize("name", ["rf", "xgboost"])
def test_tree_thresholds_that_are_not_finite_are_refused(tmp_path, tables, monkeypatch, name):
    """A tree model (no numeric form: load_model rebuilds it) with a NaN split threshold: save_model
    refuses it, and a file written without that check (as by an earlier version) is refused on load."""
    from classifiers.data import load_training_data
    from classifiers.models import make_pipeline

    data = load_training_data(tables["jaffe"])
    pipe = make_pipeline(name, data.groups, seed=0).set_params(model__n_estimators=3).fit(data.X, data.y)
    _spoil_a_threshold(name, pipe)
    with pytest.raises(ModelFileError, match="NaN or infinity"):
        artifact.save_model(tmp_path / "never.skops", pipe, data.config)
    assert not (tmp_path / "never.skops").exists()
    monkeypatch.setattr(artifact, "non_finite_parameters", lambda estimator: [])
    artifact.save_model(tmp_path / "unchecked.skops", pipe, data.config)
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "unchecked.skops") as zf:
        assert sorted(zf.namelist()) == ["meta.json", "pipeline.skops"]
    assert_refused(tmp_path / "unchecked.skops", "NaN or infinity")


def test_a_numeric_form_that_disagrees_with_the_pipeline_is_refused_when_the_pipeline_is_used(tmp_path, shipped):
    def nudge(arrays):
        arrays["coef"][0, 0] += 0.5

    meta, blob, _ = shipped
    path = model_file(tmp_path / "nudged.skops", meta, blob, linear=with_linear_arrays(nudge))
    model = artifact.load_model(path)
    with pytest.raises(ModelFileError, match="does not match the pipeline"):
        model.pipeline


def test_a_format_1_file_is_refused_and_upgraded(tmp_path, shipped):
    """Files of the format before the numeric form and the feature digest: refused with a hint; upgrade_model
    re-saves one from its own pipeline, to the same probabilities."""
    import numpy as np

    meta, blob, _ = shipped
    old = {k: v for k, v in meta.items() if k not in ("features_sha256", "linear_sha256")}
    old["format_version"] = 1
    path = model_file(tmp_path / "old.skops", old, blob)
    assert_refused(path, "format 1, this code reads 2 .*upgrade_model", IncompatibleModelError)
    artifact.upgrade_model(path, tmp_path / "new.skops")
    new, shipped_model = artifact.load_model(tmp_path / "new.skops"), artifact.load_model()
    assert new.linear is not None and new.meta["model"] == shipped_model.meta["model"]
    X = np.random.default_rng(0).normal(size=(5, len(new.config.columns()[0]))).astype(np.float32)
    assert np.array_equal(new.predict_proba(X), shipped_model.predict_proba(X))
