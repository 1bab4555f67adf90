"""The numeric form of an exactly linear model: its probabilities with numpy alone.

A Pipeline of column selections (:class:`~classifiers.models.GroupSelector`, an ANOVA
filter), one StandardScaler and a LogisticRegression computes, for a float32 row ``x``::

    z = (x[columns] - mean) / scale          # float32, as StandardScaler.transform
    s = z @ coef.T + intercept               # in coef's type (float32 for a model fitted on float32)
    p = softmax(s)                           # multinomial; logistic (one-vs-rest) for kind LOGISTIC

A model file of such a pipeline also holds these arrays (``linear.npz``: numbers and the
class names, no pickled objects), so predicting needs neither scikit-learn nor skops, whose
imports take most of a cold start. :func:`linear_form` (at save time, with scikit-learn)
builds the form and checks it against the pipeline's own probabilities.
"""

import io
from dataclasses import dataclass

import numpy as np

#: How scores become probabilities: softmax over the classes (multinomial logistic regression), or
#: the logistic function of each score (binary: [1 - p, p]; one-vs-rest: normalised per row).
SOFTMAX, LOGISTIC = 0, 1
#: The arrays of the form: name -> numpy dtype kinds it may have.
FIELDS = {"n_features_in": "iu", "columns": "iu", "mean": "f", "scale": "f", "coef": "f", "intercept": "f",
          "kind": "iu", "classes": "U"}
#: Largest difference from the pipeline's probabilities that :func:`linear_form` accepts (the
#: arrays keep their fitted types and the same operations run in the same order: it finds none).
TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class LinearForm:
    n_features_in: int
    columns: np.ndarray     # (k,) int64: the input columns the model reads, in its order
    mean: np.ndarray        # (k,) float
    scale: np.ndarray       # (k,) float, nonzero
    coef: np.ndarray        # (c, k) float: c = classes, or 1 for a binary logistic model
    intercept: np.ndarray   # (c,) float
    kind: int               # SOFTMAX or LOGISTIC
    classes: np.ndarray     # (n_classes,) str

    def predict_proba(self, X):
        """(n, n_classes) probabilities of the rows of ``X`` (n, n_features_in)."""
        X = np.atleast_2d(np.asarray(X))
        if X.ndim != 2 or X.shape[1] != self.n_features_in:
            raise ValueError(f"X has shape {X.shape}, the model reads {self.n_features_in} columns")
        z = X[:, self.columns]
        if z.dtype.kind != "f":
            z = z.astype(np.float64)
        z -= self.mean.astype(z.dtype)
        z /= self.scale.astype(z.dtype)
        scores = z @ self.coef.T + self.intercept
        if self.kind == SOFTMAX:
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            return scores / scores.sum(axis=1, keepdims=True)
        p = 1.0 / (1.0 + np.exp(-scores))
        if p.shape[1] == 1:
            return np.hstack([1.0 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    def arrays(self):
        return {"n_features_in": np.int64(self.n_features_in), "columns": self.columns, "mean": self.mean,
                "scale": self.scale, "coef": self.coef, "intercept": self.intercept, "kind": np.int64(self.kind),
                "classes": self.classes}

    def to_bytes(self):
        """The form as an .npz (a zip of .npy files, deflated; nothing pickled)."""
        out = io.BytesIO()
        np.savez_compressed(out, **self.arrays())
        return out.getvalue()

    @classmethod
    def from_npy(cls, members):
        """The form from {"name.npy": bytes} (the members of :meth:`to_bytes`). Raises ValueError
        naming what is wrong: missing or extra arrays, wrong types or shapes, NaN or infinity."""
        if sorted(members) != sorted(f"{name}.npy" for name in FIELDS):
            raise ValueError(f"arrays {sorted(members)[:10]}")
        a = {}
        for name, kinds in FIELDS.items():
            a[name] = np.lib.format.read_array(io.BytesIO(members[f"{name}.npy"]), allow_pickle=False)
            if a[name].dtype.kind not in kinds:
                raise ValueError(f"{name} has type {a[name].dtype}")
        if a["n_features_in"].shape != () or a["kind"].shape != () or a["columns"].ndim != 1:
            raise ValueError("shapes of n_features_in, kind or columns")
        k, n_classes, kind = a["columns"].shape[0], a["classes"].size, int(a["kind"])
        rows = 1 if kind == LOGISTIC and n_classes == 2 else n_classes
        shapes = {"mean": (k,), "scale": (k,), "coef": (rows, k), "intercept": (rows,), "classes": (n_classes,)}
        wrong = [(name, a[name].shape) for name, shape in shapes.items() if a[name].shape != shape]
        if wrong or k < 1 or n_classes < 2 or kind not in (SOFTMAX, LOGISTIC):
            raise ValueError(f"shapes {wrong} or kind {kind}")
        not_finite = [name for name in ("mean", "scale", "coef", "intercept") if not np.all(np.isfinite(a[name]))]
        if not_finite:
            raise NonFiniteError(not_finite)
        n_in = int(a["n_features_in"])
        if a["columns"].min() < 0 or a["columns"].max() >= n_in or np.any(a["scale"] == 0):
            raise ValueError("column indices or scales out of range")
        return cls(n_in, a["columns"].astype(np.int64), a["mean"], a["scale"], a["coef"], a["intercept"], kind,
                   a["classes"])

    def same_as(self, other):
        return other is not None and all(np.array_equal(x, y) for x, y in zip(self.arrays().values(),
                                                                             other.arrays().values()))


class NonFiniteError(ValueError):
    """Parameters holding NaN or infinity; ``args[0]``: where."""


def linear_form(pipeline):
    """The :class:`LinearForm` of ``pipeline``, or None if it is not exactly such a linear model
    (another final estimator, another step, two scalers) or if the form's probabilities differ
    from the pipeline's by more than TOLERANCE on rows around the training mean."""
    from sklearn.feature_selection import SelectorMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from .models import GroupSelector

    if not isinstance(pipeline, Pipeline) or type(pipeline.steps[-1][1]) is not LogisticRegression:
        return None
    final = pipeline.steps[-1][1]
    n_in = getattr(pipeline, "n_features_in_", None)
    if n_in is None:
        return None
    columns, mean, scale = np.arange(n_in), None, None
    for _, step in pipeline.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        if isinstance(step, GroupSelector) or isinstance(step, SelectorMixin):
            keep = step.columns_ if isinstance(step, GroupSelector) else np.flatnonzero(step.get_support())
            columns = columns[keep]
            mean, scale = (None, None) if mean is None else (mean[keep], scale[keep])
        elif type(step) is StandardScaler and mean is None and scale is None:
            mean = step.mean_ if step.with_mean else np.zeros(len(columns))
            scale = step.scale_ if step.with_std else np.ones(len(columns))
        else:
            return None
    n_classes = len(final.classes_)
    multi_class = getattr(final, "multi_class", "deprecated")
    logistic = n_classes == 2 or multi_class == "ovr" or (multi_class == "auto" and final.solver == "liblinear")
    form = LinearForm(int(n_in), np.asarray(columns, dtype=np.int64),
                      np.asarray(np.zeros(len(columns)) if mean is None else mean),
                      np.asarray(np.ones(len(columns)) if scale is None else scale),
                      np.asarray(final.coef_), np.asarray(final.intercept_),
                      LOGISTIC if logistic else SOFTMAX, np.asarray([str(c) for c in final.classes_]))
    rng = np.random.default_rng(0)
    X = np.zeros((16, n_in), dtype=np.float32)
    X[:, form.columns] = form.mean + form.scale * rng.standard_normal((16, len(form.columns)))
    if not np.allclose(form.predict_proba(X), pipeline.predict_proba(X), rtol=0, atol=TOLERANCE):
        return None
    return form
