"""The public centre of the library: an image in, one typed result per face out.

    >>> from classifiers import recognise
    >>> faces = recognise("../shared/datasets/jaffe/happy/KA.HA1.29.tiff")
    >>> faces[0].label, round(faces[0].probabilities["happy"], 2)
    ('happy', 0.96)

Everything else (the command line, extraction, evaluation, the video and web apps) goes
through :func:`recognise`, :func:`recognise_many` and :func:`load_model`; the image ->
features step itself is :func:`features.describe.describe_image`.
"""

import functools
import os
from dataclasses import dataclass, field

import numpy as np

from common.errors import AffectError, FacialExpressionError
from features.describe import describe_image
from landmarks.io import as_image

from .affect import valence_arousal
from .artifact import DEFAULT_MODEL, Model
from .artifact import load_model as _load_model_file


@dataclass(frozen=True)
class Reason:
    """One readable feature and how much it pushed toward the face's label (> 0) or against it."""

    feature: str            # e.g. "lip corners pulled up" or "mouth shape (landmark positions)"
    value: float | None     # the feature's value when it is a single named measure, else None
    contribution: float     # in the explanation's ``kind`` units

    def to_dict(self):
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution}


@dataclass(frozen=True)
class Explanation:
    """Why a face got its label (see :mod:`classifiers.explain` for how contributions are made)."""

    kind: str                       # "logit", "margin" or "probability": what contributions add up to
    toward: tuple = ()              # Reasons that pushed most toward the label, largest first
    against: tuple = ()             # Reasons that pushed most against it, largest first
    parts: dict = field(default_factory=dict)  # face part (brows, eyes, nose, mouth, jaw) -> summed contribution


@dataclass(frozen=True)
class FacePrediction:
    """One face: where it is, what it shows, and optionally why.

    ``box`` is (x, y, w, h) in pixels of the input image; ``probabilities`` maps every
    class the model knows to its probability (they sum to 1); ``landmarks`` holds the 68
    (x, y) points of dlib's iBUG 300-W scheme in image pixels; ``valence`` and ``arousal``
    place the face on Russell's circumplex (-1..+1 each, :mod:`classifiers.affect`; None for a
    model whose classes have no place there).
    """

    box: tuple
    label: str
    probabilities: dict
    landmarks: tuple
    explanation: Explanation | None = None
    valence: float | None = None
    arousal: float | None = None

    @property
    def confidence(self):
        """Probability of the predicted label."""
        return self.probabilities[self.label]

    def to_dict(self):
        """JSON-ready dict: box, label, probabilities (4 decimals), landmarks (1 decimal), valence and
        arousal (when known) and, when explained, ``explanation`` (reasons toward, then against)
        and ``explanation_kind``."""
        out = {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }
        if self.valence is not None:
            out["valence"], out["arousal"] = round(self.valence, 4), round(self.arousal, 4)
        if self.explanation is not None:
            out["explanation"] = [r.to_dict() for r in self.explanation.toward + self.explanation.against]
            out["explanation_kind"] = self.explanation.kind
        return out


@functools.lru_cache(maxsize=8)
def _cached_model(path, identity):
    return _load_model_file(path)


def _identity(path):
    """What tells a changed file from the cached one (a file replaced in place is reloaded)."""
    try:
        st = os.stat(path)
    except OSError:
        return None  # loading it raises the clear error
    return st.st_ino, st.st_size, st.st_mtime_ns


def load_model(path=None):
    """The model at ``path`` (default: the shipped model), loaded once per process and cached.

    Raises :class:`common.errors.ModelFileError` for a missing, damaged, foreign or
    incompatible file. Nothing is loaded at import time.

    >>> load_model().labels
    ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']
    """
    path = os.path.abspath(os.fspath(path or DEFAULT_MODEL))
    return _cached_model(path, _identity(path))


def _resolve(model):
    return model if isinstance(model, Model) else load_model(model)


def _explanation(exp, top):
    toward, against = exp.top(top)
    return Explanation(kind=exp.output_kind, toward=tuple(Reason(**r) for r in toward),
                       against=tuple(Reason(**r) for r in against), parts=dict(exp.parts))


def recognise(image, *, model=None, explain=0, detector=None, upsample=None, max_faces=None, boxes=None,
              adjust=None):
    """The expression of every face in ``image``, largest face first.

    ``image``: a path, a PIL image, or a numpy uint8 array ((h, w) gray or (h, w, 3) RGB).
    ``model``: a :class:`classifiers.artifact.Model`, a model file path, or None for the
    shipped model. ``explain=N`` adds the N features that pushed most toward each face's
    label and the N that pushed most against it. ``detector`` (auto, hog, cnn, whole) and
    ``upsample`` override the model's; ``boxes`` ((x, y, w, h) each, e.g. faces tracked in a
    video) skips detection and keeps their order. ``adjust`` (a function: float32 feature rows, one
    per face, in ``model.config.columns()`` order -> rows of the same shape) changes the features
    before the classifier sees them, e.g. a tracked person's calibration against their own
    baseline (:mod:`facial_expressions.video`). Returns a list of :class:`FacePrediction`
    (empty when no face is found). Raises :class:`common.errors.ImageError` for an unreadable image.

    >>> import numpy as np
    >>> recognise(np.full((480, 640), 128, dtype=np.uint8))  # a blank photo has no face
    []
    """
    model = _resolve(model)
    pixels = as_image(image, "gray")
    faces, X, _ = describe_image(pixels, model.config, detector, upsample, max_faces, boxes)
    if not faces:
        return []
    if adjust is not None:
        X = adjust(X)
    proba = model.predict_proba(X)
    explanations = [None] * len(faces)
    if explain:
        from .explain import explain as explain_rows

        explanations = [_explanation(e, int(explain)) for e in explain_rows(model, X)]
    out = []
    for face, p, e in zip(faces, proba, explanations):
        probabilities = {c: float(v) for c, v in zip(model.labels, p)}
        try:
            valence, arousal = valence_arousal(probabilities)
        except AffectError:  # a model whose classes have no place on the circumplex
            valence = arousal = None
        out.append(FacePrediction(box=tuple(int(v) for v in face.box), label=model.labels[int(np.argmax(p))],
                                  probabilities=probabilities, explanation=e, valence=valence, arousal=arousal,
                                  landmarks=tuple((float(x), float(y)) for x, y in face.points)))
    return out


def _recognise_chunk(paths, model_path, options):
    """Worker side of recognise_many: the model comes from this process's cache."""
    model = load_model(model_path)
    out = []
    for path in paths:
        try:
            out.append((path, recognise(path, model=model, **options)))
        except FacialExpressionError as exc:
            out.append((path, exc))
    return out


def _warm_up(model_path, detector):
    """Load everything a worker needs before the pool forks, so forked workers share it."""
    from landmarks import models

    model = load_model(model_path)
    models.shape_predictor()
    if (detector or model.config.detector) in ("auto", "hog"):
        models.hog_detector()
    elif (detector or model.config.detector) == "cnn":
        models.cnn_detector()


def _worker_init():
    """One thread per worker (the pool has a process per core); Ctrl-C is the parent's to handle."""
    import signal

    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def recognise_many(paths, *, model=None, jobs=-1, chunk_size=8, **options):
    """Stream ``(path, list[FacePrediction] | FacialExpressionError)`` for every path, in input order.

    Runs on ``jobs`` processes (-1: every core). The model and dlib's detector and
    predictor are loaded once, before the worker processes are forked, so no worker loads
    them again. ``options`` are :func:`recognise`'s (explain, detector, upsample, max_faces).
    An image that cannot be read yields its error instead of stopping the stream.

    >>> for path, faces in recognise_many(["../shared/datasets/jaffe/happy/KA.HA1.29.tiff"], jobs=1):
    ...     print(os.path.basename(path), faces[0].label)
    KA.HA1.29.tiff happy
    """
    paths = [os.fspath(p) for p in paths]
    model_path = _resolve(model).path
    n_jobs = min(os.cpu_count() or 1, len(paths)) if jobs in (None, -1) else max(1, int(jobs))
    n_jobs = min(n_jobs, -(-len(paths) // chunk_size)) if paths else 1
    chunks = [paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size)]
    if n_jobs <= 1:
        for chunk in chunks:
            yield from _recognise_chunk(chunk, model_path, options)
        return
    import multiprocessing

    _warm_up(model_path, options.get("detector"))
    # fork: the workers start with the parent's loaded model and dlib objects (copy-on-write)
    with multiprocessing.get_context("fork").Pool(n_jobs, initializer=_worker_init) as pool:
        for result in pool.imap(functools.partial(_recognise_chunk, model_path=model_path, options=options),
                                chunks):
            yield from result
