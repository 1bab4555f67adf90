"""Imported once by the server's fork server (:mod:`.processes`): what every analysis worker and
video job needs, so that each of them, forked from it, starts with it in memory.

BLAS and OpenMP get one thread before NumPy loads (a child has one core's work, and no thread
pool is forked half-made). A dlib model that does not load is left for the child to report:
it loads the models itself, and fails in its one line as before.
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import cv2  # noqa: E402
import sklearn.pipeline  # noqa: E402,F401
import skops.io  # noqa: E402,F401

import classifiers.api  # noqa: E402,F401
import facial_expressions.video  # noqa: E402,F401
from common.errors import FacialExpressionError  # noqa: E402
from landmarks import models  # noqa: E402

cv2.setNumThreads(1)
try:
    models.shape_predictor()
    models.hog_detector()
except FacialExpressionError:
    pass
