"""The process the fuzz tests (tests/test_fuzz.py) feed mutated files to, one request per line.

    python tests/fuzz_worker.py MEMORY_BYTES
    stdin:  {"kind": "model" | "image", "path": "..."}      one JSON object per line
    stdout: {"outcome": "ok" | "refused" | "unexpected", "message": "..."}

A model file is loaded (``classifiers.artifact.load_model``, its pipeline too) and predicts two
rows; an image goes through ``classifiers.recognise`` with the shipped model. "refused" is a
:class:`common.errors.FacialExpressionError` (what the commands print as one ``error:`` line);
any other exception is "unexpected" with its traceback. The address space is limited to
MEMORY_BYTES, so an unbounded allocation ends in a MemoryError ("unexpected") instead of
exhausting the machine; a crash or a hang ends the process, which the test sees.
"""

import json
import os
import resource
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_model(path):
    import numpy as np

    from classifiers.artifact import load_model

    model = load_model(path)
    model.pipeline  # noqa: B018 -- loaded and checked, as --explain would
    X = np.zeros((2, len(model.config.columns()[0])), dtype=np.float32)
    X[1] = np.random.default_rng(0).normal(size=X.shape[1])
    proba = model.predict_proba(X)
    if proba.shape != (2, len(model.labels)) or not np.all(np.isfinite(proba)):
        raise AssertionError(f"a loaded model predicts {proba!r}")
    return f"{len(model.labels)} classes"


def check_image(path):
    from classifiers.api import recognise

    return f"{len(recognise(path))} faces"


def main():
    limit = int(sys.argv[1])
    # everything the checks import, before the limit (shared libraries map large address ranges)
    import classifiers.api  # noqa: F401
    import classifiers.artifact  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import xgboost  # noqa: F401
    from common.errors import FacialExpressionError
    from landmarks import models

    models.shape_predictor(), models.hog_detector()
    classifiers.api.load_model()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps({"outcome": "ready"}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            check = check_model if request["kind"] == "model" else check_image
            reply = {"outcome": "ok", "message": check(request["path"])}
        except FacialExpressionError as exc:
            reply = {"outcome": "refused", "message": str(exc)}
        except BaseException:  # noqa: BLE001 -- whatever it is, the test reports it
            reply = {"outcome": "unexpected", "message": traceback.format_exc()}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
