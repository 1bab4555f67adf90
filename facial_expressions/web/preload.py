"""Imported once by the server's fork server (:mod:`.processes`): what every analysis worker and
video job needs, so that each of them, forked from it, starts with it in memory.

Ctrl-C belongs to the server (the fork server ignores it once this module is loaded; now it
does from the start). BLAS and OpenMP get one thread, and pyarrow's allocator (imported by
scikit-learn through pandas) no background thread, before they load: the fork server stays a
single thread, so no child is forked with another thread's lock held. Anything that fails here
is left for the child to report: it imports and loads what it needs itself, and a model that
does not load fails in its one line as before.
"""

import os
import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")


def _load():
    import cv2
    import sklearn.pipeline  # noqa: F401
    import skops.io  # noqa: F401

    import classifiers.api  # noqa: F401
    import facial_expressions.video  # noqa: F401
    from landmarks import models

    cv2.setNumThreads(1)
    models.shape_predictor()
    models.hog_detector()


try:
    _load()
except Exception:  # noqa: BLE001,S110 - see the docstring: the child reports it
    pass
