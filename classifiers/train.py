"""Fit one model on feature tables and save it as one model file.

    python -m classifiers.train FEATURES_FILE... -o MODEL_FILE [--model NAME] [--quick] [--labels a,b,...]
                                [--target label|gender|age] [--holdout 0.2]

The grid is searched with CV grouped by subject where subjects are known (rows without a
subject are their own group; age and gender: stratified by age group), then the best pipeline
is refitted on every row, or with ``--holdout`` on every row but a seeded held-out share, whose
figures go into the model file. An age model also records the ranges its estimates come with
(:mod:`classifiers.age`).
"""

import collections
import os
import time

import click
import numpy as np
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedGroupKFold

from common.cli import backend_options, command, ferplus_options, jobs_option, one_line, quiet_option, scheme_option, target_option
from common.errors import DatasetError, FacialExpressionError, IncompatibleModelError
from common.files import output_lock
from common.labels import EMOTIONS

from .artifact import save_model
from .data import load_training_data
from .explain import has_native
from .models import (MODEL_NAMES, REGRESSOR_NAMES, SEARCH_STAND_INS, describe, is_regressor, make_pipeline, param_grid,
                     search_stand_in)
from .protocol import holdout_split, stratified_splits
from .results import AgeScores, BenchmarkResult, Scores, scores_by_age_group, versions
from .search import _params_text, _set_threads, scoring, single_blas_thread

TERMS = ("Trained on research datasets ({datasets}); a model trained on them carries their research-only, "
         "non-commercial terms.")


def train_model(data, name="logreg", quick=False, seed=0, jobs=1, cv_folds=3, progress=True):
    """Grid-search (grouped CV) and refit model ``name`` on all of ``data``.

    Returns (fitted pipeline, summary dict).
    """
    with single_blas_thread():
        return _train_model(data, name, quick, seed, jobs, cv_folds, progress)


def _train_model(data, name, quick, seed, jobs, cv_folds, progress):
    pipe = make_pipeline(name, data.groups, seed, probability=True)
    grid = param_grid(name, quick, probability=True, groups=data.groups)
    started = time.perf_counter()
    summary = {"model": name, "description": describe(name), "quick": bool(quick), "seed": int(seed)}
    if len(ParameterGrid(grid)) == 1:
        best = ParameterGrid(grid)[0]
        model = _set_threads(pipe.set_params(**best), jobs).fit(data.X, data.y, **data.fit_params())
        summary.update(best_params=_params_text(best), search="one candidate: fitted directly, no CV")
    else:
        groups = data.cv_groups()
        cv, n, grouped = _search_cv(data, groups, cv_folds, seed)
        search = GridSearchCV(search_stand_in(name, pipe), grid, scoring=scoring(data), cv=cv, n_jobs=jobs, refit=False,
                              verbose=1 if progress else 0, error_score="raise")
        search.fit(data.X, data.y, groups=groups, **data.fit_params())
        best = search.best_params_
        model = _set_threads(pipe.set_params(**best), jobs).fit(data.X, data.y, **data.fit_params())
        if data.regression:
            summary["cv_mae"] = round(-float(search.best_score_), 3)
        else:
            summary["cv_balanced_accuracy"] = round(float(search.best_score_), 4)
        summary.update(best_params=_params_text(best),
                       search=f"GridSearchCV over {len(ParameterGrid(grid))} candidates, {n}-fold {grouped}, "
                              f"scoring {'mean absolute error' if data.regression else 'balanced accuracy'}"
                              + (f"; candidates fitted with {SEARCH_STAND_INS[name]}, the winner with the model's "
                                 f"own settings" if name in SEARCH_STAND_INS else ""))
    summary["training_seconds"] = round(time.perf_counter() - started, 1)
    return model, summary


def check_configuration(data, path):
    """The tables' feature configuration is one this code makes, and gives the tables' columns: what
    save_model requires, checked before the grid search rather than after it. Raises DatasetError."""
    from features.describe import FeatureConfig

    try:
        config = FeatureConfig.from_dict(data.config)
    except (IncompatibleModelError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: {one_line(exc)[:150]}") from None
    if list(config.columns()[0]) != [str(c) for c in data.columns]:
        raise DatasetError(f"{path}: the table's columns are not the ones its feature configuration gives "
                           f"(re-extract it)")


def _search_cv(data, groups, cv_folds, seed):
    """(CV splitter or splits, folds, how it splits in words) of the grid search on ``data``."""
    if data.target in ("age", "gender"):  # as the benchmark's folds: stratified by age group
        cv = stratified_splits(data.age_groups(), groups if np.any(data.augmented) else None, cv_folds, seed)
        return cv, len(cv), "CV stratified by age group (mirrored copies with their originals)"
    n = max(2, min(cv_folds, len(np.unique(groups))))
    grouped = "by subject (rows without one are their own group)" if np.any(data.subjects != "") else \
        "stratified (no subjects known)"
    return StratifiedGroupKFold(n, shuffle=True, random_state=seed), n, f"StratifiedGroupKFold {grouped}"


def age_range_table(model, data, seed=0, cv_folds=3, jobs=1):
    """The ranges of an age model's estimates (:func:`classifiers.age.range_table`) from the
    out-of-fold estimates of ``data``'s original faces: ``model``'s settings refitted on each
    training part of the same CV as its grid search."""
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    from .age import range_table

    groups = data.cv_groups()
    cv, _, _ = _search_cv(data, groups, cv_folds, seed)
    with single_blas_thread():
        estimates = cross_val_predict(clone(model), data.X, data.y, groups=groups, cv=cv, n_jobs=jobs)
    return range_table(estimates[~data.augmented], data.y[~data.augmented])


def holdout_figures(model, data, train, test, ranges=None):
    """The figures of ``model`` (fitted on rows ``train``) on the held-out rows ``test``, beside the
    trivial predictor's fitted on ``train`` (mean age, or majority class); per age group where the
    table has ages; for age also the share of true ages inside the model's ranges."""
    predicted = model.predict(data.X[test])
    y = data.y[test]
    if data.regression:
        from .age import coverage

        baseline = AgeScores.compute(y, np.full(len(test), float(np.mean(data.y[train])))).to_dict()
        figures = AgeScores.compute(y, predicted).to_dict()
        if ranges is not None:
            figures["range_coverage"] = round(coverage(predicted, y, ranges), 4)
        return figures, {"name": "mean_age", **baseline}
    classes = sorted(np.unique(data.y).tolist())
    values, counts = np.unique(data.y[train], return_counts=True)
    majority = np.full(len(test), values[np.argmax(counts)])
    figures, baseline = Scores.compute(y, predicted, classes).to_dict(), Scores.compute(y, majority, classes).to_dict()
    if np.all(np.isfinite(data.ages[test])):
        figures["per_age_group"] = scores_by_age_group(y, predicted, data.ages[test])
        baseline["per_age_group"] = scores_by_age_group(y, majority, data.ages[test])
    return figures, {"name": "majority_class", **baseline}


#: Training rows kept in the model file as SHAP's background sample, for models without
#: native per-face contributions (SVMs, ensembles, any model behind a step that mixes columns).
BACKGROUND_ROWS = 20


def explain_background(model, data, seed=0):
    """A small stratified sample of training rows (list of lists) for SHAP, or None when the
    fitted pipeline ``model`` explains itself (logistic regression, XGBoost or Random Forest
    behind steps that keep columns apart: see :func:`classifiers.explain.has_native`)."""
    if has_native(model):
        return None
    rng = np.random.default_rng(seed)
    strata = data.age_groups() if data.regression else data.y  # an age model: stratified by age group
    classes = np.unique(strata)
    per_class = max(1, BACKGROUND_ROWS // len(classes))
    rows = np.concatenate([rng.choice(np.flatnonzero(strata == c), min(per_class, int((strata == c).sum())),
                                      replace=False) for c in classes])
    return np.round(data.X[np.sort(rows)].astype(np.float64), 5).tolist()


def train_on_dask(data, scheduler, seed=0):
    """XGBoost through its Dask interface on the cluster at ``scheduler`` (default parameters)."""
    from common.parallel import compute_backend

    from .distributed import train_xgboost_dask

    started = time.perf_counter()
    with compute_backend("dask", scheduler) as client:
        model = train_xgboost_dask(client, data.X, data.y, data.groups, seed=seed)
    return model, {"model": "xgboost", "description": describe("xgboost") + ", trained with xgboost.dask",
                   "best_params": {}, "search": "none (default parameters, Dask training)", "seed": int(seed),
                   "training_seconds": round(time.perf_counter() - started, 1)}


def training_summary(data):
    per_dataset = {}
    counted = data.age_groups() if data.regression else data.y  # an age model: faces per age group
    for name in sorted(set(data.datasets.tolist())):
        rows = data.datasets == name
        per_dataset[name] = {"faces": int(rows.sum()),
                             "classes": dict(sorted(collections.Counter(counted[rows].tolist()).items()))}
    return {"datasets": per_dataset, "n_faces": int(len(data.y)), "class_counts": data.class_counts(),
            "excluded_rows": data.excluded, "dropped_labels": data.dropped_labels,
            "terms": TERMS.format(datasets=", ".join(per_dataset))}


def benchmark_figures(paths, name):
    """This model's figures from benchmark results.json files (protocol stated with them)."""
    out = []
    for path in paths:
        try:
            results = BenchmarkResult.read(path)
        except (OSError, ValueError) as exc:
            raise FacialExpressionError(f"{path}: cannot read benchmark results ({exc})") from None
        keys = ("mae", "rmse", "cs5") if results.regression else ("accuracy", "balanced_accuracy", "macro_f1")
        for m in results.models:
            if m.name == name:
                entry = {"dataset": results.dataset, "protocol": results.protocol_description,
                         "quick": results.quick}
                entry.update({k: getattr(m, k) for k in keys if getattr(m, k) is not None})
                if getattr(m, "per_age_group", None):   # age and gender: the figures per age group
                    entry["per_age_group"] = m.per_age_group
                if "PrivateTest" in getattr(m, "subsets", {}):   # an age model's results have no subsets
                    entry["PrivateTest_accuracy"] = m.subsets["PrivateTest"].accuracy
                out.append(entry)
    return out


def parse_labels(text):
    if not text:
        return None
    labels = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in labels if t not in EMOTIONS]
    if unknown:
        raise click.BadParameter(f"unknown labels {unknown}; canonical labels are {', '.join(EMOTIONS)}")
    return labels


@command("train")
@click.argument("features_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (.skops), e.g. classifiers/models/default.skops.")
@click.option("--model", "name", type=click.Choice(MODEL_NAMES + REGRESSOR_NAMES), default=None,
              help="Which pipeline to fit: a classifier, or for --target age a regressor "
                   f"({', '.join(REGRESSOR_NAMES)}). Default: logreg, or ridge for --target age.")
@click.option("--quick", is_flag=True, help="Search the small grid instead of the full one.")
@click.option("--labels", default=None,
              help="Comma-separated canonical labels to keep (e.g. drop contempt); default: every label present.")
@scheme_option(help="Label scheme: the table's labels, the 7 basic emotions, 6 without neutral, or 3-class valence "
                    "(negative: angry, disgust, fear, sad; neutral; positive: happy, surprise).")
@target_option
@click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0, show_default=True,
              help="Hold out this seeded share of the faces (stratified by age group for age and gender; whole "
                   "subjects where known), fit on the rest and record the model's figures on the held-out faces "
                   "in the model file. 0: fit on every face.")
@backend_options(default="local", help="dask: train XGBoost with its own Dask interface on the cluster at "
                 "--scheduler (rows stay partitioned over the workers; --model xgboost only, no grid search).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@jobs_option(default=2, help="Worker processes.")
@click.option("--cv-folds", type=click.IntRange(2, 20), default=3, show_default=True,
              help="Folds of the grouped grid-search CV.")
@ferplus_options
@click.option("--benchmark", "benchmarks", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A benchmark results.json whose figures for this model go into the model file (repeatable).")
@quiet_option
def main(features_files, output, name, quick, labels, scheme, target, holdout, backend, scheduler, seed, jobs, cv_folds,
         ferplus, ferplus_weights, benchmarks, quiet):
    """Fit one model on FEATURES_FILE(s) and save it as one model file: an expression classifier,
    or with --target gender or age (UTKFace tables) an apparent-gender classifier or an age
    regressor.

    The tables must come from the same feature configuration; their usable rows (status
    ok) are concatenated. The grid is searched with subject-grouped CV (age and gender:
    stratified by age group), the best settings are refitted on every row (with --holdout:
    on every row but the held-out ones, which are scored), and the file records the
    pipeline, label names, feature configuration, library versions and a summary of the
    training data. An age model also records the range of its estimates: the 10th to 90th
    percentile of its out-of-fold errors, per age group of the estimate.

    \b
    Examples:
      python -m classifiers.train data/ckplus48.npz data/jaffe.npz -o model.skops --model svm_rbf --quick
      facial-expressions train data/utkface.npz --target age --model svr_groups --holdout 0.2 -o age.skops
    """
    label_list = parse_labels(labels)
    try:
        data = load_training_data(features_files, label_list, scheme=None if scheme == "all" else scheme,
                                  ferplus=ferplus, ferplus_weights=ferplus_weights, target=target)
        check_configuration(data, features_files[0])
        name = name or ("ridge" if data.regression else "logreg")
        if is_regressor(name) != data.regression:
            wanted = ", ".join(REGRESSOR_NAMES if data.regression else MODEL_NAMES)
            raise FacialExpressionError(f"--model {name} does not fit --target {target}; choose from {wanted}")
        if backend == "dask" and name != "xgboost":
            raise FacialExpressionError("--backend dask trains --model xgboost (XGBoost's own Dask interface)")
        if not data.regression and len(np.unique(data.y)) < 2:
            raise FacialExpressionError("need at least two classes to train")
        figures = benchmark_figures(benchmarks, name)
        # one training per output at a time (a second one is refused, OutputLockedError); the old
        # model file stays in place until the new one is complete (save_model writes atomically)
        with output_lock(output, "training"):
            train_rows, test_rows = holdout_split(data, holdout, seed) if holdout else (None, None)
            fit_data = data if train_rows is None else data.select(train_rows)
            if backend == "dask":
                model, summary = train_on_dask(fit_data, scheduler, seed)
            else:
                model, summary = train_model(fit_data, name, quick, seed, jobs, cv_folds, progress=not quiet)
            meta = {"model": summary, "training_data": training_summary(fit_data), "versions": versions(),
                    "feature_tables": [os.path.basename(p) for p in features_files], "benchmarks": figures,
                    "label_scheme": scheme, "target": target,
                    "label_source": ("FER+ majority" + (", vote-share weights" if ferplus_weights else "")) if ferplus
                    else "dataset labels",
                    "explain_background": explain_background(model, fit_data, seed)}
            if fit_data.regression:
                meta["age_range"] = age_range_table(model, fit_data, seed, cv_folds, jobs)
            if train_rows is not None:
                scores, baseline = holdout_figures(model, data, train_rows, test_rows, meta.get("age_range"))
                meta["holdout"] = {"fraction": holdout, "seed": seed,
                                   "n_train": int((~data.augmented[train_rows]).sum()), "n_test": len(test_rows),
                                   "figures": scores, "baseline": baseline,
                                   # which faces the figures are of (and the model never saw)
                                   "images": sorted(os.path.basename(s) for s in data.sources[test_rows])}
            save_model(output, model, data.config, meta, columns=data.columns)
    except ValueError as exc:
        raise click.ClickException(one_line(exc)) from None
    size = os.path.getsize(output)
    if fit_data.regression:
        cv = f", CV MAE {summary['cv_mae']:.2f} years" if "cv_mae" in summary else ""
    else:
        cv = f", CV balanced accuracy {summary['cv_balanced_accuracy']:.3f}" if "cv_balanced_accuracy" in summary else ""
    click.echo(f"{output}: {name} on {len(fit_data.y)} faces "
               f"({', '.join(f'{k} {v}' for k, v in fit_data.class_counts().items())}); "
               f"best {summary['best_params']}{cv}; {summary['training_seconds']} s; {size / 1e6:.2f} MB")
    if "holdout" in meta:
        click.echo(format_holdout(meta["holdout"]))


def format_holdout(holdout):
    """One line of a model's figures on its held-out faces, beside the trivial predictor's."""
    figures, baseline = holdout["figures"], holdout["baseline"]
    head = f"  held out {holdout['n_test']} faces (seed {holdout['seed']}): "
    if "mae" in figures:
        covered = f", {figures['range_coverage']:.0%} inside their age range" if "range_coverage" in figures else ""
        return (head + f"MAE {figures['mae']:.2f} years, RMSE {figures['rmse']:.2f}, CS(5) {figures['cs5']:.1%}"
                f"{covered} (mean-age estimate: MAE {baseline['mae']:.2f}); per age group MAE "
                + ", ".join(f"{g} {v['mae']:.1f}" for g, v in figures["per_age_group"].items()))
    groups = figures.get("per_age_group")
    return (head + f"accuracy {figures['accuracy']:.1%}, balanced {figures['balanced_accuracy']:.1%} "
            f"(majority class: {baseline['accuracy']:.1%})"
            + ("; per age group " + ", ".join(f"{g} {v['accuracy']:.1%}" for g, v in groups.items()) if groups else ""))


if __name__ == "__main__":
    main()
