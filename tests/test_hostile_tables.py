"""Hostile feature tables (issue 24, item 10): a table file given to `train` or `benchmark` whose
arrays do not fit together, whose description is deeply nested, or whose arrays are declared or
compressed far beyond what the file holds, is refused in one line (DatasetError; `error: PATH: ...`
and exit code 1 from the commands) without allocating what it declares.

Every table is crafted here, in tmp_path, from a small valid one (no dataset).
"""

import io
import json
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from classifiers import benchmark as benchmark_cli
from classifiers import train as train_cli
from common.errors import DatasetError
from features import table as table_module
from features.describe import FeatureConfig
from features.table import FeatureTable, load_table

CONFIG = FeatureConfig(groups=("geometry",))
N, D = 24, len(CONFIG.columns()[0])


def arrays():
    """The arrays and description of a valid table of N rows (3 classes, 6 subjects) of D columns."""
    rng = np.random.default_rng(0)
    names, slices = CONFIG.columns()
    out = {"X": rng.normal(size=(N, D)).astype(np.float32), "columns": np.array(names),
           "labels": np.array(["angry", "happy", "sad"] * (N // 3)),
           "subjects": np.array([f"s{i % 6}" for i in range(N)]),
           "sources": np.array([f"img{i}.png" for i in range(N)]), "splits": np.array([""] * N),
           "status": np.array(["ok"] * N), "n_faces": np.ones(N, np.int32), "augmented": np.zeros(N, bool)}
    meta = {"format": 1, "config": CONFIG.to_dict(), "dataset": "synthetic", "preset": "",
            "groups": {g: [s.start, s.stop] for g, s in slices.items()}}
    return out, meta


def write(path, data, meta, members=None):
    with open(path, "wb") as fh:
        np.savez(fh, **data, meta=np.array(meta if isinstance(meta, str) else json.dumps(meta)))
    if members:
        with zipfile.ZipFile(path) as zf:
            kept = {n: zf.read(n) for n in zf.namelist() if n not in members}
        with zipfile.ZipFile(path, "w") as zf:
            for name, content in kept.items():
                zf.writestr(name, content)
            for name, content in members.items():
                zf.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
    return path


def refused(path, tmp_path, match):
    with pytest.raises(DatasetError, match=match) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for command, args in ((train_cli.main, [path, "-o", tmp_path / "model.skops", "--quick", "-q"]),
                          (benchmark_cli.main, [path, "-o", tmp_path / "report", "--quick", "-q",
                                                "--models", "logreg"])):
        result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "model.skops").exists()
    return message


def test_a_valid_table_still_loads(tmp_path):
    data, meta = arrays()
    table = load_table(write(tmp_path / "ok.npz", data, meta))
    assert isinstance(table, FeatureTable) and table.X.shape == (N, D) and table.groups == {"geometry": slice(0, D)}
    assert np.array_equal(table.X, data["X"]) and table.augmented.dtype == bool
    del data["augmented"]  # tables written before --flip have no augmented array
    assert not load_table(write(tmp_path / "old.npz", data, meta)).augmented.any()


@pytest.mark.parametrize("change", ["labels one short", "subjects one long", "columns one short", "one-dimensional X",
                                    "three-dimensional X", "X of strings", "n_faces of floats", "no status"])
def test_arrays_that_do_not_fit_together_are_refused(tmp_path, change):
    data, meta = arrays()
    if change == "labels one short":
        data["labels"] = data["labels"][:-1]
    elif change == "subjects one long":
        data["subjects"] = np.append(data["subjects"], "s0")
    elif change == "columns one short":
        data["columns"] = data["columns"][:-1]
    elif change == "one-dimensional X":
        data["X"] = data["X"].ravel()
    elif change == "three-dimensional X":
        data["X"] = data["X"][:, :, None]
    elif change == "X of strings":
        data["X"] = data["X"].astype(str)
    elif change == "n_faces of floats":
        data["n_faces"] = data["n_faces"].astype(np.float64)
    else:
        del data["status"]
    refused(write(tmp_path / "bad.npz", data, meta), tmp_path, "shape|not a feature table|not \\(rows")


@pytest.mark.parametrize("groups", [{"geometry": [0, D + 10]}, {"geometry": [5, 5]}, {"geometry": [-3, 4]},
                                    {"geometry": [0, "30"]}, {"geometry": 7}, {"geometry": [0, 1.5]}, [0, 30]])
def test_a_group_beyond_the_columns_is_refused(tmp_path, groups):
    data, meta = arrays()
    meta["groups"] = groups
    refused(write(tmp_path / "groups.npz", data, meta), tmp_path, "group|no feature groups")


def test_deeply_nested_or_huge_descriptions_are_refused(tmp_path):
    data, meta = arrays()
    text = json.dumps(meta)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    refused(write(tmp_path / "deep.npz", data, text), tmp_path, "nests 100001 levels")
    refused(write(tmp_path / "long.npz", data, json.dumps(dict(meta, padding="x" * 2_000_000))), tmp_path,
            "description is larger")
    refused(write(tmp_path / "list.npz", data, "[1, 2]"), tmp_path, "format")


def _npy_header(shape, descr="<f4"):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def test_a_huge_declared_array_is_refused_before_it_is_allocated(tmp_path):
    """X.npy declares 10**6 x 10**6 float32 (4 TB) and holds 1 kB: refused from its header."""
    import tracemalloc

    data, meta = arrays()
    path = write(tmp_path / "huge.npz", data, meta, members={"X.npy": _npy_header((10**6, 10**6)) + bytes(1000)})
    tracemalloc.start()
    try:
        refused(path, tmp_path, "declares 4,000,000,000,000 bytes")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak


def test_a_zip_bombed_array_is_refused_before_it_is_unpacked(tmp_path):
    """X.npy holds 100 MB of zeros deflated to about 100 kB: refused from the sizes the zip declares."""
    import tracemalloc

    data, meta = arrays()
    path = write(tmp_path / "bomb.npz", data, meta)
    rows = 100_000_000 // (4 * D)
    with zipfile.ZipFile(path) as zf:
        kept = {n: zf.read(n) for n in zf.namelist() if n != "X.npy"}
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in kept.items():
            zf.writestr(name, content)
        info = zipfile.ZipInfo("X.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as fh:
            fh.write(_npy_header((rows, D)))
            zeros = bytes(1 << 22)
            for _ in range(rows * D * 4 // len(zeros)):
                fh.write(zeros)
            fh.write(bytes(rows * D * 4 % len(zeros)))
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="unpacks to"):
            load_table(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, peak
    refused(path, tmp_path, "unpacks to")


def test_a_table_larger_than_the_memory_available_is_refused(tmp_path, monkeypatch):
    data, meta = arrays()
    path = write(tmp_path / "ok.npz", data, meta)
    monkeypatch.setattr(table_module, "_available_memory", lambda: 1000)
    refused(path, tmp_path, "more than the 0.0 GB of memory available")


def test_columns_that_are_not_the_configurations_are_refused_before_training(tmp_path):
    """A table whose column names are not the ones its feature configuration gives was trained on for the
    whole grid search, then refused when the model was saved."""
    data, meta = arrays()
    data["columns"] = data["columns"][::-1]
    path = write(tmp_path / "reversed.npz", data, meta)
    result = CliRunner().invoke(train_cli.main, [str(path), "-o", str(tmp_path / "m.skops"), "-q"],
                                catch_exceptions=False)
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {path}: ") and "columns" in result.stderr
    assert "Fitting" not in result.output and not (tmp_path / "m.skops").exists()


def test_usable_rows_holding_nan_or_infinity_are_refused(tmp_path):
    """Extraction never writes them (a face whose features are not finite is left out); scikit-learn's
    refusal was a ValueError of several lines. A failed row's values are never read."""
    data, meta = arrays()
    data["status"][0] = "no_face"
    data["X"][0, :] = np.nan  # a failed row: ignored
    load_table(write(tmp_path / "failed.npz", data, meta))
    data["X"][3, 5], data["X"][7, 0] = np.nan, -np.inf
    path = write(tmp_path / "nan.npz", data, meta)
    for command, args in ((train_cli.main, [path, "-o", tmp_path / "model.skops", "--quick", "-q"]),
                          (benchmark_cli.main, [path, "-o", tmp_path / "report", "--quick", "-q",
                                                "--models", "logreg"])):
        result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 1 and result.stderr == f"error: {path}: 2 usable rows hold NaN or infinity " \
            "(extraction never writes them: a damaged or foreign table)\n", result.output
