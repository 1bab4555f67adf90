"""What a benchmark run produces: :class:`BenchmarkResult`, one :class:`ModelResult` per model
(:class:`AgeModelResult` for the age target, a regression in years).

``BenchmarkResult.to_dict()`` is the content of a report's ``results.json`` (the same keys in the
same order as ever); :meth:`BenchmarkResult.read` loads such a file back, tolerating files of
older versions that lack some keys (a missing field takes its default, or None).
"""

import dataclasses
import json
import platform
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

from common.labels import AGE_GROUP_NAMES, age_group

FIT_SECONDS_NOTE = "mean wall time per outer fold, grid search and refit included"
PREDICT_MS_NOTE = "classifier time per face on precomputed features (landmarks and features excluded)"


def _field_values(cls, data):
    """Constructor arguments of dataclass ``cls`` from the dict ``data``: a field that ``data``
    lacks takes its default (or None where it has none). ValueError if ``data`` is no dict."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object for {cls.__name__}, found {type(data).__name__}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = data[f.name]
        elif f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
        else:
            values[f.name] = None
    return values


@dataclass
class Scores:
    """Figures of one set of predictions, each rounded to 4 decimals."""

    accuracy: float            # share of the tested faces predicted right
    balanced_accuracy: float   # mean of the per-class recalls
    macro_f1: float            # unweighted mean of the per-class F1 scores
    per_class_recall: dict     # {class: recall}, in the order of the classes given

    @classmethod
    def compute(cls, y_true, y_pred, classes):
        """The scores of ``y_pred`` against ``y_true`` over ``classes`` (absent classes score 0)."""
        recall = recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
        return cls(
            accuracy=round(float(accuracy_score(y_true, y_pred)), 4),
            balanced_accuracy=round(float(balanced_accuracy_score(y_true, y_pred)), 4),
            macro_f1=round(float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)), 4),
            per_class_recall={c: round(float(r), 4) for c, r in zip(classes, recall)},
        )

    def to_dict(self):
        return {"accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy,
                "macro_f1": self.macro_f1, "per_class_recall": self.per_class_recall}

    @classmethod
    def from_dict(cls, data):
        return cls(**_field_values(cls, data))


def scores_by_age_group(y_true, y_pred, ages):
    """{age group: {"n", "accuracy", "balanced_accuracy"}} of class predictions, grouped by the
    true age (common.labels.AGE_GROUPS); groups without faces are left out."""
    import warnings

    groups = age_group(ages)
    out = {}
    for name in AGE_GROUP_NAMES:
        rows = groups == name
        if rows.any():
            with warnings.catch_warnings():  # a small group may hold one class only: its recall is the mean
                warnings.simplefilter("ignore", UserWarning)
                balanced = balanced_accuracy_score(y_true[rows], y_pred[rows])
            out[name] = {"n": int(rows.sum()), "accuracy": round(float(accuracy_score(y_true[rows], y_pred[rows])), 4),
                         "balanced_accuracy": round(float(balanced), 4)}
    return out


@dataclass
class Baseline(Scores):
    """The scores of a trivial predictor, fitted per fold like the models."""

    name: str = "majority_class"   # which predictor: the training part's most frequent class
    per_age_group: dict | None = None   # scores_by_age_group where the table has ages, else None (no key)

    def to_dict(self):
        out = {**super().to_dict(), "name": self.name}
        if self.per_age_group:
            out["per_age_group"] = self.per_age_group
        return out


@dataclass
class AgeScores:
    """Figures of age estimates, in years unless said otherwise."""

    mae: float             # mean absolute error
    rmse: float            # root mean squared error
    cs5: float             # cumulative score CS(5): share of faces estimated within 5 years
    bias: float            # mean signed error (estimate - true age): > 0 estimates too old
    per_age_group: dict    # {age group of the true age: {"n", "mae", "rmse", "cs5", "bias"}}

    @staticmethod
    def _figures(error):
        error = np.asarray(error, dtype=np.float64)
        return {"mae": round(float(np.mean(np.abs(error))), 3), "rmse": round(float(np.sqrt(np.mean(error ** 2))), 3),
                "cs5": round(float(np.mean(np.abs(error) <= 5)), 4), "bias": round(float(np.mean(error)), 3)}

    @classmethod
    def compute(cls, y_true, y_pred):
        """The figures of estimates ``y_pred`` of the ages ``y_true``, overall and per age group."""
        y_true = np.asarray(y_true, dtype=np.float64)
        error = np.asarray(y_pred, dtype=np.float64) - y_true
        groups = age_group(y_true)
        per_group = {name: {"n": int((groups == name).sum()), **cls._figures(error[groups == name])}
                     for name in AGE_GROUP_NAMES if np.any(groups == name)}
        return cls(**cls._figures(error), per_age_group=per_group)

    def to_dict(self):
        return {"mae": self.mae, "rmse": self.rmse, "cs5": self.cs5, "bias": self.bias,
                "per_age_group": self.per_age_group}

    @classmethod
    def from_dict(cls, data):
        return cls(**_field_values(cls, data))


@dataclass
class AgeBaseline(AgeScores):
    """The figures of a trivial age estimate, fitted per fold like the models."""

    name: str = "mean_age"   # which estimate: the training part's mean age, for every face

    def to_dict(self):
        return {**super().to_dict(), "name": self.name}


@dataclass
class ModelResult(Scores):
    """One model's figures over every tested face (the :class:`Scores` fields), and how it got them."""

    name: str                      # the model's name in classifiers.models (e.g. "logreg")
    description: str               # classifiers.models.describe(name)
    fold_accuracy_mean: float      # mean of the per-fold accuracies
    fold_accuracy_std: float       # their standard deviation
    best_params: dict              # the grid point chosen in the most folds (tuples as lists)
    best_params_per_fold: list     # the grid point chosen in each outer fold, in fold order
    fit_seconds: float             # mean wall time per outer fold, grid search and refit included
    predict_ms_per_face: float     # classifier time per tested face, in milliseconds
    confusion_matrix: list         # rows: true class, columns: predicted, in the order of the classes
    #: {subset name: Scores} on the protocol's extra subsets (e.g. "PrivateTest"); in results.json
    #: each is a key of the model's entry, placed after fold_accuracy_std
    subsets: dict = field(default_factory=dict)
    #: {class: [[feature unit, mean contribution toward the true class], ...]} for the explained
    #: models (classifiers.search.EXPLAINED_MODELS); None (no key in results.json) for the others
    top_features: dict | None = None
    #: scores_by_age_group where the table has ages (UTKFace gender); None (no key) otherwise
    per_age_group: dict | None = None

    def to_dict(self):
        out = {"name": self.name, "description": self.description, **super().to_dict()}
        if self.per_age_group:
            out["per_age_group"] = self.per_age_group
        out.update(fold_accuracy_mean=self.fold_accuracy_mean, fold_accuracy_std=self.fold_accuracy_std)
        out.update({subset: scores.to_dict() for subset, scores in self.subsets.items()})
        out.update(best_params=self.best_params, best_params_per_fold=self.best_params_per_fold,
                   fit_seconds=self.fit_seconds, predict_ms_per_face=self.predict_ms_per_face,
                   confusion_matrix=self.confusion_matrix)
        if self.top_features:
            out["top_features"] = self.top_features
        return out

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`to_dict`: a key that is no field and holds a dict is a subset's scores."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = _field_values(cls, data)
        values["subsets"] = {k: Scores.from_dict(v) for k, v in data.items()
                             if k not in names and isinstance(v, dict)}
        return cls(**values)


@dataclass
class AgeModelResult(AgeScores):
    """One age regressor's figures over every tested face (the :class:`AgeScores` fields), and how it
    got them; the fields after the scores mean what :class:`ModelResult`'s do."""

    name: str
    description: str
    fold_mae_mean: float           # mean of the per-fold MAEs, years
    fold_mae_std: float            # their standard deviation
    best_params: dict
    best_params_per_fold: list
    fit_seconds: float
    predict_ms_per_face: float
    #: {age group: [[feature unit, mean contribution to the estimates of its test faces, years], ...]}
    #: for the explained models; None (no key in results.json) for the others
    top_features: dict | None = None

    def to_dict(self):
        out = {"name": self.name, "description": self.description, **super().to_dict(),
               "fold_mae_mean": self.fold_mae_mean, "fold_mae_std": self.fold_mae_std,
               "best_params": self.best_params, "best_params_per_fold": self.best_params_per_fold,
               "fit_seconds": self.fit_seconds, "predict_ms_per_face": self.predict_ms_per_face}
        if self.top_features:
            out["top_features"] = self.top_features
        return out


@dataclass
class BenchmarkResult:
    """Every model of one benchmark run on one feature table, evaluated on the same folds."""

    dataset: str                   # dataset name(s) of the table's rows, comma-separated and sorted
    protocol: str                  # Protocol.name: fer2013_split, loso, subject_kfold or stratified_kfold
    protocol_description: str      # the protocol in words (plus the calibration note when calibrated)
    n_folds: int                   # outer folds
    subsets: dict                  # {extra subset name: its number of faces}, e.g. {"PrivateTest": 3589}
    n_augmented: int               # mirrored faces in the table (training only, never tested)
    n_samples: int                 # rows used (faces that were described)
    n_tested: int                  # rows tested over all outer folds (each once)
    n_subjects: int | None         # distinct subjects, or None where the table has no subjects
    excluded_rows: dict            # {reason: rows}: rows left out, e.g. no face found
    n_excluded: int                # their total
    classes: list                  # the class labels, sorted: the order of every per-class list (age: the age groups)
    class_counts: dict             # {class: rows} (age: {age group: rows})
    baseline: Baseline             # the majority-class predictor on the same folds (age: AgeBaseline, the mean age)
    models: list                   # a ModelResult per model (age: AgeModelResult), in the order they were asked for
    quick: bool                    # small grids and fewer folds (--quick)
    seed: int                      # seed of the folds and the models
    jobs: int                      # worker processes asked for
    feature_config: dict           # the feature table's configuration
    versions: dict                 # library versions (see versions())
    fit_seconds_note: str = FIT_SECONDS_NOTE      # what ModelResult.fit_seconds measures
    predict_ms_note: str = PREDICT_MS_NOTE        # what ModelResult.predict_ms_per_face measures
    label_scheme: str | None = None      # the label scheme (all, basic7, ...); None: not recorded (read as all)
    calibration: str | None = None      # per-subject calibration: none or subject; None: not recorded
    target: str | None = None      # what was learned (common.labels.TARGETS); None: not recorded (read as label)

    @property
    def regression(self):
        """True for the age target: models are AgeModelResults, the baseline an AgeBaseline."""
        return self.target == "age"

    def to_dict(self):
        """The results.json content: plain JSON types; label_scheme, calibration and target only when set."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["baseline"] = self.baseline.to_dict()
        out["models"] = [m.to_dict() for m in self.models]
        for key in ("label_scheme", "calibration", "target"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data):
        values = _field_values(cls, data)
        age = data.get("target") == "age"
        values["baseline"] = (AgeBaseline if age else Baseline).from_dict(data.get("baseline") or {})
        values["models"] = [(AgeModelResult if age else ModelResult).from_dict(m) for m in data.get("models") or []]
        return cls(**values)

    @classmethod
    def read(cls, path):
        """A results.json file (OSError, ValueError when it cannot be read as JSON)."""
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def to_json(self):
        """The results.json text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


def versions():
    """Versions of Python and the libraries that make the figures (also stored in model files)."""
    import sklearn
    import xgboost

    out = {"python": platform.python_version(), "numpy": np.__version__, "sklearn": sklearn.__version__,
           "xgboost": xgboost.__version__}
    try:
        import dlib

        out["dlib"] = dlib.__version__
    except ImportError:  # pragma: no cover
        out["dlib"] = None
    try:
        from importlib.metadata import version

        out["project"] = version("facial-expressions")
    except Exception:  # pragma: no cover - not installed as a package
        out["project"] = None
    return out
