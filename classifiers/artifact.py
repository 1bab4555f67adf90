"""One model file: a zip holding the pipeline in skops format, its numeric form if it is linear,
and a JSON description.

    model.skops (zip)
      meta.json        format, label names, FeatureConfig, versions, training summary, sha256 of
                       pipeline.skops and linear.npz, and features_sha256: a digest of the
                       FeatureConfig and of the column names the pipeline was trained on
      pipeline.skops   the fitted scikit-learn Pipeline (skops: data only, no pickle);
                       an XGBoost booster sits inside it in XGBoost's own UBJSON format
      linear.npz       only for an exactly linear pipeline (column selection, StandardScaler,
                       LogisticRegression): its arrays (:mod:`classifiers.linear`), no pickle

Loading executes no code from the file: skops rebuilds only the types in
:func:`trusted_types` (plus skops' own defaults: scikit-learn estimators, numpy arrays,
builtins) and refuses a file that names any other type. A file with ``linear.npz`` whose
pipeline names only the types of such a linear pipeline (:data:`LINEAR_NODES`, read from the
pipeline's schema without skops) predicts with numpy alone; its pipeline is loaded, with every
check, when first used (explanations). A feature configuration that does not give the
recorded columns, and parameters holding NaN or infinity, are refused.

What a file declares is bounded before it is parsed or allocated: each member's size
(:data:`MEMBER_BYTES`), the nesting of meta.json and the schema, every .npy header against its
bytes, the SHAP background (:data:`MAX_BACKGROUND_ROWS`). Every decision tree is checked before native code walks it
(:mod:`classifiers.trees`; an XGBoost booster before XGBoost reads it), and a rebuilt pipeline
must turn a row of zeros into one probability per class.
"""

import functools
import hashlib
import io
import json
import os
import threading
import zipfile
import zlib

import numpy as np

from features.describe import FeatureConfig
from common.errors import IncompatibleModelError, ModelFileError
from common.files import atomic_path
from common.limits import check_npy, loads_bounded

from .linear import LinearForm, NonFiniteError
from .trees import sklearn_tree_problems

FORMAT = "facial-expressions-model"
#: 2: linear.npz and features_sha256 (format 1 files: :func:`upgrade_model`).
FORMAT_VERSION = 2
META, PIPELINE, LINEAR = "meta.json", "pipeline.skops", "linear.npz"
MEMBERS = (META, PIPELINE)
#: Refuse files bigger than this before reading them (a model is a few MB), and zips whose
#: members unpack to more than this in all (a small compressed file can hold gigabytes).
MAX_BYTES = 500_000_000
#: Bounds of each member, checked on the sizes the zip declares and again while unpacking: a
#: meta.json is a few kB (about 1.4 MB with a background sample of 20 rows of every default
#: feature), a numeric form a few hundred kB, a skops schema up to about 10 MB (a 300-tree forest).
MEMBER_BYTES = {"meta.json": 4_000_000, "linear.npz": 50_000_000, "schema.json": 64_000_000}
#: How deeply meta.json and the skops schema may nest (measured: 3-5 and at most 34, an ensemble).
META_DEPTH, SCHEMA_DEPTH = 32, 100
#: Rows of the SHAP background sample a model file may hold (training keeps 20, or one per class):
#: every explained face mixes each of them into up to 2**10 faces.
MAX_BACKGROUND_ROWS = 64
#: Read errors of a damaged or hostile zip (RuntimeError: an encrypted member; RecursionError,
#: a RuntimeError too: absurdly nested JSON; zlib.error: a damaged deflate stream).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, UnicodeDecodeError, ValueError,
                NotImplementedError, KeyError, RuntimeError, zlib.error)

#: Types beyond skops' defaults that a model file may contain. Nothing else is loaded.
TRUSTED_TYPES = (
    "classifiers.models.AgeGroupSVR",
    "classifiers.models.CappedPCA",
    "classifiers.models.GroupSelector",
    "classifiers.models.KernelSVC",
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


#: What the skops schema of an exactly linear pipeline holds: node loader -> the types it may
#: name. A file whose pipeline names only these predicts through its numeric form and loads the
#: pipeline when first asked for it; any other pipeline is loaded (and checked by skops) at once.
_JSON_TYPES = frozenset({"builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType"})
LINEAR_NODES = {
    "DictNode": {"builtins.dict"}, "ListNode": {"builtins.list"}, "TupleNode": {"builtins.tuple"},
    "JsonNode": _JSON_TYPES, "TypeNode": _JSON_TYPES,
    "NdArrayNode": {"numpy.ndarray", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32"},
    "ObjectNode": {"sklearn.pipeline.Pipeline", "classifiers.models.GroupSelector",
                   "sklearn.preprocessing._data.StandardScaler",
                   "sklearn.feature_selection._univariate_selection.SelectPercentile",
                   "sklearn.linear_model._logistic.LogisticRegression"},
    "FunctionNode": {"sklearn.feature_selection._univariate_selection.f_classif"},
}
#: Fitted arrays that describe the training data, not the model: NaN in them is legitimate
#: (the ANOVA F of a constant column).
_DIAGNOSTICS = frozenset({"scores_", "pvalues_"})


class Model:
    """A loaded model: how a face becomes features (``config``), the class ``labels``, and the
    fitted scikit-learn ``pipeline``.

    A model file with a numeric form (``linear``: :mod:`classifiers.linear`) predicts with it,
    numpy alone; its ``pipeline`` is then loaded from the file, with every check of
    :func:`load_model`, the first time it is asked for (explanations), and may raise
    ModelFileError there.
    """

    def __init__(self, pipeline=None, labels=(), config=None, meta=None, path="", linear=None, load_pipeline=None):
        self._pipeline, self._load_pipeline, self._lock = pipeline, load_pipeline, threading.Lock()
        self.labels = list(labels)
        self.config = config
        self.meta = {} if meta is None else meta
        self.path = path
        self.linear = linear

    @property
    def pipeline(self):
        if self._pipeline is None and self._load_pipeline is not None:
            with self._lock:
                if self._pipeline is None:
                    self._pipeline = self._load_pipeline()
        return self._pipeline

    @pipeline.setter
    def pipeline(self, value):
        self._pipeline, self._load_pipeline = value, None

    def __getstate__(self):  # picklable (worker processes): the lock is not
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self):
        return f"Model(path={self.path!r}, labels={self.labels}, linear={self.linear is not None})"

    def predict_proba(self, X):
        """(n, len(labels)) probabilities, columns in ``labels`` order."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float32))
        if self.linear is not None:
            return self.linear.predict_proba(X)
        from .models import predict_proba

        return predict_proba(self.pipeline, X)

    def predict(self, X):
        """The label of each row; for a regressor (:attr:`regression`) its estimate (float)."""
        if self.regression:
            from .models import predict_regressor

            X = np.atleast_2d(np.asarray(X, dtype=np.float32))
            return np.asarray(predict_regressor(self.pipeline, X), dtype=np.float64)
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


def features_digest(config, columns=None):
    """sha256 of a FeatureConfig and of the column names it gives (or ``columns``): everything a
    pipeline trained on its features expects, down to the order of the columns and the detector."""
    names = config.columns()[0] if columns is None else columns
    text = json.dumps({"feature_config": config.to_dict(), "columns": [str(c) for c in names]}, sort_keys=True,
                      default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def non_finite_parameters(estimator, root="pipeline"):
    """Where the parameters of ``estimator`` hold NaN or infinity (attribute paths such as
    ``pipeline.steps[2][1].coef_``): every float attribute of it and of the estimators, trees and
    XGBoost boosters inside it, fitted diagnostics (:data:`_DIAGNOSTICS`) aside."""
    found, seen, stack = [], set(), [(root, estimator)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, (float, np.floating, np.ndarray)):
            values = np.asarray(item)
            if values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
                found.append(where)
            continue
        if isinstance(item, (str, bytes, int, type(None))) or id(item) in seen:
            continue
        seen.add(id(item))
        kind = type(item)
        if isinstance(item, dict):
            stack.extend((f"{where}[{k!r}]", v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        elif kind.__name__ == "Tree" and kind.__module__.startswith("sklearn."):
            stack.extend((f"{where}.{name}", getattr(item, name)) for name in ("threshold", "value"))
        elif kind.__name__ == "Booster" and kind.__module__.startswith("xgboost"):
            tokens = []  # XGBoost's JSON writes non-finite numbers as NaN, Infinity, -Infinity
            json.loads(bytes(item.save_raw("json")), parse_constant=tokens.append)
            if tokens:
                found.append(f"{where} (trees)")
        elif kind.__module__.split(".")[0] in ("sklearn", "classifiers") and hasattr(item, "__dict__"):
            stack.extend((f"{where}.{k}", v) for k, v in vars(item).items() if k not in _DIAGNOSTICS)
    return sorted(found)


def _non_finite_error(path, where):
    return ModelFileError(f"{path}: the model's parameters hold NaN or infinity ({', '.join(where[:3])})")


def save_model(path, pipeline, config, meta=None, columns=None):
    """Write ``pipeline`` (fitted, with predict_proba; a regressor, with predict, when ``meta`` says
    target "age") and its description to ``path``, atomically.

    ``columns``: the names of the columns the pipeline was trained on (a feature table's); they
    must be the ones ``config`` gives. A linear pipeline also gets its numeric form. Refuses a
    pipeline whose parameters hold NaN or infinity.
    """
    import skops.io as sio

    from .linear import linear_form

    if isinstance(config, dict):
        config = FeatureConfig.from_dict(config)
    names = list(config.columns()[0])
    if columns is not None and [str(c) for c in columns] != names:
        raise IncompatibleModelError("the pipeline was trained on other columns than its feature configuration gives")
    n_in = getattr(pipeline, "n_features_in_", None)
    if n_in is not None and n_in != len(names):
        raise IncompatibleModelError(f"the pipeline expects {n_in} features, its feature configuration gives "
                                     f"{len(names)}")
    bad = non_finite_parameters(pipeline)
    if bad:
        raise ModelFileError(f"the pipeline's parameters hold NaN or infinity ({', '.join(bad[:3])})")
    labels = [str(c) for c in getattr(pipeline, "classes_", [])]  # a regressor (meta target "age") has none
    blob = sio.dumps(pipeline, compression=zipfile.ZIP_DEFLATED)
    untrusted = set(sio.get_untrusted_types(data=blob)) - trusted_types()
    if untrusted:
        raise ModelFileError(f"the pipeline holds types a model file may not contain: {sorted(untrusted)}")
    members = {PIPELINE: blob}
    description = dict(meta or {})
    description.update({
        "format": FORMAT, "format_version": FORMAT_VERSION, "labels": labels,
        "feature_config": config.to_dict(), "n_features": len(names),
        "features_sha256": features_digest(config, names), "pipeline_sha256": hashlib.sha256(blob).hexdigest(),
    })
    description.pop("linear_sha256", None)
    linear = linear_form(pipeline)
    if linear is not None:
        members[LINEAR] = linear.to_bytes()
        description["linear_sha256"] = hashlib.sha256(members[LINEAR]).hexdigest()
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(META, json.dumps(description, indent=2, default=_json_default))
            for name, data in members.items():
                zf.writestr(name, data)
    return description


def read_meta(path):
    """The meta.json of a model file (no pipeline loaded). Raises ModelFileError."""
    return _open(path)[0]


def _read_members(zf, path, what):
    """{name: bytes} of every member of ``zf``, never unpacking more than MAX_BYTES in all, nor more
    than MEMBER_BYTES of a member named there (whatever sizes the zip declares), and never holding
    more than one chunk beyond that."""
    infos = zf.infolist()
    if sum(info.file_size for info in infos) > MAX_BYTES:
        raise ModelFileError(f"{path}: {what} unpacks to more than {MAX_BYTES // 10**6} MB (not a model file)")

    def too_large(info):
        return ModelFileError(f"{path}: {info.filename[:40]!r} in {what} unpacks to more than "
                              f"{MEMBER_BYTES[info.filename]:,} bytes (not a model file)")

    for info in infos:
        if info.file_size > MEMBER_BYTES.get(info.filename, MAX_BYTES):
            raise too_large(info)
    out, budget = {}, MAX_BYTES
    for info in infos:
        parts, limit = [], MEMBER_BYTES.get(info.filename, MAX_BYTES)
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(min(1 << 20, budget + 1, limit + 1))
                if not chunk:
                    break
                parts.append(chunk)
                budget -= len(chunk)
                limit -= len(chunk)
                if budget < 0:
                    raise ModelFileError(f"{path}: {what} unpacks to more than {MAX_BYTES // 10**6} MB "
                                         f"(not a model file)")
                if limit < 0:
                    raise too_large(info)
        out[info.filename] = b"".join(parts)
    return out


def _shown(value, limit=40):
    """A value read from a file, for a one-line message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _open(path, versions=(FORMAT_VERSION,)):
    """(meta dict, {member: bytes}) of a model file of one of the format ``versions``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    if os.path.getsize(path) > MAX_BYTES:
        raise ModelFileError(f"{path}: too large to be a model file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if sorted(names) not in (sorted(MEMBERS), sorted(MEMBERS + (LINEAR,))):
                raise ModelFileError(f"{path}: not a model file of this project (members {names[:5]})")
            members = _read_members(zf, path, "the file")
        meta = loads_bounded(members[META], MEMBER_BYTES[META], META_DEPTH, "meta.json")
    except ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: not a readable model file ({_reason(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a model file of this project")
    if meta.get("format_version") not in versions:
        hint = " (classifiers.artifact.upgrade_model re-saves it)" if meta.get("format_version") == 1 else ""
        raise IncompatibleModelError(f"{path}: model file format {_shown(meta.get('format_version'))}, "
                                     f"this code reads {FORMAT_VERSION}{hint}")
    if not isinstance(meta.get("feature_config"), dict) or not isinstance(meta.get("labels"), list):
        raise ModelFileError(f"{path}: the model description is damaged (no feature configuration or labels)")
    return meta, members


def _check_config(path, config):
    """The feature settings a model file may name: what find_faces and describe_face accept."""
    from landmarks.detect import DETECTORS

    def whole(value, low, high):
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    if not (config.detector in DETECTORS and whole(config.upsample, 0, 3) and whole(config.upscale_to, 0, 4096)
            and whole(config.align_size, 16, 1024)):
        raise IncompatibleModelError(f"{path}: feature settings this code cannot use: detector "
                                     f"{_shown(config.detector)}, upsample {_shown(config.upsample)}, upscale_to "
                                     f"{_shown(config.upscale_to)}, align_size {_shown(config.align_size)}")


def _feature_config(path, meta, pinned=True):
    """(FeatureConfig, column names) of meta.json; ``pinned``: they must be the ones the model was
    trained on (features_sha256)."""
    try:
        config = FeatureConfig.from_dict(meta["feature_config"])
    except IncompatibleModelError as exc:
        raise IncompatibleModelError(f"{path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise IncompatibleModelError(f"{path}: feature configuration not reproducible ({_reason(exc)})") from None
    _check_config(path, config)
    names = config.columns()[0]
    if pinned and features_digest(config, names) != meta.get("features_sha256"):
        raise IncompatibleModelError(f"{path}: the feature configuration in meta.json is not the one the model was "
                                     f"trained on (its columns, their order or the detector settings differ)")
    problem = config.unsupported()
    if problem:
        raise IncompatibleModelError(f"{path}: feature settings this code cannot use: {problem}")
    return config, names


def _check_sha256(path, data, recorded, what):
    if hashlib.sha256(data).hexdigest() != recorded:
        raise ModelFileError(f"{path}: {what} does not match its checksum (modified or damaged file)")


def _pipeline_schema(path, blob):
    """The skops schema (JSON) of the pipeline, its zip bounded like the file's (nothing imported)."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as inner:
            members = _read_members(inner, path, "the pipeline")
        for name, data in members.items():
            if name.endswith(".npy"):
                check_npy(data, f"{name[:40]} in the pipeline")
        return loads_bounded(members["schema.json"], MEMBER_BYTES["schema.json"], SCHEMA_DEPTH,
                             "the pipeline's schema")
    except ModelFileError:
        raise
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: the pipeline cannot be read ({_reason(exc)})") from None


def _names_only_linear_nodes(schema):
    """Whether every node of a skops schema is one that :data:`LINEAR_NODES` allows."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node or "__class__" in node or "__module__" in node:
                name = f"{node.get('__module__')}.{node.get('__class__')}"
                if name not in LINEAR_NODES.get(node.get("__loader__"), ()):
                    return False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True


def _linear_form(path, meta, members, labels, n_features):
    """The numeric form of the model file (None if it has none), checked."""
    if (LINEAR in members) != ("linear_sha256" in meta):
        raise ModelFileError(f"{path}: the model description and its members disagree (damaged file)")
    if LINEAR not in members:
        return None
    _check_sha256(path, members[LINEAR], meta["linear_sha256"], "the numeric form")
    try:
        with zipfile.ZipFile(io.BytesIO(members[LINEAR])) as zf:
            arrays = _read_members(zf, path, "the numeric form")
        for name, data in arrays.items():
            check_npy(data, f"{name[:40]} in the numeric form")
        linear = LinearForm.from_npy(arrays)
    except ModelFileError:
        raise
    except NonFiniteError as exc:
        raise _non_finite_error(path, exc.args[0]) from None
    except _READ_ERRORS as exc:
        raise ModelFileError(f"{path}: the numeric form cannot be read ({_reason(exc)})") \
            from None
    if [str(c) for c in linear.classes] != labels:
        raise ModelFileError(f"{path}: the numeric form does not match its description")
    if linear.n_features_in != n_features:
        raise IncompatibleModelError(f"{path}: the model expects {linear.n_features_in} features, "
                                     f"its feature configuration gives {n_features}")
    return linear


def _reason(exc):
    """The first line of an exception's message, at most 100 characters (or its type's name)."""
    text = str(exc).strip()
    return text.splitlines()[0][:100] if text else type(exc).__name__


def _first_line(exc):
    """``Type: first line of the message`` of an exception, at most about 100 characters."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:100]}" if text else type(exc).__name__


def _check_background(path, meta, n_features):
    """The SHAP background sample of meta.json (``explain_background``) is absent, empty, or at most
    MAX_BACKGROUND_ROWS rows of ``n_features`` finite numbers."""
    rows = meta.get("explain_background")
    if rows is None or rows == []:
        return
    fits = False
    if isinstance(rows, list) and len(rows) <= MAX_BACKGROUND_ROWS and all(isinstance(r, list) for r in rows):
        try:
            values = np.asarray(rows, dtype=np.float64)
            fits = values.shape == (len(rows), n_features) and bool(np.all(np.isfinite(values)))
        except (TypeError, ValueError):
            pass
    if not fits:
        raise ModelFileError(f"{path}: the explanation background in meta.json is not a list of at most "
                             f"{MAX_BACKGROUND_ROWS} rows of {n_features} finite numbers")


def _check_predicts(path, pipeline, labels, n_features, regression=False):
    """The pipeline turns a row of ``n_features`` zeros into one probability per label, or a
    regressor into one finite number (a model whose fitted parts do not fit together, e.g. a
    column selection beyond its input, fails here, on load, in one line)."""
    zeros = np.zeros((1, n_features), dtype=np.float32)
    try:
        proba = np.asarray((pipeline.predict if regression else pipeline.predict_proba)(zeros), dtype=np.float64)
    except Exception as exc:  # a damaged estimator raises whatever its code meets
        raise ModelFileError(f"{path}: the pipeline cannot predict ({_first_line(exc)})") from None
    if regression:
        if proba.shape != (1,) or not np.all(np.isfinite(proba)):
            raise ModelFileError(f"{path}: the regressor does not estimate one finite number (shape {proba.shape})")
        return
    if proba.shape != (1, len(labels)) or not np.all(np.isfinite(proba)) or np.any(proba < -1e-6) \
            or abs(proba.sum() - 1) > 1e-3:
        raise ModelFileError(f"{path}: the pipeline's probabilities are not probabilities of its {len(labels)} "
                             f"classes (shape {proba.shape}, sum {float(np.nansum(proba)):.3g})")


def _check_age_groups(path, pipeline):
    """An age model by age group (:class:`classifiers.models.AgeGroupSVR`) whose arrays do not fit
    together is refused before anything predicts with it."""
    from .models import AgeGroupSVR

    steps = getattr(pipeline, "steps", None) or [(None, pipeline)]
    for k, (_, step) in enumerate(steps):
        if isinstance(step, AgeGroupSVR):
            before = steps[k - 1][1] if k else None
            n_inputs = getattr(before, "n_components_", None) if before is not None else None
            problems = step.problems(int(n_inputs) if isinstance(n_inputs, (int, np.integer)) else None)
            if problems:
                raise ModelFileError(f"{path}: the age model's parts do not fit together ({problems[0]})")


def _load_pipeline(path, blob, labels, n_features, linear=None, regression=False):
    """The pipeline of a model file, rebuilt by skops from the trusted types only, and checked
    (``regression``: a regressor, meta target "age", which has predict and no classes)."""
    import skops.io as sio

    try:
        # skops reads the type names the file holds without importing or calling anything
        untrusted = sio.get_untrusted_types(data=blob)
    except Exception as exc:  # skops raises assorted errors on foreign data
        raise ModelFileError(f"{path}: the pipeline cannot be read ({_reason(exc)})") from None
    refused = sorted(set(untrusted) - trusted_types())
    if refused:
        raise ModelFileError(f"{path}: the model names types that are not trusted: {refused[:5]}")
    try:
        pipeline = sio.loads(blob, trusted=list(untrusted))
        classes = [str(c) for c in getattr(pipeline, "classes_", [])]
        n_in = getattr(pipeline, "n_features_in_", None)
    except Exception as exc:
        raise ModelFileError(f"{path}: the pipeline cannot be loaded ({_first_line(exc)})") from None
    predicts = "predict" if regression else "predict_proba"  # a regressor estimates a number
    if classes != labels or not hasattr(pipeline, predicts):
        raise ModelFileError(f"{path}: the pipeline does not match its description")
    if n_in is not None and n_in != n_features:
        raise IncompatibleModelError(f"{path}: the model expects {n_in} features, "
                                     f"its feature configuration gives {n_features}")
    bad = non_finite_parameters(pipeline)
    if bad:
        raise _non_finite_error(path, bad)
    broken = sklearn_tree_problems(pipeline)
    if broken:
        raise ModelFileError(f"{path}: a decision tree of the model is malformed ({broken[0][:150]})")
    _check_age_groups(path, pipeline)
    _check_predicts(path, pipeline, labels, n_features, regression)  # only now: the trees are safe to walk
    if linear is not None:
        from .linear import linear_form

        if not linear.same_as(linear_form(pipeline)):
            raise ModelFileError(f"{path}: the numeric form does not match the pipeline (modified file)")
    return pipeline


def load_model(path=None):
    """Load a model file (default: the shipped model) without executing code from it.

    Raises ModelFileError for a missing, truncated, foreign or tampered file and for NaN or
    infinite parameters, and IncompatibleModelError for a model whose feature configuration
    this code cannot reproduce or that is not the one it was trained on. A linear model's
    pipeline is checked when first used (``model.pipeline``); every other one here.
    """
    path = os.fspath(path or DEFAULT_MODEL)
    meta, members = _open(path)
    config, names = _feature_config(path, meta)
    blob = members[PIPELINE]
    _check_sha256(path, blob, meta.get("pipeline_sha256"), "the pipeline")
    schema = _pipeline_schema(path, blob)
    labels = [str(c) for c in meta["labels"]]
    _check_background(path, meta, len(names))
    linear = _linear_form(path, meta, members, labels, len(names))
    model = Model(labels=labels, config=config, meta=meta, path=path, linear=linear,
                  load_pipeline=functools.partial(_load_pipeline, path, blob, labels, len(names), linear,
                                                  regression=meta.get("target") == "age"))
    if linear is None or not _names_only_linear_nodes(schema):
        model.pipeline  # noqa: B018 -- loaded and checked now
    return model


def upgrade_model(src, dest=None):
    """Re-save a model file of format 1 (or this one) in this format, from its own pipeline: the
    same pipeline and probabilities, plus the feature digest and, if linear, the numeric form.
    A format 1 file recorded no digest: its feature configuration is taken as it stands.
    Writes ``dest`` (default: over ``src``, atomically) and returns its description."""
    src = os.fspath(src)
    meta, members = _open(src, versions=(1, FORMAT_VERSION))
    if meta["format_version"] == FORMAT_VERSION:
        model = load_model(src)
        config, pipeline = model.config, model.pipeline
    else:
        config, names = _feature_config(src, meta, pinned=False)
        _check_sha256(src, members[PIPELINE], meta.get("pipeline_sha256"), "the pipeline")
        _pipeline_schema(src, members[PIPELINE])
        pipeline = _load_pipeline(src, members[PIPELINE], [str(c) for c in meta["labels"]], len(names),
                                  regression=meta.get("target") == "age")
    return save_model(dest or src, pipeline, config, meta)
