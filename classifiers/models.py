"""The classical models: scikit-learn Pipelines with their parameter grids.

Every pipeline starts with a :class:`GroupSelector` (which feature groups the model sees,
itself a grid parameter), scales where the model needs it, weights classes against
imbalance, and ends in the classifier (:data:`MODELS`) or, for a numeric target such as age,
the regressor (:data:`REGRESSORS`). Every random choice takes ``seed``.

    pipe = make_pipeline("svm_rbf", table.groups, seed=0)
    grid = param_grid("svm_rbf", quick=True, groups=table.groups)
    GridSearchCV(pipe, grid, cv=StratifiedGroupKFold(3)).fit(X, y, groups=subjects)

Group choices are "shape" (geometry, landmarks, action units), "shape_parts" (shape + part
HOG/LBP/Gabor jets) and "all"; the full grids of the SVMs and logistic regression compare the
last two (:data:`SEARCHED_GROUPS`), the tree models (which choose their own columns) and the
ensemble take "all". ``param_grid(..., groups=)`` turns them into tuples of the groups a table
has, so best parameters read as group names.
"""

import collections
import contextlib
import hashlib
import os

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.feature_selection import SelectPercentile, f_classif
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

#: Feature-group choices compared by the grids. Each is resolved against the groups a table
#: actually has (:func:`resolve_groups`): "shape" = the landmark-shape groups, "shape_parts" =
#: shape + part textures (HOG, LBP, Gabor jets), "all" = every group of the table.
SHAPE_GROUPS = ("geometry", "landmarks", "action_units")
PART_GROUPS = ("parts_hog", "parts_lbp", "gabor")
SHAPE, SHAPE_PARTS, ALL = "shape", "shape_parts", "all"
#: The named, human-readable groups of the explainable model ``logreg_au``.
EXPLAINABLE_GROUPS = ("action_units", "geometry")
GROUP_CHOICES = (SHAPE, SHAPE_PARTS, ALL)
#: The choices the linear and SVM grids compare. "shape" alone was never chosen by an inner search
#: on JAFFE (70 of 70 model-folds took a textured choice) and scores 6-12 points of balanced
#: accuracy below the other two on CK+48 (BENCHMARKS.md, issue 25). The regressors' grids and
#: :class:`GroupSelector` still take it. The forests, XGBoost and the ensemble see "all", the
#: choice their inner searches made most often over CK+48 and JAFFE (12, 14 and 14 of 20 folds).
SEARCHED_GROUPS = (SHAPE_PARTS, ALL)


def resolve_groups(choice, available):
    """A group choice ("shape", "shape_parts", "all" or a tuple of names) -> tuple of the
    table's groups it means, in table order."""
    available = tuple(available)
    if choice == ALL:
        wanted = available
    elif choice == SHAPE:
        wanted = SHAPE_GROUPS
    elif choice == SHAPE_PARTS:
        wanted = SHAPE_GROUPS + PART_GROUPS
    else:
        wanted = tuple(choice)
    return tuple(g for g in available if g in wanted)


def slices_of(groups):
    """{group: slice or (start, stop)} -> {group: (start, stop)} with plain ints."""
    out = {}
    for name, s in dict(groups).items():
        start, stop = (s.start, s.stop) if isinstance(s, slice) else s
        out[str(name)] = (int(start), int(stop))
    return out


class GroupSelector(TransformerMixin, BaseEstimator):
    """Select the columns of named feature groups.

    Parameters
    ----------
    groups : tuple of str, "shape", "shape_parts", "all" or None
        Group names to keep (None or "all": every group in ``slices``; see
        :func:`resolve_groups`). Columns come out in table order whatever the order of
        ``groups``.
    slices : dict
        group name -> (start, stop) column range in the input (``FeatureTable.groups``
        through :func:`slices_of`).
    """

    def __init__(self, groups=None, slices=None):
        self.groups = groups
        self.slices = slices

    def fit(self, X, y=None):
        X = np.asarray(X)
        slices = slices_of(self.slices or {})
        if self.groups is None:
            names = tuple(slices)
        elif isinstance(self.groups, str):
            if self.groups not in GROUP_CHOICES:
                raise ValueError(f"GroupSelector: groups must be a tuple of names or one of {GROUP_CHOICES}")
            names = resolve_groups(self.groups, slices)
        else:
            names = tuple(self.groups)
        if not names:
            raise ValueError("GroupSelector: no feature groups selected")
        missing = [g for g in names if g not in slices]
        if missing:
            raise ValueError(f"GroupSelector: unknown feature groups {missing}; known: {list(slices)}")
        ranges = sorted(slices[g] for g in names)
        if ranges[-1][1] > X.shape[1]:
            raise ValueError(f"GroupSelector: group columns reach {ranges[-1][1]} but X has {X.shape[1]} columns")
        self.columns_ = np.concatenate([np.arange(a, b) for a, b in ranges]).astype(np.int64)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        X = np.asarray(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"GroupSelector: X has {X.shape[1]} columns, fitted on {self.n_features_in_}")
        return X[:, self.columns_]


class _SerialisedBooster:
    """Mixin of the XGBoost estimators: the fitted booster (``booster_``) is kept in XGBoost's own
    UBJSON format when the model is serialised (``__getstate__``), so a saved model holds data,
    never code."""

    def _keep(self, params):
        """Store the ``__init__`` arguments ``params`` (its ``locals()``) untouched, each under its own name."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _tree_params(self):
        return {
            "tree_method": "hist", "max_depth": int(self.max_depth), "eta": float(self.learning_rate),
            "subsample": float(self.subsample), "colsample_bytree": float(self.colsample_bytree),
            "min_child_weight": float(self.min_child_weight), "lambda": float(self.reg_lambda),
            "max_bin": int(self.max_bin), "nthread": int(self.n_jobs), "seed": int(self.random_state), "verbosity": 0,
        }

    def _train(self, params, X, y, weight=None):
        import xgboost as xgb

        data = xgb.DMatrix(X, label=y, weight=weight, nthread=int(self.n_jobs))
        self.booster_ = xgb.train(params, data, num_boost_round=int(self.n_estimators))
        self.n_features_in_ = X.shape[1]
        return self

    def __getstate__(self):
        state = dict(super().__getstate__())
        booster = state.pop("booster_", None)
        if booster is not None:
            state["booster_ubj_"] = bytes(booster.save_raw("ubj"))
        return state

    def __setstate__(self, state):
        """Rebuild the booster from its UBJSON, once its trees have passed
        :func:`classifiers.trees.check_xgboost_ubj` (a model file may come from anywhere)."""
        state = dict(state)
        raw = state.pop("booster_ubj_", None)
        if raw is not None:
            import xgboost as xgb

            from .trees import TreeError, check_xgboost_ubj

            n_features, classes = state.get("n_features_in_"), state.get("classes_")
            regression = isinstance(self, RegressorMixin)  # a regressor has no classes
            if not isinstance(n_features, (int, np.integer)) or not regression and (
                    not isinstance(classes, np.ndarray) or classes.ndim != 1):
                raise TreeError(f"{type(self).__name__}: a booster without its feature count or classes")
            check_xgboost_ubj(raw, int(n_features), None if regression else len(classes))
            booster = xgb.Booster()
            booster.load_model(bytearray(raw))
            state["booster_"] = booster
        super().__setstate__(state)


class XGBoostModel(_SerialisedBooster, ClassifierMixin, BaseEstimator):
    """Multiclass XGBoost (hist trees) with string labels and balanced class weights.

    Labels are encoded to integers internally (``classes_`` keeps the names); with
    ``class_weight="balanced"`` each row is weighted inversely to its class frequency.
    The fitted booster is kept in XGBoost's own UBJSON format when the model is
    serialised (``__getstate__``), so a saved model holds data, never code.

    16 histogram bins per column instead of 64 fit 1.6-2.2x faster on a few hundred faces,
    where most columns have few distinct values anyway; leave-one-subject-out on JAFFE gave
    the same or better accuracy at depth 3 and 6, CK+48 0.6 points less at depth 3
    (BENCHMARKS.md, issue 25).
    """

    def __init__(self, n_estimators=200, max_depth=4, learning_rate=0.1, subsample=0.8,
                 colsample_bytree=0.3, min_child_weight=1.0, reg_lambda=1.0, max_bin=16,
                 class_weight="balanced", n_jobs=1, random_state=0):
        self._keep(locals())

    def _params(self, n_classes):
        return {"objective": "multi:softprob", "num_class": int(n_classes), **self._tree_params(),
                "eval_metric": "mlogloss"}

    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X, dtype=np.float32)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        codes = encoder.transform(y)
        weight = None
        if self.class_weight is not None:
            weight = compute_sample_weight(self.class_weight, codes)
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float64) * (1.0 if weight is None else weight)
        return self._train(self._params(len(self.classes_)), X, codes, weight)

    def predict_proba(self, X):
        check_is_fitted(self, "booster_")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"XGBoostModel: X has shape {X.shape}, fitted on {self.n_features_in_} columns")
        proba = np.asarray(self.booster_.inplace_predict(X), dtype=np.float64)
        return proba.reshape(len(X), len(self.classes_))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class XGBoostRegressor(_SerialisedBooster, RegressorMixin, BaseEstimator):
    """XGBoost regression (hist trees, squared error) for a numeric target such as age in years."""

    def __init__(self, n_estimators=400, max_depth=4, learning_rate=0.05, subsample=0.8, colsample_bytree=0.3,
                 min_child_weight=1.0, reg_lambda=1.0, max_bin=64, n_jobs=1, random_state=0):
        self._keep(locals())

    def fit(self, X, y, sample_weight=None):
        params = {"objective": "reg:squarederror", **self._tree_params(), "eval_metric": "mae"}
        return self._train(params, np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float64), sample_weight)

    def predict(self, X):
        check_is_fitted(self, "booster_")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"XGBoostRegressor: X has shape {X.shape}, fitted on {self.n_features_in_} columns")
        return np.asarray(self.booster_.inplace_predict(X), dtype=np.float64)


# ---- the models ---------------------------------------------------------------------------

def _selector(slices):
    return ("select", GroupSelector(groups=None, slices=slices_of(slices)))


def _rf(seed, n_estimators=300):
    return RandomForestClassifier(n_estimators=n_estimators, max_features="sqrt", min_samples_leaf=1,
                                  class_weight="balanced_subsample", n_jobs=1, random_state=seed)


#: Kernel matrices kept by :func:`kernel_cache` (None: not caching), newest last.
_KERNELS = None


@contextlib.contextmanager
def kernel_cache(max_bytes=6_000_000_000):
    """Context in which :class:`KernelSVC` keeps the kernel matrices it computes (newest last,
    within ``max_bytes`` but always the newest) and reuses them for the same rows, kernel and
    width: a grid search's candidates that differ only in C share one matrix per split. The
    matrices go when the context ends."""
    global _KERNELS
    outer, _KERNELS = _KERNELS, {"max_bytes": int(max_bytes), "matrices": collections.OrderedDict()}
    try:
        yield
    finally:
        _KERNELS = outer


def _kernel_matrix(X, kernel, gamma):
    """The (rows, rows) linear or RBF kernel matrix of float64 ``X``, as sklearn.metrics.pairwise
    computes it, in one array (no second matrix of temporaries), or from :func:`kernel_cache`."""
    key = None
    if _KERNELS is not None:
        key = (kernel, gamma, X.shape, hashlib.blake2b(X.data, digest_size=16).digest())
        matrices = _KERNELS["matrices"]
        if key in matrices:
            matrices.move_to_end(key)
            return matrices[key]
        needed = X.shape[0] ** 2 * 8
        while matrices and sum(m.nbytes for m in matrices.values()) + needed > _KERNELS["max_bytes"]:
            matrices.popitem(last=False)
    gram = np.dot(X, X.T)
    if kernel == "rbf":   # euclidean_distances then rbf_kernel, in place
        squares = np.einsum("ij,ij->i", X, X)
        gram *= -2.0
        gram += squares[:, None]
        gram += squares[None, :]
        np.maximum(gram, 0.0, out=gram)
        np.fill_diagonal(gram, 0.0)
        gram *= -gamma
        np.exp(gram, out=gram)
    if key is not None:
        _KERNELS["matrices"][key] = gram
    return gram


def _free_memory():
    """Bytes of memory available now (Linux's MemAvailable, else the free pages; the kernel
    cache's matrices count as available), or a terabyte where the system does not say."""
    try:
        with open("/proc/meminfo") as fh:
            free = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 40
    return free + (sum(m.nbytes for m in _KERNELS["matrices"].values()) if _KERNELS is not None else 0)


class KernelSVC(SVC):
    """:class:`~sklearn.svm.SVC` (linear or RBF kernel) fitted on its kernel matrix computed at once.

    libsvm computes each kernel value as its own loop over the columns; on a few thousand
    columns that is most of a fit. Here the training rows' kernel matrix comes from one matrix
    product (BLAS), libsvm solves on it (``kernel="precomputed"``), and the solution is kept as the
    ordinary fitted SVC it is: the support vectors are the training rows it names, so
    prediction, decision values, model files and explanations are those of an SVC with this
    kernel, the same solution to rounding, several times faster to fit. Inside
    :func:`kernel_cache` candidates on the same rows share the matrix. Above :attr:`MAX_ROWS`
    training rows (a 7.2 GB matrix: FER-2013's Training part fits, its mirrored copies added do
    not), or where the matrix would not fit in the memory free, libsvm computes the kernel itself.
    """

    MAX_ROWS = 30_000

    def fit(self, X, y, sample_weight=None):
        X = np.ascontiguousarray(X, dtype=np.float64)
        if (self.kernel not in ("linear", "rbf") or X.ndim != 2 or len(X) > self.MAX_ROWS
                or len(X) ** 2 * 8 > _free_memory() - X.nbytes):
            return super().fit(X, y, sample_weight)
        if self.gamma == "scale":   # resolved as SVC.fit does (for either kernel)
            variance = X.var()
            gamma = 1.0 / (X.shape[1] * variance) if variance != 0 else 1.0
        else:
            gamma = 1.0 / X.shape[1] if self.gamma == "auto" else float(self.gamma)
        gram = _kernel_matrix(X, self.kernel, gamma)
        params = {k: v for k, v in self.get_params().items() if k not in ("kernel", "gamma", "degree", "coef0")}
        solved = SVC(kernel="precomputed", **params).fit(gram, y, sample_weight)
        del gram
        settings = solved.get_params()
        for name, value in vars(solved).items():   # what libsvm found: every fitted attribute
            if name not in settings:
                setattr(self, name, value)
        self._gamma, self.support_vectors_ = gamma, X[solved.support_]
        self.shape_fit_, self.n_features_in_ = X.shape, X.shape[1]
        return self

    def _libsvm_decisions(self, X):
        """libsvm's one-against-one decision values (rows, class pairs), from matrix products
        rather than libsvm's loop over every (row, support vector): the RBF kernel between ``X``
        and the support vectors :data:`KERNEL_VALUES` at a time, a linear kernel's weights per
        pair summed over the support vectors once. The same values to rounding, many times
        faster for thousands of support vectors of thousands of columns."""
        check_is_fitted(self, "support_vectors_")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.support_vectors_.shape[1]:
            raise ValueError(f"KernelSVC: X has shape {X.shape}, fitted on {self.support_vectors_.shape[1]} columns")
        counts = np.asarray(self._n_support)
        starts = np.concatenate([[0], np.cumsum(counts)])
        pairs = [(i, j) for i in range(len(counts)) for j in range(i + 1, len(counts))]
        weights = np.zeros((int(starts[-1]), len(pairs)))   # libsvm's coefficients of each pair's SVs
        for p, (i, j) in enumerate(pairs):
            weights[starts[i]:starts[i + 1], p] = self._dual_coef_[j - 1, starts[i]:starts[i + 1]]
            weights[starts[j]:starts[j + 1], p] = self._dual_coef_[i, starts[j]:starts[j + 1]]
        vectors = self.support_vectors_
        if self.kernel == "linear":   # each pair's weights over the columns: one product per row
            return X @ (vectors.T @ weights) + self._intercept_
        vectors_sq = np.einsum("ij,ij->i", vectors, vectors)
        out = np.empty((len(X), len(pairs)))
        step = max(1, KERNEL_VALUES // max(1, len(vectors)))
        for start in range(0, len(X), step):
            x = X[start:start + step]
            k = x @ vectors.T
            k *= -2.0
            k += np.einsum("ij,ij->i", x, x)[:, None]
            k += vectors_sq[None, :]
            np.maximum(k, 0.0, out=k)
            k *= -self._gamma
            np.exp(k, out=k)
            out[start:start + step] = k @ weights
        return out + self._intercept_

    def decision_function(self, X):
        if self.kernel not in ("linear", "rbf"):
            return super().decision_function(X)
        from sklearn.utils.multiclass import _ovr_decision_function

        decisions = self._libsvm_decisions(X)
        if len(self.classes_) == 2:   # sklearn's sign for two classes
            return -decisions.ravel()
        if self.decision_function_shape == "ovr":
            return _ovr_decision_function(decisions < 0, -decisions, len(self.classes_))
        return decisions

    def predict(self, X):
        """libsvm's vote over the class pairs (ties to the first class), as SVC.predict."""
        if self.kernel not in ("linear", "rbf") or self.break_ties or self.probability is True:
            return super().predict(X)
        decisions = self._libsvm_decisions(X)
        n = len(self.classes_)
        votes = np.zeros((len(decisions), n), dtype=np.int64)
        for p, (i, j) in enumerate((i, j) for i in range(n) for j in range(i + 1, n)):
            positive = decisions[:, p] > 0
            votes[:, i] += positive
            votes[:, j] += ~positive
        return self.classes_[np.argmax(votes, axis=1)]


def _svm(kernel, seed, probability):
    """An SVC (:class:`KernelSVC`); with ``probability`` wrapped in sigmoid calibration (3 internal
    folds, one final SVC)."""
    svc = KernelSVC(kernel=kernel, C=1.0, gamma="scale", class_weight="balanced", random_state=seed, cache_size=500)
    if not probability:
        return svc
    return CalibratedClassifierCV(svc, method="sigmoid", cv=StratifiedKFold(3, shuffle=True, random_state=seed),
                                  ensemble=False)


class CappedPCA(PCA):
    """PCA whose ``n_components`` is an upper bound: it keeps only the directions the training
    data really spans. Parameters stay as given.

    Centred data of n rows spans at most n - 1 directions, fewer when rows repeat (the same
    image twice): a component beyond the data's rank has zero variance, and whitening would blow
    its rounding noise up by 1e5 (a face's prediction then depended on which other faces shared
    its batch). Components whose singular value is below numpy's rank tolerance
    (largest singular value x max(n, columns) x machine epsilon, as ``np.linalg.matrix_rank``)
    are dropped after fitting. The ``covariance_eigh`` solver (which "auto" picks for tall,
    narrow tables) squares the data first: its singular values carry rounding noise of about
    sqrt(columns x epsilon) relative (measured: up to 0.6 of that on repeated JAFFE rows), which
    is its tolerance."""

    def _fit(self, X):
        requested = self.n_components
        if isinstance(requested, int):
            self.n_components = max(1, min(requested, X.shape[0] - 1, X.shape[1]))
        try:
            return super()._fit(X)
        finally:
            self.n_components = requested

    def fit(self, X, y=None):
        super().fit(X, y)
        values = self.singular_values_
        eps = np.finfo(values.dtype).eps
        if getattr(self, "_fit_svd_solver", self.svd_solver) == "covariance_eigh":
            relative = np.sqrt(self.n_features_in_ * eps)
        else:
            relative = max(self.n_samples_, self.n_features_in_) * eps
        tolerance = values.max(initial=0.0) * relative
        keep = max(1, int(np.sum(values > tolerance)))
        if keep < self.n_components_:
            for name in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_"):
                setattr(self, name, getattr(self, name)[:keep])
            self.n_components_ = keep
        return self

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


def _svm_pca(seed, probability):
    """RBF SVM for large tables (FER-2013): on 256 whitened principal components the kernel is
    cheap enough for 57k faces. Not class-weighted: on FER-2013 weighting costs accuracy."""
    svc = SVC(kernel="rbf", C=3.0, gamma="scale", random_state=seed, cache_size=2000)
    if not probability:
        return svc
    return CalibratedClassifierCV(svc, method="sigmoid", cv=StratifiedKFold(3, shuffle=True, random_state=seed),
                                  ensemble=False)


def _logreg(seed):
    # lbfgs on more than two classes fits the multinomial (softmax) model
    return LogisticRegression(C=0.1, solver="lbfgs", max_iter=3000, tol=1e-4, class_weight="balanced",
                              random_state=seed)


def _anova():
    """Keep the columns with the largest ANOVA F (between-class over within-class variance) on
    the training rows; ``percentile`` is a grid parameter and 100 keeps every column."""
    return SelectPercentile(f_classif, percentile=100)


def _xgb(seed):
    return XGBoostModel(random_state=seed)


def _components(seed):
    """The steps before an age SVR: 256 principal components of the standardised features (not
    whitened: on UTKFace whitening costs a year of MAE); the components keep the model file small,
    where an SVR on every column would keep each support face's 5,000 values."""
    return [("scale", StandardScaler()), ("pca", CappedPCA(256, whiten=False, svd_solver="randomized", random_state=seed))]


def _svr_groups(seed):
    """:class:`AgeGroupSVR` on :func:`_components`."""
    return _components(seed) + [("model", AgeGroupSVR())]


def _svr_pca(seed):
    """RBF support vector regression on :func:`_components`."""
    return _components(seed) + [("model", SVR(kernel="rbf", C=30.0, gamma=2e-4, epsilon=1.0, cache_size=1000))]


#: Kernel values computed at a time by :func:`predict_regressor` (8 M float64: 64 MB).
KERNEL_VALUES = 8_000_000


def _rbf_kernel_batches(Z, vectors, gamma):
    """(start, RBF kernel values of rows ``Z[start:start + step]`` against every support vector),
    batch by batch: squared distances from one matrix product (numpy's BLAS), in float64 as libsvm."""
    Z = np.asarray(Z, dtype=np.float64)
    vectors_sq = np.einsum("ij,ij->i", vectors, vectors)
    step = max(1, KERNEL_VALUES // max(1, len(vectors)))
    for start in range(0, len(Z), step):
        z = Z[start:start + step]
        d = z @ vectors.T                      # the one (rows, vectors) array of the batch, in place
        d *= -2.0
        d += np.einsum("ij,ij->i", z, z)[:, None]
        d += vectors_sq[None, :]
        np.maximum(d, 0.0, out=d)
        d *= -gamma
        np.exp(d, out=d)
        yield start, d


class AgeGroupSVR(RegressorMixin, BaseEstimator):
    """Apparent age in two steps: a classifier (standardised inputs, logistic regression) picks the
    face's broad age group (``bounds``: 0-12, 13-19, 20-39, 40-59, 60+), then an RBF support vector
    regression fitted on the faces of that group and of its ``window`` neighbouring groups on each
    side estimates the age.

    One SVR for every age (svr_pca) pulls children up and old faces down toward the crowded 20-39
    group; an SVR per range keeps each range's scale (UTKFace, 5-fold: MAE about 6.0 against 6.7
    years, BENCHMARKS.md, issue 22). The SVRs' support vectors are rows of the same training
    inputs: each is stored once (``vectors_``) and the SVRs keep indices into them, so the model
    file holds each support face once however many ranges it supports.
    """

    def __init__(self, bounds=(13, 20, 40, 60), window=1, C=30.0, gamma=2e-4, epsilon=1.0, group_C=0.01):
        self.bounds = bounds
        self.window = window
        self.C = C
        self.gamma = gamma
        self.epsilon = epsilon
        self.group_C = group_C

    def fit(self, X, y, sample_weight=None):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        groups = np.digitize(y, self.bounds)
        variance = X.var()
        if self.gamma == "scale":   # as scikit-learn's SVR: 1 / (columns x variance), 1 for constant inputs
            self.gamma_ = float(1.0 / (X.shape[1] * variance)) if variance > 0 else 1.0
        else:
            self.gamma_ = float(self.gamma)
        self.classifier_ = Pipeline([("scale", StandardScaler()),
                                     ("model", LogisticRegression(C=self.group_C, max_iter=3000))])
        present = np.unique(groups)
        if len(present) > 1:
            self.classifier_.fit(X, groups, model__sample_weight=sample_weight)
        else:   # one age group only: nothing to choose
            self.classifier_ = None
        self.groups_ = present
        supports, coefs, intercepts = [], [], []
        for g in present:
            rows = np.flatnonzero(np.abs(groups - g) <= self.window)
            svr = SVR(kernel="rbf", C=self.C, gamma=self.gamma_, epsilon=self.epsilon, cache_size=1000)
            svr.fit(X[rows], y[rows], sample_weight=None if sample_weight is None else np.asarray(sample_weight)[rows])
            supports.append(rows[svr.support_])
            coefs.append(svr.dual_coef_.ravel().astype(np.float64))
            intercepts.append(float(svr.intercept_[0]))
        union, inverse = np.unique(np.concatenate(supports), return_inverse=True)
        self.vectors_ = X[union]
        self.member_offsets_ = np.cumsum([0] + [len(s) for s in supports])
        self.member_index_ = inverse.astype(np.int64)
        self.member_coef_ = np.concatenate(coefs)
        self.intercepts_ = np.array(intercepts)
        self.n_features_in_ = X.shape[1]
        return self

    def problems(self, n_inputs=None):
        """Why the fitted arrays do not fit together, as short texts ([]: they do). A model file is
        refused on load for any of them (:func:`classifiers.artifact.load_model`): ``predict`` indexes
        the support vectors with ``member_index_`` between ``member_offsets_``, so a damaged or
        hostile file would otherwise fail, allocate without bound or estimate nonsense there.
        ``n_inputs``: the number of values each input row has (the PCA's components)."""
        try:
            vectors, offsets = np.asarray(self.vectors_), np.asarray(self.member_offsets_)
            index, coef = np.asarray(self.member_index_), np.asarray(self.member_coef_)
            intercepts, groups, gamma = np.asarray(self.intercepts_), np.asarray(self.groups_), self.gamma_
            classifier = self.classifier_
        except AttributeError as exc:
            return [f"a fitted part is missing ({exc})"]
        if vectors.ndim != 2 or vectors.dtype.kind != "f" or (n_inputs is not None and vectors.shape[1] != n_inputs):
            return ["the support vectors are not rows of the model's inputs"]
        if groups.ndim != 1 or not len(groups) or groups.dtype.kind not in "iu" or np.any(np.diff(groups) <= 0):
            return ["the age groups are not a sorted list of distinct group numbers"]
        n = len(groups)
        if (offsets.dtype.kind not in "iu" or offsets.shape != (n + 1,) or offsets[0] != 0
                or np.any(np.diff(offsets) < 0) or offsets[-1] != len(index)):
            return ["the groups' member offsets do not fit their members"]
        if index.dtype.kind not in "iu" or index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= len(vectors))):
            return ["a group's member is not one of the support vectors"]
        if any(len(np.unique(index[a:b])) != b - a for a, b in zip(offsets[:-1], offsets[1:])):
            return ["a group names a support vector twice"]
        if coef.shape != index.shape or coef.dtype.kind != "f" or intercepts.shape != (n,) or intercepts.dtype.kind != "f":
            return ["the coefficients do not fit the groups' members"]
        if not isinstance(gamma, (int, float)) or not np.isfinite(gamma) or gamma <= 0:
            return ["the kernel width is not a positive number"]
        if n == 1 and classifier is not None or n > 1 and (
                classifier is None or [int(c) for c in getattr(classifier, "classes_", [])] != groups.tolist()
                or getattr(classifier, "n_features_in_", None) != vectors.shape[1]):
            return ["the group classifier does not choose among the model's age groups"]
        return []

    def predict_group(self, X):
        """Index into ``groups_`` of each row's chosen age group."""
        check_is_fitted(self, "vectors_")
        if self.classifier_ is None:
            return np.zeros(len(X), dtype=np.int64)
        return np.searchsorted(self.groups_, self.classifier_.predict(np.asarray(X, dtype=np.float64)))

    def predict(self, X):
        chosen = self.predict_group(X)
        out = np.empty(len(X))
        for start, kernel in _rbf_kernel_batches(X, self.vectors_, self.gamma_):
            for k in np.unique(chosen[start:start + len(kernel)]):
                rows = np.flatnonzero(chosen[start:start + len(kernel)] == k)
                part = slice(self.member_offsets_[k], self.member_offsets_[k + 1])
                out[start + rows] = kernel[rows][:, self.member_index_[part]] @ self.member_coef_[part] \
                    + self.intercepts_[k]
        return out


def _rbf_decision(svm, Z):
    """The decision values of a fitted RBF SVR, or of a binary RBF SVC (sklearn's sign), on rows
    ``Z`` (already through the pipeline's earlier steps): kernel batches by matrix products."""
    vectors = np.asarray(svm.support_vectors_, dtype=np.float64)
    coef = np.asarray(svm.dual_coef_, dtype=np.float64).ravel()
    out = np.empty(len(Z))
    for start, kernel in _rbf_kernel_batches(Z, vectors, svm._gamma):
        out[start:start + len(kernel)] = kernel @ coef
    return out + float(svm.intercept_[0])


def _batched_rbf(svm):
    """True where :func:`_rbf_decision` can stand in for libsvm: an RBF kernel of a resolved width."""
    return svm.kernel == "rbf" and isinstance(getattr(svm, "_gamma", None), (int, float))


def predict_regressor(pipeline, X):
    """``pipeline.predict(X)`` of a fitted regressor pipeline, faster where it ends in an RBF SVR.

    libsvm evaluates an RBF SVR one (row, support vector) pair at a time; here the squared
    distances of a batch of rows to every support vector come from one matrix product (numpy's
    BLAS), then exp and a dot with the dual coefficients: the same estimate (to rounding, in
    float64 as libsvm) about ten times faster for the age model's 8,289 support vectors, which
    is what a SHAP explanation of an age estimate spends its time on.
    """
    final = pipeline.steps[-1][1]
    if not (isinstance(final, SVR) and _batched_rbf(final)):
        return pipeline.predict(X)
    Z = pipeline[:-1].transform(X) if len(pipeline.steps) > 1 else X
    return _rbf_decision(final, Z)


def predict_proba(pipeline, X):
    """``pipeline.predict_proba(X)`` of a fitted classifier pipeline, faster where it ends in a
    binary RBF SVC with Platt scaling (the gender model, svm_pca): the SVC's decision values as in
    :func:`predict_regressor`, then the fitted sigmoid. The same probabilities to rounding; a SHAP
    explanation of the gender model spent 90% of its time in libsvm's decision function. Anything
    else (another calibration, a bare estimator) answers through its own ``predict_proba``."""
    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
    fitted = getattr(final, "calibrated_classifiers_", None)
    if not (isinstance(final, CalibratedClassifierCV) and final.method == "sigmoid" and fitted is not None
            and len(fitted) == 1
            and len(final.classes_) == 2 and isinstance(fitted[0].estimator, SVC) and _batched_rbf(fitted[0].estimator)
            and len(fitted[0].calibrators) == 1):
        return pipeline.predict_proba(X)
    Z = pipeline[:-1].transform(X) if len(pipeline.steps) > 1 else X
    positive = np.clip(fitted[0].calibrators[0].predict(_rbf_decision(fitted[0].estimator, Z)), 0.0, 1.0)
    return np.column_stack([1.0 - positive, positive])


def make_pipeline(name, slices, seed=0, probability=True):
    """The pipeline of model ``name`` (see :data:`MODELS`, and :data:`REGRESSORS` for a numeric
    target such as age) over a table with group ``slices``.

    ``probability=False`` lets the SVMs skip Platt scaling (faster; no predict_proba),
    which a benchmark that only needs labels can afford.
    """
    _entry(name)
    if name == "ridge":
        steps = [("scale", StandardScaler()), ("model", Ridge(alpha=3000.0))]
    elif name == "svr_pca":
        steps = _svr_pca(seed)
    elif name == "svr_groups":
        steps = _svr_groups(seed)
    elif name == "xgboost_reg":
        steps = [("model", XGBoostRegressor(random_state=seed))]
    elif name == "rf":
        steps = [("model", _rf(seed))]
    elif name == "svm_rbf":
        steps = [("scale", StandardScaler()), ("model", _svm("rbf", seed, probability))]
    elif name == "svm_linear":
        steps = [("scale", StandardScaler()), ("model", _svm("linear", seed, probability))]
    elif name == "svm_pca":
        steps = [("scale", StandardScaler()), ("pca", CappedPCA(256, whiten=True, svd_solver="randomized", random_state=seed)),
                 ("model", _svm_pca(seed, probability))]
    elif name == "xgboost":
        steps = [("model", _xgb(seed))]
    elif name == "logreg":
        steps = [("scale", StandardScaler()), ("anova", _anova()), ("model", _logreg(seed))]
    elif name == "logreg_au":
        steps = [("scale", StandardScaler()), ("model", _logreg(seed))]
    else:  # ensemble: soft voting over differently biased models
        voting = VotingClassifier([
            ("logreg", Pipeline([("scale", StandardScaler()), ("model", _logreg(seed))])),
            ("svm", Pipeline([("scale", StandardScaler()), ("model", _svm("rbf", seed, True))])),
            ("rf", _rf(seed, 150)),
        ], voting="soft")
        steps = [("model", voting)]
    pipeline = Pipeline([_selector(slices)] + steps)
    if name == "logreg_au":
        pipeline.set_params(select__groups=EXPLAINABLE_GROUPS)
    return pipeline


#: logreg's C values, with and without the ANOVA filter. C = 1 was never chosen (0 of 20 inner
#: searches over CK+48 and JAFFE, and 0.506 against 0.561 for C = 0.01 on FER-2013's held-out
#: fifth of Training) and was the slowest candidate to fit (117 s against 56 s there).
LOGREG_C = [0.001, 0.003, 0.01, 0.03, 0.1]
#: name -> (description, full grid, quick grid). Grid keys are Pipeline parameter names; a grid
#: is a dict of lists or a list of such dicts (sub-grids searched together, as in GridSearchCV).
MODELS = {
    "rf": ("Random Forest (300 trees, sqrt(columns) per split, balanced subsample weights)",
           {"select__groups": [ALL], "model__min_samples_leaf": [1, 3]},
           {"select__groups": [ALL], "model__n_estimators": [200]}),
    "svm_rbf": ("SVM, RBF kernel, standardised features, balanced class weights",
                {"select__groups": list(SEARCHED_GROUPS), "model__C": [0.3, 1, 10], "model__gamma": [1e-4]},
                {"select__groups": [SHAPE_PARTS, ALL], "model__C": [10]}),
    "svm_linear": ("SVM, linear kernel, standardised features, balanced class weights",
                   {"select__groups": list(SEARCHED_GROUPS), "model__C": [0.0001, 0.001, 0.01, 0.1, 1]},
                   {"select__groups": [SHAPE_PARTS, ALL], "model__C": [0.01]}),
    "svm_pca": ("SVM, RBF kernel on 256 whitened principal components of the standardised features",
                {"select__groups": [ALL], "model__C": [1, 3, 10]},
                {"select__groups": [ALL], "model__C": [3]}),
    "xgboost": ("XGBoost, hist trees of depth 4, 200 rounds, balanced sample weights",
                {"select__groups": [ALL], "model__max_depth": [4], "model__n_estimators": [200]},
                {"select__groups": [ALL], "model__n_estimators": [60], "model__max_depth": [3],
                 "model__colsample_bytree": [0.2]}),
    "logreg": ("Multinomial logistic regression, standardised features (all, or the 40% or 60% with the "
               "largest ANOVA F on the training rows), balanced class weights",
               [{"select__groups": list(SEARCHED_GROUPS), "model__C": LOGREG_C},
                {"select__groups": [ALL], "anova__percentile": [40, 60], "model__C": LOGREG_C}],
               [{"select__groups": [SHAPE_PARTS, ALL], "model__C": [0.01]},
                {"select__groups": [ALL], "anova__percentile": [60], "model__C": [0.01]}]),
    "logreg_au": ("Explainable: multinomial logistic regression on the named action-unit and geometric "
                  "features only",
                  {"select__groups": [EXPLAINABLE_GROUPS], "model__C": [0.01, 0.1, 1, 10]},
                  {"select__groups": [EXPLAINABLE_GROUPS], "model__C": [0.1]}),
    "ensemble": ("Soft-voting ensemble of logistic regression, calibrated RBF SVM and Random Forest (150 trees)",
                 {"select__groups": [ALL], "model__svm__model__C": [1], "model__logreg__model__C": [0.01]},
                 {"select__groups": [ALL], "model__svm__model__C": [10], "model__logreg__model__C": [0.01]}),
}
MODEL_NAMES = tuple(MODELS)
#: The default models from the costliest search to the cheapest, by fit time on FER-2013 with the
#: full grids (logreg 1,322 s, rf 942, svm_linear 913, ensemble 821, svm_rbf 482, xgboost 424,
#: logreg_au 4; BENCHMARKS.md "Everyday jobs"). A benchmark starts the costliest first, so that
#: its workers finish together instead of one running a long search alone at the end: that decides
#: the wall time where a protocol has one fold and so only seven tasks (FER-2013's official split).
COSTLIEST_FIRST = ("logreg", "rf", "svm_linear", "ensemble", "svm_rbf", "xgboost", "logreg_au")


def costliest_first(names):
    """``names`` in the order a benchmark starts their searches: :data:`COSTLIEST_FIRST`, then
    any other name in its given order."""
    return sorted(names, key=lambda name: COSTLIEST_FIRST.index(name) if name in COSTLIEST_FIRST
                  else len(COSTLIEST_FIRST))
#: What a benchmark compares unless told otherwise (svm_pca needs a large table).
DEFAULT_MODELS = tuple(n for n in MODEL_NAMES if n != "svm_pca")

#: The regressors, for a numeric target (age in years): name -> (description, full grid, quick grid).
REGRESSORS = {
    "ridge": ("Ridge regression, standardised features",
              {"select__groups": list(GROUP_CHOICES), "model__alpha": [1000, 3000, 10000, 30000]},
              {"select__groups": [ALL], "model__alpha": [3000]}),
    "svr_pca": ("Support vector regression, RBF kernel, on 256 principal components of the standardised features",
                {"select__groups": [ALL], "model__C": [10, 30, 100], "model__gamma": ["scale", 2e-4]},
                {"select__groups": [ALL], "model__C": [30], "model__gamma": [2e-4]}),
    # gamma 1.5e-4: svr_pca's 2e-4 scaled to the 7,093 columns of a table with face_lbp (5,173 without)
    "svr_groups": ("Per age group: a logistic regression picks the broad age group (0-12, 13-19, 20-39, 40-59, "
                   "60+), then an RBF SVR fitted on that group and its neighbours estimates the age; on 256 "
                   "principal components of the standardised features",
                   {"select__groups": [ALL], "model__C": [10, 30, 100], "model__gamma": ["scale", 1.5e-4]},
                   {"select__groups": [ALL], "model__C": [30], "model__gamma": [1.5e-4]}),
    "xgboost_reg": ("XGBoost regression, hist trees, squared error (400 rounds, learning rate 0.05)",
                    {"select__groups": [ALL], "model__max_depth": [3, 5]},
                    {"select__groups": [ALL], "model__max_depth": [4]}),
}
REGRESSOR_NAMES = tuple(REGRESSORS)
DEFAULT_REGRESSORS = REGRESSOR_NAMES


#: Settings a grid search fits its candidates with where a cheaper stand-in ranks them as the model
#: itself does; the winner is then fitted with the model's own settings. A forest of 100 trees
#: ranks leaf sizes as one of 300 does at a third of the cost (BENCHMARKS.md, issue 25).
SEARCH_STAND_INS = {"rf": {"model__n_estimators": 100}}


def search_stand_in(name, pipe):
    """Pipeline ``pipe`` of model ``name`` as its grid search fits the candidates: a copy with
    the settings of :data:`SEARCH_STAND_INS`, or ``pipe`` itself."""
    from sklearn.base import clone

    settings = SEARCH_STAND_INS.get(name)
    return clone(pipe).set_params(**settings) if settings else pipe


def _entry(name):
    """The (description, full grid, quick grid) of a classifier or regressor; ValueError if unknown."""
    if name in MODELS:
        return MODELS[name]
    if name in REGRESSORS:
        return REGRESSORS[name]
    raise ValueError(f"unknown model {name!r}; choose from {list(MODELS) + list(REGRESSORS)}")


def is_regressor(name):
    """True for the models of :data:`REGRESSORS` (a numeric target), False for the classifiers."""
    return _entry(name) is REGRESSORS.get(name)


def param_grid(name, quick=False, probability=True, groups=None):
    """The grid (dict of lists, or list of them) of model ``name``; ``quick`` gives the small one.

    Pass the same ``probability`` as to :func:`make_pipeline` (calibrated SVMs nest their
    parameters one level deeper) and the table's ``groups`` (names or the groups dict) so
    group choices become tuples of the groups it has (duplicates and empty ones dropped).
    """
    grid = _entry(name)[2 if quick else 1]
    if isinstance(grid, list):
        return [_resolve_grid(name, sub, probability, groups) for sub in grid]
    return _resolve_grid(name, grid, probability, groups)


def _resolve_grid(name, grid, probability, groups):
    out = {}
    for key, values in grid.items():
        if key.startswith("model__svm__model__") or (probability and name.startswith("svm_") and key.startswith("model__")):
            key = key.replace("model__", "model__estimator__", 1) if name.startswith("svm_") else \
                key.replace("model__svm__model__", "model__svm__model__estimator__", 1)
        if key == "select__groups" and groups is not None:
            resolved = [resolve_groups(v, groups) for v in values]
            values = [v for i, v in enumerate(resolved) if v and v not in resolved[:i]]
        out[key] = list(values)
    return out


def describe(name):
    return _entry(name)[0]
