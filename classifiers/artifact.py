"""One model file: a zip holding the pipeline in skops format and a JSON description.

    model.skops (zip)
      meta.json        format, label names, FeatureConfig, versions, training summary,
                       sha256 of pipeline.skops
      pipeline.skops   the fitted scikit-learn Pipeline (skops: data only, no pickle);
                       an XGBoost booster sits inside it in XGBoost's own UBJSON format

Loading executes no code from the file: skops rebuilds only the types in
:func:`trusted_types` (plus skops' own defaults: scikit-learn estimators, numpy arrays,
builtins) and refuses a file that names any other type.
"""

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from features.describe import FeatureConfig
from common.errors import IncompatibleModelError, ModelFileError
from common.files import atomic_path

FORMAT = "facial-expressions-model"
FORMAT_VERSION = 1
MEMBERS = ("meta.json", "pipeline.skops")
#: Refuse files bigger than this before reading them (a model is a few MB), and zips whose
#: members unpack to more than this in all (a small compressed file can hold gigabytes).
MAX_BYTES = 500_000_000
#: Read errors of a damaged or hostile zip (RuntimeError: an encrypted member; RecursionError,
#: a RuntimeError too: absurdly nested JSON; zlib.error: a damaged deflate stream).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError, ValueError,
                NotImplementedError, KeyError, RuntimeError, zlib.error)

#: Types beyond skops' defaults that a model file may contain. Nothing else is loaded.
TRUSTED_TYPES = (
    "classifiers.models.CappedPCA",
    "classifiers.models.GroupSelector",
    "classifiers.models.XGBoostModel",
    "classifiers.models.XGBoostRegressor",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.feature_selection._univariate_selection.f_classif",  # the score of logreg's ANOVA filter
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)
#: The same scikit-learn types by where they are importable from; :func:`trusted_types` adds
#: the module they live in under the installed release, so one that moves them keeps files loadable.
_TRUSTED_OBJECTS = (("sklearn.calibration", "_CalibratedClassifier"), ("sklearn.calibration", "_SigmoidCalibration"),
                    ("sklearn.feature_selection", "f_classif"), ("sklearn.model_selection", "StratifiedKFold"),
                    ("sklearn.tree._tree", "Tree"), ("sklearn.utils", "Bunch"))


def trusted_types():
    """:data:`TRUSTED_TYPES` plus the current dotted names of its scikit-learn types (imported
    only here, when a model file is saved or loaded, and skipped if a release dropped one)."""
    import importlib

    names = set(TRUSTED_TYPES)
    for module, name in _TRUSTED_OBJECTS:
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        names.add(f"{obj.__module__}.{obj.__qualname__}")
    return names


#: The shipped default model.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "default.skops")
#: The shipped apparent-age and apparent-gender models (UTKFace; ``recognise(..., age_gender=True)``).
AGE_MODEL = os.path.join(os.path.dirname(DEFAULT_MODEL), "age.skops")
GENDER_MODEL = os.path.join(os.path.dirname(DEFAULT_MODEL), "gender.skops")


@dataclass
class Model:
    """A loaded model: the pipeline and everything needed to use it on new images."""

    pipeline: object
    labels: list
    config: FeatureConfig
    meta: dict = field(default_factory=dict)
    path: str = ""

    def predict_proba(self, X):
        """(n, len(labels)) probabilities, columns in ``labels`` order."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        return self.pipeline.predict_proba(X)

    def predict(self, X):
        """The label of each row; for a regressor (:attr:`regression`) its estimate (float)."""
        if self.regression:
            return np.asarray(self.pipeline.predict(np.atleast_2d(np.asarray(X, dtype=np.float32))), dtype=np.float64)
        proba = self.predict_proba(X)
        return np.asarray(self.labels)[np.argmax(proba, axis=1)]

    @property
    def target(self):
        """What the model learned (common.labels.TARGETS): "label" (emotions), "gender" or "age"."""
        return self.meta.get("target", "label")

    @property
    def regression(self):
        """True for a model that estimates a number (age in years) instead of a class."""
        return self.target == "age"


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_model(path, pipeline, config, meta=None):
    """Write ``pipeline`` (fitted, with predict_proba; a regressor, with predict, when ``meta`` says
    target "age") and its description to ``path``, atomically."""
    import skops.io as sio

    if isinstance(config, dict):
        config = FeatureConfig.from_dict(config)
    labels = [str(c) for c in getattr(pipeline, "classes_", [])]  # a regressor (meta target "age") has none
    blob = sio.dumps(pipeline, compression=zipfile.ZIP_DEFLATED)
    untrusted = set(sio.get_untrusted_types(data=blob)) - trusted_types()
    if untrusted:
        raise ModelFileError(f"the pipeline holds types a model file may not contain: {sorted(untrusted)}")
    description = dict(meta or {})
    description.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "labels": labels,
        "feature_config": config.to_dict(), "n_features": len(config.columns()[0]),
        "pipeline_sha256": hashlib.sha256(blob).hexdigest(),
    })
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", json.dumps(description, indent=2, default=_json_default))
            zf.writestr("pipeline.skops", blob)
    return description


def read_meta(path):
    """The meta.json of a model file (no pipeline loaded). Raises ModelFileError."""
    return _open(path)[0]


def _read_members(zf, path, what):
    """{name: bytes} of every member of ``zf``, never unpacking more than MAX_BYTES in all
    (whatever sizes the zip declares) and never holding more than one chunk beyond that."""
    infos = zf.infolist()
    if sum(info.file_size for info in infos) > MAX_BYTES:
        raise ModelFileError(f"{path}: {what} unpacks to more than {MAX_BYTES // 10**6} MB (not a model file)")
    out, budget = {}, MAX_BYTES
    for info in infos:
        parts = []
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(min(1 << 20, budget + 1))
                if not chunk:
                    break
                parts.append(chunk)
                budget -= len(chunk)
                if budget < 0:
                    raise ModelFileError(f"{path}: {what} unpacks to more than {MAX_BYTES // 10**6} MB "
                                         f"(not a model file)")
        out[info.filename] = b"".join(parts)
    return out


def _open(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    if os.path.getsize(path) > MAX_BYTES:
        raise ModelFileError(f"{path}: too large to be a model file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if sorted(names) != sorted(MEMBERS):
                raise ModelFileError(f"{path}: not a model file of this project (members {names[:5]})")
            members = _read_members(zf, path, "the file")
        meta = json.loads(members["meta.json"].decode("utf-8"))
        blob = members["pipeline.skops"]
    except ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: not a readable model file ({str(exc)[:100] or type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a model file of this project")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IncompatibleModelError(f"{path}: model file format {meta.get('format_version')}, "
                                     f"this code reads {FORMAT_VERSION}")
    if not isinstance(meta.get("feature_config"), dict) or not isinstance(meta.get("labels"), list):
        raise ModelFileError(f"{path}: the model description is damaged (no feature configuration or labels)")
    return meta, blob


def _check_config(path, config):
    """The feature settings a model file may name: what find_faces and describe_face accept."""
    from landmarks.detect import DETECTORS

    def whole(value, low, high):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    if not (config.detector in DETECTORS and whole(config.upsample, 0, 3) and whole(config.upscale_to, 0, 4096)
            and whole(config.align_size, 16, 1024)):
        raise IncompatibleModelError(f"{path}: feature settings this code cannot use: detector "
                                     f"{config.detector!r}, upsample {config.upsample!r}, upscale_to "
                                     f"{config.upscale_to!r}, align_size {config.align_size!r}")


def load_model(path=None):
    """Load a model file (default: the shipped model) without executing code from it.

    Raises ModelFileError for a missing, truncated, foreign or tampered file and
    IncompatibleModelError for a model whose feature configuration this code cannot
    reproduce.
    """
    import skops.io as sio

    path = os.fspath(path or DEFAULT_MODEL)
    meta, blob = _open(path)
    try:
        config = FeatureConfig.from_dict(meta["feature_config"])
    except IncompatibleModelError as exc:
        raise IncompatibleModelError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise IncompatibleModelError(f"{path}: feature configuration not reproducible ({str(exc)[:100]})") from None
    _check_config(path, config)
    if hashlib.sha256(blob).hexdigest() != meta.get("pipeline_sha256"):
        raise ModelFileError(f"{path}: the pipeline does not match its checksum (modified or damaged file)")
    try:
        # the pipeline is a zip too: bound what it unpacks to before skops reads it
        with zipfile.ZipFile(io.BytesIO(blob)) as inner:
            _read_members(inner, path, "the pipeline")
        # skops reads the type names the file holds without importing or calling anything
        untrusted = sio.get_untrusted_types(data=blob)
    except ModelFileError:
        raise
    except Exception as exc:  # skops raises assorted errors on foreign data
        raise ModelFileError(f"{path}: the pipeline cannot be read ({str(exc)[:100] or type(exc).__name__})") from None
    refused = sorted(set(untrusted) - trusted_types())
    if refused:
        raise ModelFileError(f"{path}: the model names types that are not trusted: {refused[:5]}")
    try:
        pipeline = sio.loads(blob, trusted=list(untrusted))
        labels = [str(c) for c in getattr(pipeline, "classes_", [])]
        n_in = getattr(pipeline, "n_features_in_", None)
    except Exception as exc:
        raise ModelFileError(f"{path}: the pipeline cannot be loaded ({type(exc).__name__}: {str(exc)[:100]})") from None
    predicts = "predict" if meta.get("target") == "age" else "predict_proba"  # a regressor estimates a number
    if labels != [str(c) for c in meta["labels"]] or not hasattr(pipeline, predicts):
        raise ModelFileError(f"{path}: the pipeline does not match its description")
    n_features = len(config.columns()[0])
    if n_in is not None and n_in != n_features:
        raise IncompatibleModelError(f"{path}: the model expects {n_in} features, "
                                     f"its feature configuration gives {n_features}")
    return Model(pipeline=pipeline, labels=labels, config=config, meta=meta, path=path)
