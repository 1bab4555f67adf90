"""The optional parts of the install (setup.cfg extras: explain, cluster, parquet): without them
the core install works and the commands that need them end in one line naming the extra."""

import configparser
import sys
from pathlib import Path

import pytest
from sklearn.ensemble import RandomForestClassifier

from classifiers.explain import ExplanationError, _shap
from common.parallel import compute_backend
from facial_expressions.video_outputs import VideoError, parquet_module

SETUP = Path(__file__).resolve().parents[1] / "setup.cfg"


def _requirements(text):
    return {line.split(">")[0].split("[")[0].strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")}


def test_heavy_parts_are_extras_and_make_install_installs_them():
    cfg = configparser.ConfigParser()
    cfg.read(SETUP)
    core = _requirements(cfg["options"]["install_requires"])
    extras = {name: _requirements(value) for name, value in cfg["options.extras_require"].items()}
    assert {"shap", "distributed", "dask", "pyarrow"}.isdisjoint(core)
    assert extras["explain"] == {"shap"} and extras["parquet"] == {"pyarrow"}
    assert extras["cluster"] == {"distributed", "dask"}
    assert extras["all"] == extras["explain"] | extras["parquet"] | extras["cluster"]
    makefile = (SETUP.parent / "Makefile").read_text()
    assert '-e ".[all,test]"' in makefile


@pytest.mark.parametrize("module, call, extra", [
    ("shap", lambda: _shap(RandomForestClassifier()), "explain"),
    ("pyarrow", parquet_module, "parquet"),
    ("distributed", lambda: compute_backend("dask", "tcp://127.0.0.1:1").__enter__(), "cluster"),
])
def test_a_missing_optional_part_is_one_line_naming_its_extra(monkeypatch, module, call, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` meets when it is not installed
    with pytest.raises((ExplanationError, VideoError, ValueError)) as caught:
        call()
    message = str(caught.value)
    assert f"facial-expressions[{extra}]" in message and "\n" not in message
