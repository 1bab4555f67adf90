"""Compare the classical models on one feature table, every model on the same folds.

    python -m classifiers.benchmark FEATURES_FILE -o REPORT_DIR [--models rf,svm_rbf,...] [--quick]

The orchestration and its command: the protocol follows from the table
(:mod:`classifiers.protocol`), each model's hyperparameters come from an inner grid search on
each training part only (:mod:`classifiers.search`), the figures form a
:class:`~classifiers.results.BenchmarkResult` (:mod:`classifiers.results`), and
:mod:`classifiers.report` writes the report files.
"""

import contextlib
import os

import click
import numpy as np

from common.cli import backend_options, command, ferplus_options, jobs_option, one_line, quiet_option, scheme_option, target_option
from common.files import output_lock
from common.labels import AGE_GROUP_NAMES
from common.parallel import compute_backend

from .data import load_training_data
from .models import DEFAULT_MODELS, DEFAULT_REGRESSORS, MODEL_NAMES, REGRESSOR_NAMES
from .protocol import CALIBRATIONS, apply_calibration, calibration_note, choose_protocol
from .report import write_report, write_scheme_summary
from .results import BenchmarkResult, versions
from .search import majority_baseline, search_models


def run_benchmark(data, models, quick=False, seed=0, jobs=1, progress=True, backend="local"):
    """Benchmark ``models`` on ``data`` (a classifiers.data.TrainingData): a :class:`BenchmarkResult`
    without label scheme and calibration (the command sets them).

    Under ``backend="dask"`` (inside :func:`common.parallel.compute_backend`) every
    (model, fold) task goes to the cluster.
    """
    protocol = choose_protocol(data, quick, seed)
    classes = list(data.class_counts()) if data.regression else sorted(np.unique(data.y).tolist())
    tested = protocol.tested_rows()
    baseline = majority_baseline(data, protocol, classes)
    models = search_models(data, models, protocol, classes, quick, seed, jobs, progress, backend)
    return BenchmarkResult(
        dataset=",".join(sorted(set(data.datasets.tolist()))),
        protocol=protocol.name,
        protocol_description=protocol.description,
        n_folds=len(protocol.folds),
        subsets={name: int(mask.sum()) for name, mask in protocol.subsets.items()},
        n_augmented=int(data.augmented.sum()),
        n_samples=int(len(data.y)),
        n_tested=int(len(tested)),
        n_subjects=int(len(np.unique(data.subjects))) if data.subjects_known else None,
        excluded_rows=data.excluded,
        n_excluded=int(sum(data.excluded.values())),
        classes=classes,
        class_counts=data.class_counts(),
        baseline=baseline,
        models=models,
        quick=bool(quick),
        seed=int(seed),
        jobs=int(jobs),
        feature_config=data.config,
        versions=versions(),
        target=None if data.target == "label" else data.target,
    )


def parse_models(text, regression=False):
    """"rf,logreg" -> list of model names (in the order given, each once); ``regression``: the
    regressors' names (``None`` or "": every default model of the kind)."""
    known, default = (REGRESSOR_NAMES, DEFAULT_REGRESSORS) if regression else (MODEL_NAMES, DEFAULT_MODELS)
    names = [n.strip() for n in (text or ",".join(default)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise click.BadParameter(f"unknown {'regressor' if regression else 'model'}(s) {unknown}; choose from "
                                 f"{', '.join(known)}", param_hint="'--models'")
    return list(dict.fromkeys(names))


@command("benchmark")
@click.argument("features_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "report_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for results.json, report.md, comparison.png and confusion_<model>.png.")
@click.option("--models", default=None,
              help=f"Comma-separated models to compare. Default: {','.join(DEFAULT_MODELS)}; for --target age the "
                   f"regressors {','.join(DEFAULT_REGRESSORS)}.")
@click.option("--quick", is_flag=True, help="Small grids, 5 outer folds, 3 inner folds: a fast sanity run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (folds, models).")
@jobs_option(default=2, help="Worker processes (outer folds run in parallel; with one fold, the grid search does).")
@scheme_option(several=True)
@click.option("--calibrate", type=click.Choice(CALIBRATIONS), default="none", show_default=True,
              help="subject: centre every face's features on the mean of its person's faces (test persons "
                   "included, labels unused). A different, transductive setting: it needs several faces of "
                   "each person at prediction time. Reported separately, never as the per-image figure.")
@ferplus_options
@target_option
@backend_options(help="Run the (model, fold) fits on this machine's cores or on a Dask cluster.")
@quiet_option
def main(features_file, report_dir, models, quick, seed, jobs, scheme, calibrate, ferplus, ferplus_weights, target,
         backend, scheduler, quiet):
    """Compare classical expression classifiers on FEATURES_FILE, the same folds for every model.

    \b
    Protocol, chosen from the table:
      FER-2013 (splits hold Training)  train on Training, test on PublicTest+PrivateTest
      subjects known, <= 12 subjects  leave-one-subject-out
      subjects known, more            10-fold StratifiedGroupKFold by subject
      --target age or gender          5 seeded folds stratified by age group (UTKFace)
      no subjects, no splits          10-fold StratifiedKFold (NOT subject-independent)
    Hyperparameters come from an inner grid search on each training part only (grouped by
    subject where subjects are known). Rows whose face failed (status != ok) are excluded
    and counted. --quick uses small grids and 5 outer folds.

    \b
    Age (--target age) is a regression: mean absolute error in years, RMSE, CS(5) (share
    within 5 years) and the error per age group (0-12, 13-19, 20-39, 40-59, 60+), beside
    the mean-age estimate; gender (--target gender) gets accuracy and balanced accuracy,
    per age group too, beside the majority class.

    \b
    Models: rf, svm_rbf, svm_linear, xgboost, logreg, logreg_au (explainable: action units and
    geometry only), ensemble, and svm_pca (RBF SVM on 256 whitened principal components: for
    large tables like FER-2013, not run unless asked for). Regressors (--target age): ridge,
    svr_pca (RBF SVR on 256 principal components), svr_groups (the shipped age model's: a
    logistic regression picks the age group, then that group's RBF SVR), xgboost_reg.
    Examples:
      python -m classifiers.benchmark data/ckplus48.npz -o reports/ckplus48 --quick
      facial-expressions benchmark data/utkface.npz --target age -o reports/utkface_age
    """
    names = parse_models(models, regression=target == "age")
    several = len(scheme) > 1
    lock_path = os.path.join(report_dir, "schemes.json" if several else "results.json")
    created = not os.path.lexists(report_dir)
    try:
        with output_lock(lock_path, "benchmark"), compute_backend(backend, scheduler):
            runs = []
            for one in scheme:
                data = load_training_data(features_file, scheme=None if one == "all" else one, ferplus=ferplus,
                                          ferplus_weights=ferplus_weights, target=target)
                results = run_benchmark(apply_calibration(data, calibrate), names, quick=quick, seed=seed,
                                        jobs=jobs, progress=not quiet, backend=backend)
                results.label_scheme = one
                results.calibration = calibrate
                results.protocol_description += calibration_note(calibrate)
                folder = os.path.join(report_dir, one) if several else report_dir
                write_report(results, folder)
                _echo_results(folder, results)
                runs.append(results)
            if several:
                write_scheme_summary(runs, report_dir)
                click.echo(f"{os.path.join(report_dir, 'schemes.md')}: {len(runs)} label schemes compared")
    except ValueError as exc:
        raise click.ClickException(one_line(exc)) from None
    finally:
        if created:   # a run refused or stopped before writing leaves no empty folder behind
            with contextlib.suppress(OSError):   # not empty: what was written stays
                os.rmdir(report_dir)


def _echo_results(folder, results):
    if results.regression:
        click.echo(f"{folder}: {results.dataset}, age in years, {results.protocol_description}")
        for m in [results.baseline] + sorted(results.models, key=lambda m: m.mae):
            click.echo(f"  {m.name:<16} MAE {m.mae:.2f}  RMSE {m.rmse:.2f}  CS(5) {m.cs5:.3f}  per age group MAE "
                       + " ".join(f"{g} {m.per_age_group[g]['mae']:.1f}" for g in AGE_GROUP_NAMES
                                  if g in m.per_age_group))
        return
    click.echo(f"{folder}: {results.dataset}, scheme {results.label_scheme}, {results.protocol_description}")
    click.echo(f"  majority class   accuracy {results.baseline.accuracy:.3f}")
    for m in sorted(results.models, key=lambda m: -m.accuracy):
        click.echo(f"  {m.name:<16} accuracy {m.accuracy:.3f}  balanced {m.balanced_accuracy:.3f}  "
                   f"macro-F1 {m.macro_f1:.3f}  ({m.fit_seconds:.1f} s/fold)")
        if m.per_age_group:
            click.echo("  " + " " * 16 + " accuracy per age group " + "  ".join(
                f"{g} {v['accuracy']:.3f}" for g, v in m.per_age_group.items()))


if __name__ == "__main__":
    # run the imported module's main, so worker processes find its functions by name
    from classifiers.benchmark import main as _main

    _main()
