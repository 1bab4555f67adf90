"""dlib model files from the ``face_recognition_models`` package, loaded lazily, once per process."""

import functools
import importlib.util
import os

from common.errors import ModelFileError

SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"


def model_dir():
    """Folder of the ``face_recognition_models`` package's model files.

    Found without importing the package (its ``__init__`` needs ``pkg_resources``, which
    recent setuptools no longer ships).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("the face_recognition_models package is not installed (run `make install`)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def model_path(name):
    override = os.environ.get("FER_SHAPE_PREDICTOR") if name == SHAPE_PREDICTOR_68 else None
    path = override or os.path.join(model_dir(), name)
    if not os.path.isfile(path):
        raise ModelFileError(f"dlib model file not found: {path}")
    return path


@functools.lru_cache(maxsize=None)
def shape_predictor(path=None):
    import dlib

    path = path or model_path(SHAPE_PREDICTOR_68)
    try:
        predictor = dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: not a dlib shape predictor ({str(exc).strip().splitlines()[0][:100]})") from None
    return predictor


@functools.lru_cache(maxsize=None)
def hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def cnn_detector(path=None):
    import dlib

    path = path or model_path(MMOD_DETECTOR)
    try:
        return dlib.cnn_face_detection_model_v1(path)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: not a dlib MMOD detector ({str(exc).strip().splitlines()[0][:100]})") from None


def load_for(detector):
    """Load the shape predictor and the face detector that ``detector`` ("auto", "hog", "cnn",
    "whole") uses, so processes forked afterwards share them."""
    shape_predictor()
    if detector in ("auto", "hog"):
        hog_detector()
    elif detector == "cnn":
        cnn_detector()
