"""The search: every model of the registry (classifiers.models) fitted on the same outer folds.

Each (model, fold) task searches the model's grid by the protocol's inner CV on the training
part only, refits the best candidate and predicts the test part; :func:`search_models` runs
the tasks (here or on a Dask cluster) and turns their predictions into one
:class:`~classifiers.results.ModelResult` per model.
"""

import collections
import contextlib
import json
import sys
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import GridSearchCV, ParameterGrid

from common.labels import AGE_GROUP_NAMES

from .models import costliest_first, describe, kernel_cache, make_pipeline, param_grid, search_stand_in
from .results import AgeBaseline, AgeModelResult, AgeScores, Baseline, ModelResult, Scores, scores_by_age_group

#: Features per class in the importance chart and results.json.
TOP_FEATURES = 8


def _set_threads(pipe, n):
    """Let the final model use ``n`` threads (when it runs alone, not inside a parallel search)."""
    from sklearn.linear_model import LogisticRegression

    params = {k: n for k, v in pipe.get_params().items()
              if k.endswith("__n_jobs") and not isinstance(pipe.get_params().get(k[:-len("__n_jobs")]), LogisticRegression)}
    if params:
        pipe.set_params(**params)
    return pipe


def scoring(data):
    """What the grid searches maximise: balanced accuracy for classes, minus the MAE for age."""
    return "neg_mean_absolute_error" if data.regression else "balanced_accuracy"


def fit_search(name, data, train, protocol, quick, seed, jobs=1, probability=False):
    """Fit model ``name`` on rows ``train`` with its grid searched by the inner CV.

    Returns (fitted pipeline, best params, seconds). A one-candidate grid is just fitted.
    """
    pipe = make_pipeline(name, data.groups, seed, probability=probability)
    grid = param_grid(name, quick, probability=probability, groups=data.groups)
    X, y = data.X[train], data.y[train]
    weights = data.fit_params(train) if hasattr(data, "fit_params") else {}
    started = time.perf_counter()
    if len(ParameterGrid(grid)) == 1:
        best = ParameterGrid(grid)[0]
    else:
        groups = protocol.groups[train] if protocol.groups is not None else None
        if protocol.inner_holdout:
            grid = group_by_group(grid)
        search = GridSearchCV(search_stand_in(name, pipe), grid, scoring=scoring(data),
                              cv=protocol.inner_cv(y, groups, train), n_jobs=jobs, refit=False, error_score="raise")
        with kernel_cache() if jobs == 1 else contextlib.nullcontext():
            search.fit(X, y, groups=groups, **weights)
        best = search.best_params_
    model = _set_threads(pipe.set_params(**best), jobs).fit(X, y, **weights)
    return model, best, time.perf_counter() - started


def group_by_group(grid):
    """``grid`` (a dict of lists, or a list of them) as sub-grids of one group choice each, so
    the search fits every candidate of one choice before the next: with one inner split
    (a large table's), consecutive SVM candidates then share their kernel matrix
    (:func:`~classifiers.models.kernel_cache`, which keeps one matrix of a large table)."""
    out = []
    for sub in grid if isinstance(grid, list) else [grid]:
        choices = sub.get("select__groups", [])
        out.extend([dict(sub, select__groups=[choice]) for choice in choices] if len(choices) > 1 else [sub])
    return out


def single_blas_thread():
    """Context: BLAS on one thread. Multithreaded OpenBLAS on a busy machine spin-waits and
    makes logistic regression 10-30x slower; parallelism comes from processes instead."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


#: Models whose per-face contributions are exact and cheap (native, or SHAP's TreeExplainer).
EXPLAINED_MODELS = ("logreg", "logreg_au", "xgboost", "rf", "ridge", "xgboost_reg")
#: Test faces per class and fold whose explanations feed the feature-importance chart.
EXPLAIN_ROWS = 40


def fold_importance(pipeline, data, test, seed=0):
    """{class: (faces explained, {feature unit: sum of their contributions toward the true class})}
    on test rows; for an age regressor {age group: (faces, {unit: sum of their contributions to
    those faces' estimates, in years})}. Units the fold's model does not use (dropped by its group
    selection or filter) are absent."""
    from features.describe import FeatureConfig

    from .artifact import Model
    from .explain import explain

    model = Model(pipeline=pipeline, labels=[str(c) for c in getattr(pipeline, "classes_", [])],
                  config=FeatureConfig.from_dict(data.config), meta={"target": data.target})
    rng = np.random.default_rng(seed)
    out = {}
    if data.regression:
        test_groups = data.age_groups()[test]
        groups = [(name, test[test_groups == name], None) for name in AGE_GROUP_NAMES]
    else:
        groups = [(label, test[data.y[test] == label], k) for k, label in enumerate(model.labels)]
    for label, rows, k in groups:
        if len(rows) == 0:
            continue
        rows = rng.choice(rows, min(EXPLAIN_ROWS, len(rows)), replace=False)
        explanations = explain(model, data.X[rows], class_index=k)
        total = np.sum([e.contributions for e in explanations], axis=0)
        out[label] = (len(rows), {unit: float(v) for unit, v in zip(explanations[0].units, total)})
    return out


def top_features(fold_results, n=TOP_FEATURES):
    """{class: [[unit, mean contribution], ...]}: the ``n`` units with the largest summed
    contribution over the folds' :func:`fold_importance` results. The mean is over every face
    explained for the class: where a fold's model does not use a unit, the unit contributed
    nothing to those faces, so they count with 0 rather than being left out of its mean."""
    faces = collections.Counter()
    totals = collections.defaultdict(collections.Counter)
    for result in fold_results:
        for label, (count, units) in (result or {}).items():
            faces[label] += count
            totals[label].update(units)
    return {label: [[unit, round(total / faces[label], 4)]
                    for unit, total in sorted(totals[label].items(), key=lambda kv: -abs(kv[1]))[:n]]
            for label in sorted(totals)}


def _fold_task(name, data, fold_index, train, test, protocol, quick, seed, jobs):
    with single_blas_thread():
        model, best, seconds = fit_search(name, data, train, protocol, quick, seed, jobs)
        started = time.perf_counter()
        predicted = model.predict(data.X[test])
        predict_seconds = time.perf_counter() - started
        importance = fold_importance(model, data, test, seed) if name in EXPLAINED_MODELS else None
    return name, fold_index, predicted, best, seconds, predict_seconds, importance


def _params_text(params):
    """Grid parameters as JSON values (tuples as lists), sorted by name."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(params.items())}


def majority_baseline(data, protocol, classes):
    """The majority-class predictor's :class:`Baseline`, fitted per fold like the models (with
    figures per age group where the table has ages); for the age target the mean-age estimate's
    :class:`AgeBaseline`."""
    tested = protocol.tested_rows()
    predicted = np.empty(len(data.y), dtype=object)
    for train, test in protocol.folds:
        if data.regression:
            predicted[test] = float(np.mean(data.y[train]))
        else:
            values, counts = np.unique(data.y[train], return_counts=True)
            predicted[test] = values[np.argmax(counts)]
    if data.regression:
        return AgeBaseline(**vars(AgeScores.compute(data.y[tested], predicted[tested].astype(float))))
    y_pred = predicted[tested].astype(str)
    return Baseline(**vars(Scores.compute(data.y[tested], y_pred, classes)),
                    per_age_group=_per_age_group(data, tested, y_pred))


def _per_age_group(data, rows, y_pred):
    """scores_by_age_group of class predictions on ``rows``, or None when the table has no ages."""
    ages = data.ages[rows]
    return scores_by_age_group(data.y[rows], y_pred, ages) if np.all(np.isfinite(ages)) and len(ages) else None


def search_models(data, models, protocol, classes, quick=False, seed=0, jobs=1, progress=True, backend="local"):
    """Search and test every model in ``models`` on every fold of ``protocol``: one
    :class:`ModelResult` per model, in the order of ``models``.

    Under ``backend="dask"`` (inside :func:`common.parallel.compute_backend`) every
    (model, fold) task goes to the cluster.
    """
    from tqdm import tqdm

    n_folds = len(protocol.folds)
    if backend == "dask":
        # many folds: each (model, fold) fit is one cluster task; one fold (FER-2013): the grid
        # search's candidates x inner splits go to the cluster instead
        outer_jobs, inner_jobs = (-1, 1) if n_folds > 1 else (1, -1)
    else:   # (model, fold) tasks side by side, one core each: one fold's models too (FER-2013)
        outer_jobs = max(1, min(jobs, n_folds * len(models)))
        inner_jobs = 1 if outer_jobs > 1 else max(1, jobs)
    tasks = [delayed(_fold_task)(name, data, i, train, test, protocol, quick, seed, inner_jobs)
             for name in costliest_first(models) for i, (train, test) in enumerate(protocol.folds)]
    predictions = {name: np.empty(len(data.y), dtype=float if data.regression else object) for name in models}
    per_fold = {name: [None] * n_folds for name in models}
    bar = tqdm(total=len(tasks), unit="fold", desc="benchmark", disable=not progress, file=sys.stderr)
    stream = (Parallel(n_jobs=outer_jobs, return_as="generator_unordered")(tasks) if outer_jobs != 1
              else (fn(*a, **k) for fn, a, k in tasks))
    importance = {name: [None] * n_folds for name in models}   # by fold: sums in a fixed order
    for name, i, predicted, best, seconds, predict_seconds, fold_imp in stream:
        predictions[name][protocol.folds[i][1]] = predicted
        per_fold[name][i] = (best, seconds, predict_seconds)
        importance[name][i] = fold_imp
        bar.set_postfix_str(f"{name} fold {i + 1}/{n_folds}")
        bar.update(1)
    bar.close()
    result = _age_model_result if data.regression else _model_result
    return [result(name, data, protocol, classes, predictions[name], per_fold[name], importance[name])
            for name in models]


def _fit_record(name, per_fold, n_tested):
    """What every model result says about how it was fitted, from its folds' (best params, fit
    seconds, predict seconds): its description, the grid points chosen and the times."""
    bests = [_params_text(b) for b, _, _ in per_fold]
    common = collections.Counter(json.dumps(b, sort_keys=True) for b in bests).most_common(1)[0][0]
    return dict(name=name, description=describe(name), best_params=json.loads(common), best_params_per_fold=bests,
                fit_seconds=round(float(np.mean([s for _, s, _ in per_fold])), 3),
                predict_ms_per_face=round(1000.0 * sum(p for _, _, p in per_fold) / n_tested, 4))


def _model_result(name, data, protocol, classes, predictions, per_fold, importance):
    """One model's :class:`ModelResult` from its predictions (one per row, on the tested rows) and its
    folds' (best params, fit seconds, predict seconds) and :func:`fold_importance` results."""
    tested = protocol.tested_rows()
    y_true, y_pred = data.y[tested], predictions[tested].astype(str)
    fold_acc = [float(accuracy_score(data.y[test], predictions[test].astype(str))) for _, test in protocol.folds]
    subsets = {}
    for subset, mask in protocol.subsets.items():
        rows = np.flatnonzero(mask)
        subsets[subset] = Scores.compute(data.y[rows], predictions[rows].astype(str), classes)
    return ModelResult(
        **_fit_record(name, per_fold, len(tested)), **vars(Scores.compute(y_true, y_pred, classes)),
        fold_accuracy_mean=round(float(np.mean(fold_acc)), 4), fold_accuracy_std=round(float(np.std(fold_acc)), 4),
        subsets=subsets, confusion_matrix=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        top_features=top_features(importance) or None, per_age_group=_per_age_group(data, tested, y_pred))


def _age_model_result(name, data, protocol, classes, predictions, per_fold, importance):
    """One age regressor's :class:`AgeModelResult`, as :func:`_model_result` for classifiers."""
    tested = protocol.tested_rows()
    fold_mae = [float(np.mean(np.abs(predictions[test] - data.y[test]))) for _, test in protocol.folds]
    return AgeModelResult(
        **_fit_record(name, per_fold, len(tested)), **vars(AgeScores.compute(data.y[tested], predictions[tested])),
        fold_mae_mean=round(float(np.mean(fold_mae)), 3), fold_mae_std=round(float(np.std(fold_mae)), 3),
        top_features=top_features(importance) or None)
