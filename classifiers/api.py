"""The public centre of the library: an image in, one typed result per face out.

    >>> from classifiers import recognise
    >>> faces = recognise("../shared/datasets/jaffe/happy/KA.HA1.29.tiff")
    >>> faces[0].label, round(faces[0].probabilities["happy"], 2)
    ('happy', 1.0)

Everything else (the command line, extraction, evaluation, the video and web apps) goes
through :func:`recognise`, :func:`recognise_many` and :func:`load_model`; the image ->
features step itself is :func:`features.describe.describe_image`.
"""

import dataclasses
import functools
import os
from dataclasses import dataclass, field

import numpy as np

from common.errors import AffectError, FacialExpressionError, ModelFileError
from common.limits import check_whole_number
from features.describe import GROUPS, describe_face, describe_image, mirror_averaged
from landmarks.io import as_image

from .affect import valence_arousal
from .artifact import AGE_MODEL, DEFAULT_MODEL, GENDER_MODEL, Model
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

    kind: str                       # "logit", "margin", "probability" or "years" (age): what contributions add up to
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

    With ``recognise(..., age_gender=True)`` (else None): ``age``, the apparent age in years as
    UTKFace labels it; ``age_range``, (low, high) years holding the labelled age of about 80% of
    such faces (:mod:`classifiers.age`); ``gender``, the apparent binary gender ("female" or
    "male") and ``p_female``, its probability of "female"; with ``explain`` too,
    ``age_explanation`` (what pushed the estimate up, kind "years") and ``gender_explanation``.
    These are estimates from a face's appearance, not a person's identity or self-description.
    """

    box: tuple
    label: str
    probabilities: dict
    landmarks: tuple
    explanation: Explanation | None = None
    valence: float | None = None
    arousal: float | None = None
    age: float | None = None
    age_range: tuple | None = None
    gender: str | None = None
    p_female: float | None = None
    age_explanation: Explanation | None = None
    gender_explanation: Explanation | None = None

    @property
    def confidence(self):
        """Probability of the predicted label."""
        return self.probabilities[self.label]

    def to_dict(self):
        """JSON-ready dict: box, label, probabilities (4 decimals), landmarks (1 decimal), valence and
        arousal (when known) and, when explained, ``explanation`` (reasons toward, then against)
        and ``explanation_kind``; when asked for, ``age`` and ``age_range`` (1 decimal), ``gender``
        and ``p_female`` (4 decimals), explained as ``age_explanation`` (up, then down) and
        ``gender_explanation`` with their kinds."""
        out = {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }
        if self.valence is not None:
            out["valence"], out["arousal"] = round(self.valence, 4), round(self.arousal, 4)
        if self.age is not None:
            out["age"], out["age_range"] = round(self.age, 1), [round(float(v), 1) for v in self.age_range]
        if self.gender is not None:
            out["gender"], out["p_female"] = self.gender, round(self.p_female, 4)
        for key, explanation in (("explanation", self.explanation), ("age_explanation", self.age_explanation),
                                 ("gender_explanation", self.gender_explanation)):
            if explanation is not None:
                out[key] = [r.to_dict() for r in explanation.toward + explanation.against]
                out[f"{key}_kind"] = explanation.kind
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


def _explanations(model, X, top):
    """One :class:`Explanation` per row of ``X`` with the ``top`` reasons each way, or Nones when ``top`` is 0."""
    if not top:
        return [None] * len(X)
    from .explain import explain as explain_rows

    return [_explanation(e, int(top)) for e in explain_rows(model, X)]


def _shipped(path, target):
    """The shipped model at ``path``, which must have learned ``target`` (age or gender)."""
    model = load_model(path)
    if model.target != target:
        raise ModelFileError(f"{model.path}: not an {target} model (it learned {model.target})")
    return model


def _rows_for(model, faces, X, config):
    """The feature rows of ``faces`` under ``model``'s feature configuration: ``X`` (made under
    ``config``) when the two describe faces alike; the columns of ``X`` plus the groups it lacks
    when they differ in their groups only (the age and gender models add face_lbp to the
    expression model's groups); else the faces described again."""
    wanted = dataclasses.replace(model.config, detector=config.detector, upsample=config.upsample)
    if wanted == config:
        return X
    if dataclasses.replace(wanted, groups=config.groups) != config:
        return np.vstack([describe_face(face, model.config) for face in faces])
    _, slices = config.columns()
    return np.hstack([X[:, slices[g]] if g in slices else
                      np.vstack([GROUPS[g].describe(face) for face in faces]).astype(np.float32)
                      for g in model.config.groups])


def age_gender_models():
    """(age model, gender model): the shipped apparent-age and apparent-gender models, loaded once
    per process. Raises ModelFileError when one is missing, damaged or not what it should be."""
    return _shipped(AGE_MODEL, "age"), _shipped(GENDER_MODEL, "gender")


def _age_gender_fields(faces, X, config, explain=0):
    """Per face, the :class:`FacePrediction` fields of the shipped age and gender models (loaded
    once per process, on first use): age, age_range, gender, p_female and, with ``explain``, their
    explanations. ``X`` holds the faces' rows under ``config``."""
    from .age import age_ranges

    age_model, gender_model = age_gender_models()
    X_age = _rows_for(age_model, faces, X, config)
    X_gender = X_age if gender_model.config == age_model.config else _rows_for(gender_model, faces, X, config)
    ages = age_model.predict(X_age)
    ranges = age_ranges(ages, age_model.meta["age_range"])
    p_female = gender_model.predict_proba(X_gender)[:, gender_model.labels.index("female")]
    return [{"age": float(a), "age_range": (float(r[0]), float(r[1])), "p_female": float(p),
             "gender": "female" if p >= 0.5 else "male", "age_explanation": ea, "gender_explanation": eg}
            for a, r, p, ea, eg in zip(ages, ranges, p_female, _explanations(age_model, X_age, explain),
                                       _explanations(gender_model, X_gender, explain))]


def recognise(image, *, model=None, explain=0, detector=None, upsample=None, max_faces=None, boxes=None,
              age_gender=False, explain_age_gender=None, adjust=None, mirror=True):
    """The expression of every face in ``image``, largest face first.

    ``image``: a path, a PIL image, or a numpy uint8 array ((h, w) gray or (h, w, 3) RGB).
    ``model``: a :class:`classifiers.artifact.Model`, a model file path, or None for the
    shipped model. ``explain=N`` adds the N features that pushed most toward each face's
    label and the N that pushed most against it. ``detector`` (auto, hog, cnn, whole) and
    ``upsample`` override the model's; ``boxes`` ((x, y, w, h) each, e.g. faces tracked in a
    video) skips detection and keeps their order. ``adjust`` (a function: float32 feature rows, one
    per face, in ``model.config.columns()`` order -> rows of the same shape) changes the features
    before the classifier sees them, e.g. a tracked person's calibration against their own
    baseline (:mod:`facial_expressions.video`). ``age_gender=True`` adds each face's apparent
    age (with a plausible range) and apparent gender (with its probability) from the shipped
    age and gender models, from the same landmarks and features; they are explained with
    ``explain`` too unless ``explain_age_gender`` says otherwise (0: not explained; an age
    explanation takes seconds to tens of seconds, the expression's milliseconds). ``mirror``
    (default): each face is read with its mirror image: its landmarks are the mean of dlib's on the
    image and on its mirror image (:func:`landmarks.shape.predict_landmarks`), and the expression is
    read from the mean of the face's features and its mirror image's
    (:func:`features.describe.mirror_averaged`), so a face and its mirrored photo get (nearly) the
    same label, and explanations give both sides' mean; ``mirror=False``: the face as it is (as the
    benchmarks' per-image figures were measured). Returns a list of
    :class:`FacePrediction` (empty when no face is found). Raises
    :class:`common.errors.ImageError` for an unreadable image.

    >>> import numpy as np
    >>> recognise(np.full((480, 640), 128, dtype=np.uint8))  # a blank photo has no face
    []
    """
    check_whole_number("explain", explain, 0)
    if max_faces is not None:
        check_whole_number("max_faces", max_faces, 1)
    model = _resolve(model)
    if model.regression:
        raise ModelFileError(f"{model.path}: an age model estimates a number, not an expression; "
                             f"use recognise(..., age_gender=True)")
    pixels = as_image(image, "gray")
    faces, X, _ = describe_image(pixels, model.config, detector, upsample, max_faces, boxes, symmetric=mirror)
    if not faces:
        return []
    # age and gender read the faces as described: a per-person calibration is for the expression only
    explain_ag = explain if explain_age_gender is None else explain_age_gender
    extras = _age_gender_fields(faces, X, model.config, explain_ag) if age_gender else [{}] * len(faces)
    if mirror:
        X = mirror_averaged(faces, X, model.config)
    if adjust is not None:
        X = adjust(X)
    proba = model.predict_proba(X)
    explanations = _explanations(model, X, explain)
    out = []
    for face, p, e, extra in zip(faces, proba, explanations, extras):
        probabilities = {c: float(v) for c, v in zip(model.labels, p)}
        try:
            valence, arousal = valence_arousal(probabilities)
        except AffectError:  # a model whose classes have no place on the circumplex
            valence = arousal = None
        out.append(FacePrediction(box=tuple(int(v) for v in face.box), label=model.labels[int(np.argmax(p))],
                                  probabilities=probabilities, explanation=e, valence=valence, arousal=arousal,
                                  landmarks=tuple((float(x), float(y)) for x, y in face.points), **extra))
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


def _warm_up(model_path, detector, age_gender=False):
    """Load everything a worker needs before the pool forks, so forked workers share it."""
    from landmarks import models

    model = load_model(model_path)
    if age_gender:
        age_gender_models()
    models.load_for(detector or model.config.detector)


def _recognise_chunk_one_thread(paths, model_path, options):
    """_recognise_chunk in a pool process of its own: one OpenCV thread, as the forked workers."""
    import cv2

    cv2.setNumThreads(1)
    return _recognise_chunk(paths, model_path, options)


def recognise_many(paths, *, model=None, jobs=-1, chunk_size=8, **options):
    """Stream ``(path, list[FacePrediction] | FacialExpressionError)`` for every path, in input order.

    Runs on ``jobs`` processes (-1: every core). The model and dlib's detector and
    predictor are loaded once, before the worker processes are forked, so no worker loads
    them again; in a process with other threads running (a notebook, a Dask client), where a
    fork is unsafe, the workers are fresh processes that load them once each. ``options`` are :func:`recognise`'s (explain, detector, upsample, max_faces,
    age_gender).
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
    import threading

    task = functools.partial(_recognise_chunk, model_path=model_path, options=options)
    if threading.active_count() > 1:
        # other threads (a notebook kernel's, a Dask client's, a web server's) may hold locks at
        # the moment of a fork, and a forked worker then waits on them for ever: fresh processes
        # instead (joblib's loky), which load the model and dlib's models themselves, once each
        from joblib import Parallel, delayed

        task = functools.partial(_recognise_chunk_one_thread, model_path=model_path, options=options)
        runner = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")  # local, whatever the context
        for result in runner(delayed(task)(c) for c in chunks):
            yield from result
        return
    from common.parallel import fork_pool

    _warm_up(model_path, options.get("detector"), options.get("age_gender", False))
    # fork: the workers start with the parent's loaded model and dlib objects (copy-on-write)
    with fork_pool(n_jobs) as pool:
        for result in pool.imap(task, chunks):
            yield from result
