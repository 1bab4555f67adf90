"""Why a face got its label: signed contributions of named features, in words.

Contributions are the model's own where it has them, and exact:
- logistic regression: coefficient x standardised value, per class; they plus the
  intercept sum to the class's decision value (logit);
- XGBoost: the booster's per-prediction contributions (``pred_contribs``, TreeSHAP);
  they plus the bias sum to the class margin;
- Random Forest: SHAP's TreeExplainer (exact Shapley values of the class probability).
- an age regressor (a model whose target is "age") is explained the same way, in years: ridge
  regression by coefficient x standardised value (they plus the intercept sum to the estimate),
  XGBoost regression by its ``pred_contribs``; a positive contribution pushed the estimate up.
Other models (SVMs, the PCA-based SVM and SVR, ensembles) have no contributions of their own: they
get Shapley values of the readable units below for the class probability (for a regressor, the
estimate), against a small background sample of training rows stored in the model file; exact
for up to 10 units, otherwise a seeded (repeatable) estimate from SHAP's permutation explainer.

Many columns are parts of one thing a person can name (136 landmark coordinates, hundreds
of HOG cells per face part, 40 Gabor responses per landmark). Their contributions are summed
into readable units ("mouth appearance (HOG)", "mouth shape (landmark positions)", "mouth
texture (Gabor jets)"), and per face part; a sum of exact contributions stays exact. Each
feature group declares its columns' units and face parts (``features.describe.GROUPS``).
"""

import functools
from dataclasses import dataclass

import numpy as np

from common.errors import FacialExpressionError
from features.describe import GROUPS
from landmarks.parts import FACE_PARTS, by_fine_part  # FACE_PARTS: the parts explanations sum and colour


class ExplanationError(FacialExpressionError):
    """The model cannot be explained (e.g. a model file without a background sample)."""


@functools.lru_cache(maxsize=1)
def _declared():
    """Column name -> its declaration, over every feature group."""
    return {column.name: column for group in GROUPS.values() for column in group.columns()}


def feature_unit(column):
    """(unit name in words, face part or None, True when the unit is this single column), as the
    column's feature group declares them; a column no group declares is a unit of its own."""
    declared = _declared().get(column)
    return (column, None, True) if declared is None else (declared.unit, declared.part, declared.single)


@dataclass
class Explanation:
    label: str                 # the class explained (the predicted one); "age" for an age regressor
    units: list                # unit names
    values: list               # the feature's value for single-column units, else None
    contributions: np.ndarray  # per unit, toward ``label`` (positive) or against it; for age, up or down
    bias: float                # the part not owed to any feature (intercept, expected value)
    output: float              # what bias + sum(contributions) adds up to
    output_kind: str           # "logit", "margin", "probability", or "years" (an age estimate)
    parts: dict                # face part -> summed contribution

    def top(self, n=3):
        """(toward, against): the n largest positive and negative units as dicts."""
        order = np.argsort(-self.contributions)
        rows = [{"feature": self.units[i], "value": self.values[i], "contribution": round(float(self.contributions[i]), 4)}
                for i in order]
        toward = [r for r in rows if r["contribution"] > 0][:n]
        against = [r for r in reversed(rows) if r["contribution"] < 0][:n]
        return toward, against


def _selector_at(pipeline):
    """Index of the pipeline's GroupSelector step, or None."""
    from .models import GroupSelector

    return next((i for i, (_, step) in enumerate(pipeline.steps) if isinstance(step, GroupSelector)), None)


def _selected_columns(steps, n_columns):
    """Indices of the input columns that come out of ``steps`` (group selection, scikit-learn
    feature selectors such as the ANOVA filter of logreg; other steps keep columns as they are)."""
    from sklearn.feature_selection import SelectorMixin

    from .models import GroupSelector

    columns = np.arange(n_columns)
    for _, step in steps:
        if isinstance(step, GroupSelector):
            columns = columns[step.columns_]
        elif isinstance(step, SelectorMixin):
            columns = columns[step.get_support()]
    return columns


def _columnwise(head):
    """True when every step before the model maps each column on its own (selection, scaling),
    so the model's contributions per input column are contributions of named features."""
    from sklearn.feature_selection import SelectorMixin
    from sklearn.preprocessing import StandardScaler

    from .models import GroupSelector

    return all(isinstance(step, (GroupSelector, SelectorMixin, StandardScaler)) for _, step in head.steps)


def has_native(pipeline):
    """True for models with their own exact per-column contributions behind column-wise steps."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge

    from .models import XGBoostModel, XGBoostRegressor

    final = pipeline.steps[-1][1]
    return _columnwise(pipeline[:-1]) and isinstance(
        final, (LogisticRegression, XGBoostModel, RandomForestClassifier, Ridge, XGBoostRegressor))


def _native_contributions(model, X, classes, proba):
    """Per-column contributions of a model with :func:`has_native` ones (``classes`` None: a
    regressor's, to its estimate in years).

    Returns (contributions (n, k), bias (n,), output (n,), output_kind) over the columns that
    reach the model.
    """
    from sklearn.linear_model import LogisticRegression, Ridge

    from .models import XGBoostModel, XGBoostRegressor

    head, final = model.pipeline[:-1], model.pipeline.steps[-1][1]
    Z = head.transform(X)
    rows = np.arange(len(X))
    if isinstance(final, Ridge):
        contrib = np.ravel(final.coef_)[None, :] * Z
        bias = np.full(len(X), float(np.ravel(final.intercept_)[0]))
        return contrib, bias, contrib.sum(axis=1) + bias, "years"
    if isinstance(final, XGBoostRegressor):
        import xgboost as xgb

        raw = final.booster_.predict(xgb.DMatrix(np.asarray(Z, dtype=np.float32)), pred_contribs=True)
        raw = np.asarray(raw).reshape(len(X), -1)
        return raw[:, :-1], raw[:, -1], raw.sum(axis=1), "years"
    if isinstance(final, LogisticRegression):
        coef = final.coef_
        if coef.shape[0] == 1:  # binary: one row for the positive class
            coef = np.vstack([-coef[0], coef[0]]) / 2
            intercept = np.array([-final.intercept_[0], final.intercept_[0]]) / 2
        else:
            intercept = final.intercept_
        contrib = coef[classes] * Z
        bias = intercept[classes]
        return contrib, bias, contrib.sum(axis=1) + bias, "logit"
    if isinstance(final, XGBoostModel):
        import xgboost as xgb

        raw = final.booster_.predict(xgb.DMatrix(np.asarray(Z, dtype=np.float32)), pred_contribs=True)
        raw = raw.reshape(len(X), len(final.classes_), -1)[rows, classes]
        margin = final.booster_.predict(xgb.DMatrix(np.asarray(Z, dtype=np.float32)), output_margin=True)
        margin = np.asarray(margin).reshape(len(X), -1)[rows, classes]
        return raw[:, :-1], raw[:, -1], margin, "margin"
    shap = _shap(final)
    explainer = shap.TreeExplainer(final)
    values = np.asarray(explainer.shap_values(np.asarray(Z, dtype=np.float32), check_additivity=False))
    if values.ndim == 3 and values.shape[0] == len(X):       # (n, features, classes)
        contrib = values[rows, :, classes]
    else:                                                    # list per class -> (classes, n, features)
        contrib = values[classes, rows, :]
    bias = np.asarray(explainer.expected_value).reshape(-1)[classes]
    return contrib, bias, proba[rows, classes], "probability"


def _shap(final):
    """The shap module; SHAP (with numba and llvmlite) is an optional part of the install."""
    try:
        import shap
    except ImportError:
        raise ExplanationError(f"explaining a {type(final).__name__} model needs SHAP, an optional part: "
                               "pip install 'facial-expressions[explain]' (make install includes it)") from None
    _cache_shap_compilations()
    return shap


@functools.cache
def _cache_shap_compilations():
    """Let numba keep the machine code of SHAP's masking helpers on disk (beside SHAP's files, or in
    numba's cache folder when those are read-only) instead of compiling them in every process that
    explains with SHAP's permutation explainer. Not the helpers that take the link function as an
    argument (``shap.utils._masked_model``): their cache key holds that function's address, which
    differs in every process, so each process would add a copy and never reuse one."""
    import importlib

    for name in ("shap.links", "shap.maskers._tabular"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for value in vars(module).values():
            if callable(getattr(value, "enable_caching", None)) and hasattr(value, "py_func"):
                try:
                    value.enable_caching()
                except Exception:  # noqa: BLE001  (no cache: SHAP still works, compiling as before)
                    pass


#: Unit Shapley values are exact (every subset of units) up to this many units, else estimated.
EXACT_UNITS = 10
#: Random orders of the units averaged by the estimate (each order is walked forwards and
#: backwards); seeded, so an explanation is repeatable.
PERMUTATIONS = 10
#: Feature values of the mixed faces built at a time (16 M float32: 64 MB), whatever the
#: number of coalitions SHAP asks for at once (up to 2**EXACT_UNITS) and the background's size.
MIXED_VALUES = 16_000_000


def coalition_values(model, x, background, keep, k):
    """Mean probability of class ``k`` (``k`` None: a regressor's estimate) over the faces that take
    ``x``'s values where ``keep`` (m, columns) is true and each background row's elsewhere: (m,).
    Built a batch of coalitions at a time, never more than MIXED_VALUES feature values at once."""
    from .models import predict_proba, predict_regressor

    out = np.empty(len(keep))
    step = max(1, MIXED_VALUES // max(1, background.size))
    for start in range(0, len(keep), step):
        part = keep[start:start + step]
        mixed = np.where(part[:, None, :], x[None, None, :], background[None])  # (m', B, columns)
        mixed = mixed.reshape(-1, mixed.shape[-1])
        proba = predict_regressor(model, mixed) if k is None else predict_proba(model, mixed)[:, k]
        out[start:start + step] = proba.reshape(len(part), len(background)).mean(axis=1)
    return out


def _unit_shapley(model, X, classes, unit_of_column, n_units):
    """Shapley values of whole units (n, n_units) for the class probability, for any model
    (``classes`` None: for a regressor's estimate).

    A unit is present (the face's values) or absent (a background training face's values,
    averaged over the few background faces stored in the model file): interventional Shapley
    values of groups of columns. Mixing one face's units with another face's values makes faces
    that never occur; that is the price of explaining a model that has no contributions of its
    own. The model's own steps (scaling, PCA, kernels) run on every mixed face, so models that
    mix columns are explained in named features too. Up to EXACT_UNITS units SHAP computes them
    exactly; beyond, SHAP's permutation explainer estimates them from PERMUTATIONS seeded random
    orders (2 * units + 1 model calls on background-many faces per order).
    """
    shap = _shap(model.pipeline.steps[-1][1])
    background = model.meta.get("explain_background")
    if not background:
        final = model.pipeline.steps[-1][1]
        raise ExplanationError(f"{type(final).__name__} models are explained with SHAP against a background "
                               "sample, and this model file has none (retrain it with this version)")
    at = _selector_at(model.pipeline)
    rest = model.pipeline if at is None else model.pipeline[at + 1:]
    pick = np.asarray if at is None else model.pipeline[:at + 1].transform
    background = pick(np.asarray(background, dtype=np.float32))
    selected = pick(X)
    contrib, bias = np.zeros((len(X), n_units)), np.zeros(len(X))
    masker = shap.maskers.Independent(np.zeros((1, n_units)), max_samples=1)
    state = np.random.get_state()  # SHAP reseeds numpy's global generator; leave it as it was
    try:
        for r, (x, k) in enumerate(zip(selected, [None] * len(X) if classes is None else classes)):
            def value(present, x=x, k=k):  # (m, n_units) 0/1 -> mean probability of class k (or estimate)
                keep = np.asarray(present, dtype=bool)[:, unit_of_column]               # (m, columns)
                return coalition_values(rest, x, background, keep, k)

            if n_units <= EXACT_UNITS:
                result = shap.explainers.Exact(value, masker)(np.ones((1, n_units)), silent=True)
            else:
                explainer = shap.explainers.Permutation(value, masker, seed=0)
                result = explainer(np.ones((1, n_units)), max_evals=PERMUTATIONS * (2 * n_units + 1), silent=True)
            contrib[r] = result.values[0]
            bias[r] = float(np.ravel(result.base_values)[0])
    finally:
        np.random.set_state(state)
    return contrib, bias


def explain(model, X, class_index=None):
    """One :class:`Explanation` per row of ``X`` (feature vectors under ``model.config``).

    Contributions are the model's own where it has them (see the module notes), summed into
    readable units; other models get Shapley values of the units directly (:func:`_unit_shapley`).
    """
    declared = model.config.declared_columns()
    X = np.atleast_2d(np.asarray(X, dtype=np.float32))
    native = has_native(model.pipeline)
    # native contributions cover the columns that reach the model; Shapley values mix the columns
    # that come out of the group selection (every later step runs on each mixed face)
    at = _selector_at(model.pipeline)
    head = model.pipeline.steps[:-1] if native else model.pipeline.steps[:0 if at is None else at + 1]
    columns = _selected_columns(head, X.shape[1])
    units, single, parts, position = [], [], [], {}  # readable units in first-seen order
    unit_of_column = np.empty(len(columns), dtype=np.int64)
    for k, c in enumerate(columns):
        column = declared[c]
        if column.unit not in position:
            position[column.unit] = len(units)
            units.append(column.unit)
            single.append(int(c) if column.single else None)
            parts.append(column.part)
        unit_of_column[k] = position[column.unit]
    if model.regression:  # an age regressor: contributions to its estimate, in years
        proba = classes = None
        names = ["age"] * len(X)
    else:
        proba = model.predict_proba(X)
        if class_index is not None and not 0 <= int(class_index) < proba.shape[1]:
            raise ValueError(f"class_index {class_index} out of range for {proba.shape[1]} classes")
        classes = np.argmax(proba, axis=1) if class_index is None else np.full(len(X), int(class_index))
        names = [model.labels[int(k)] for k in classes]
    if native:
        contrib, bias, output, kind = _native_contributions(model, X, classes, proba)
        summed = np.stack([np.bincount(unit_of_column, weights=row, minlength=len(units)) for row in contrib])
    else:
        summed, bias = _unit_shapley(model, X, classes, unit_of_column, len(units))
        if classes is None:
            output, kind = model.pipeline.predict(X), "years"
        else:
            output, kind = proba[np.arange(len(X)), classes], "probability"
    out = []
    for r in range(len(X)):
        values = [None if col is None else round(float(X[r, col]), 3) for col in single]
        by_part = {p: 0.0 for p in FACE_PARTS}
        for u, p in enumerate(parts):
            if p is not None:
                by_part[p] += float(summed[r, u])
        out.append(Explanation(label=names[r], units=units, values=values, contributions=summed[r],
                               bias=float(bias[r]), output=float(output[r]), output_kind=kind, parts=by_part))
    return out


def part_colours(parts):
    """Drawn part (landmarks.parts.PARTS) -> RGB from face part -> contribution: green for parts that
    pushed toward the label, red against, brightness by size."""
    scale = max((abs(v) for v in parts.values()), default=0.0) or 1.0
    colours = {}
    for part, value in parts.items():
        strength = min(abs(value) / scale, 1.0)
        grey = 90
        if value >= 0:
            colour = (int(grey * (1 - strength)), int(grey + (255 - grey) * strength), int(grey * (1 - strength)))
        else:
            colour = (int(grey + (255 - grey) * strength), int(grey * (1 - strength)), int(grey * (1 - strength)))
        colours[part] = colour
    return by_fine_part(colours)
