"""Fit one model on feature tables and save it as one model file.

    python -m classifiers.train FEATURES_FILE... -o MODEL_FILE [--model NAME] [--quick] [--labels a,b,...]

The grid is searched with CV grouped by subject where subjects are known (rows without a
subject are their own group), then the best pipeline is refitted on every row.
"""

import collections
import os
import time

import click
import numpy as np
from sklearn.model_selection import GridSearchCV, ParameterGrid, StratifiedGroupKFold

from common.cli import backend_options, command, ferplus_options, jobs_option, one_line, quiet_option, scheme_option
from common.errors import DatasetError, FacialExpressionError, IncompatibleModelError
from common.files import output_lock
from common.labels import EMOTIONS

from .artifact import save_model
from .data import load_training_data
from .explain import has_native
from .models import MODEL_NAMES, describe, make_pipeline, param_grid
from .results import BenchmarkResult, versions
from .search import _params_text, _set_threads, single_blas_thread

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
        n = max(2, min(cv_folds, len(np.unique(groups))))
        cv = StratifiedGroupKFold(n, shuffle=True, random_state=seed)
        search = GridSearchCV(pipe, grid, scoring="balanced_accuracy", cv=cv, n_jobs=jobs, refit=False,
                              verbose=1 if progress else 0, error_score="raise")
        search.fit(data.X, data.y, groups=groups, **data.fit_params())
        best = search.best_params_
        model = _set_threads(pipe.set_params(**best), jobs).fit(data.X, data.y, **data.fit_params())
        grouped = "by subject (rows without one are their own group)" if np.any(data.subjects != "") else \
            "stratified (no subjects known)"
        summary.update(best_params=_params_text(best), cv_balanced_accuracy=round(float(search.best_score_), 4),
                       search=f"GridSearchCV over {len(ParameterGrid(grid))} candidates, {n}-fold "
                              f"StratifiedGroupKFold {grouped}, scoring balanced accuracy")
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
    classes = np.unique(data.y)
    per_class = max(1, BACKGROUND_ROWS // len(classes))
    rows = np.concatenate([rng.choice(np.flatnonzero(data.y == c), min(per_class, int((data.y == c).sum())),
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
    for name in sorted(set(data.datasets.tolist())):
        rows = data.datasets == name
        per_dataset[name] = {"faces": int(rows.sum()),
                             "classes": dict(sorted(collections.Counter(data.y[rows].tolist()).items()))}
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
        for m in results.models:
            if m.name == name:
                entry = {"dataset": results.dataset, "protocol": results.protocol_description,
                         "quick": results.quick}
                entry.update({k: getattr(m, k) for k in ("accuracy", "balanced_accuracy", "macro_f1")
                              if getattr(m, k) is not None})
                if "PrivateTest" in m.subsets:
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
@click.option("--model", "name", type=click.Choice(MODEL_NAMES), default="logreg", show_default=True,
              help="Which pipeline to fit.")
@click.option("--quick", is_flag=True, help="Search the small grid instead of the full one.")
@click.option("--labels", default=None,
              help="Comma-separated canonical labels to keep (e.g. drop contempt); default: every label present.")
@scheme_option(help="Label scheme: the table's labels, the 7 basic emotions, 6 without neutral, or 3-class valence "
                    "(negative: angry, disgust, fear, sad; neutral; positive: happy, surprise).")
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
def main(features_files, output, name, quick, labels, scheme, backend, scheduler, seed, jobs, cv_folds, ferplus,
         ferplus_weights, benchmarks, quiet):
    """Fit one expression classifier on FEATURES_FILE(s) and save it as one model file.

    The tables must come from the same feature configuration; their usable rows (status
    ok) are concatenated. The grid is searched with subject-grouped CV, the best settings
    are refitted on every row, and the file records the pipeline, label names, feature
    configuration, library versions and a summary of the training data.

    \b
    Example:
      python -m classifiers.train data/ckplus48.npz data/jaffe.npz -o model.skops --model svm_rbf --quick
    """
    label_list = parse_labels(labels)
    try:
        data = load_training_data(features_files, label_list, scheme=None if scheme == "all" else scheme,
                                  ferplus=ferplus, ferplus_weights=ferplus_weights)
        check_configuration(data, features_files[0])
        if backend == "dask" and name != "xgboost":
            raise FacialExpressionError("--backend dask trains --model xgboost (XGBoost's own Dask interface)")
        if len(np.unique(data.y)) < 2:
            raise FacialExpressionError("need at least two classes to train")
        figures = benchmark_figures(benchmarks, name)
        # one training per output at a time (a second one is refused, OutputLockedError); the old
        # model file stays in place until the new one is complete (save_model writes atomically)
        with output_lock(output, "training"):
            if backend == "dask":
                model, summary = train_on_dask(data, scheduler, seed)
            else:
                model, summary = train_model(data, name, quick, seed, jobs, cv_folds, progress=not quiet)
            meta = {"model": summary, "training_data": training_summary(data), "versions": versions(),
                    "feature_tables": [os.path.basename(p) for p in features_files], "benchmarks": figures,
                    "label_scheme": scheme,
                    "label_source": ("FER+ majority" + (", vote-share weights" if ferplus_weights else "")) if ferplus
                    else "dataset labels",
                    "explain_background": explain_background(model, data, seed)}
            save_model(output, model, data.config, meta, columns=data.columns)
    except ValueError as exc:
        raise click.ClickException(one_line(exc)) from None
    size = os.path.getsize(output)
    click.echo(f"{output}: {name} on {len(data.y)} faces ({', '.join(f'{k} {v}' for k, v in data.class_counts().items())}); "
               f"best {summary['best_params']}"
               + (f", CV balanced accuracy {summary['cv_balanced_accuracy']:.3f}" if "cv_balanced_accuracy" in summary else "")
               + f"; {summary['training_seconds']} s; {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
