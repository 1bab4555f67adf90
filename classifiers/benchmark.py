"""Compare the classical models on one feature table, every model on the same folds.

    python -m classifiers.benchmark FEATURES_FILE -o REPORT_DIR [--models rf,svm_rbf,...] [--quick]

The orchestration and its command: the protocol follows from the table
(:mod:`classifiers.protocol`), each model's hyperparameters come from an inner grid search on
each training part only (:mod:`classifiers.search`), the figures form a
:class:`~classifiers.results.BenchmarkResult` (:mod:`classifiers.results`), and the report
files are written from it.
"""

import json
import os
import sys

import click
import numpy as np

from common.errors import FacialExpressionError
from common.files import atomic_path, output_lock
from common.labels import SCHEMES
from common.parallel import BACKENDS, compute_backend, default_backend

from .data import load_training_data
from .models import DEFAULT_MODELS, MODEL_NAMES
from .protocol import CALIBRATIONS, apply_calibration, calibration_note, choose_protocol
from .results import BenchmarkResult, versions
from .search import majority_baseline, search_models


def run_benchmark(data, models, quick=False, seed=0, jobs=1, progress=True, backend="local"):
    """Benchmark ``models`` on ``data`` (a classifiers.data.TrainingData): a :class:`BenchmarkResult`
    without label scheme and calibration (the command sets them).

    Under ``backend="dask"`` (inside :func:`common.parallel.compute_backend`) every
    (model, fold) task goes to the cluster.
    """
    protocol = choose_protocol(data, quick, seed)
    classes = sorted(np.unique(data.y).tolist())
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
    )


# ---- report files -----------------------------------------------------------------------

def _write_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def _save_figure(fig, path):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_confusion(matrix, classes, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    _save_figure(fig, path)


def plot_comparison(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.name for m in results.models]
    metrics = ("accuracy", "balanced_accuracy", "macro_f1")
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(names), 4))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        values = [getattr(m, metric) for m in results.models]
        ax.bar(np.arange(len(names)) + (k - 1) * width, values, width, label=metric.replace("_", " "))
    ax.axhline(results.baseline.accuracy, color="grey", linestyle="--", linewidth=1,
               label="majority-class accuracy")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title(f"{results.dataset}: {results.protocol}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save_figure(fig, path)


def format_report(results):
    """report.md: the protocol, the data, one row per model, per-class recall, top features."""
    lines = [f"# Benchmark: {results.dataset}", "",
             f"Protocol: {results.protocol_description}.", "",
             f"Faces: {results.n_samples} used, {results.n_tested} tested; rows excluded (no usable face): "
             f"{results.n_excluded}" + (f" ({', '.join(f'{k} {v}' for k, v in results.excluded_rows.items())})"
                                         if results.excluded_rows else "") + ".",
             f"Classes: {', '.join(f'{c} {n}' for c, n in results.class_counts.items())}.",
             f"Run: {'quick grids' if results.quick else 'full grids'}, seed {results.seed}, label scheme "
             f"{results.label_scheme or 'all'}"
             + (f", {results.n_augmented} mirrored training faces" if results.n_augmented else "") + ".", "",
             "| model | accuracy | balanced acc. | macro F1 | fold acc. (mean ± sd) | fit s/fold | predict ms/face | best params (most common) |",
             "|---|---|---|---|---|---|---|---|"]
    b = results.baseline
    lines.append(f"| majority class | {b.accuracy:.3f} | {b.balanced_accuracy:.3f} | {b.macro_f1:.3f} | | | | |")
    for m in sorted(results.models, key=lambda m: -m.accuracy):
        params = ", ".join(f"{k.split('__', 1)[-1]}={v}" for k, v in m.best_params.items())
        lines.append(f"| {m.name} | {m.accuracy:.3f} | {m.balanced_accuracy:.3f} | {m.macro_f1:.3f} | "
                     f"{m.fold_accuracy_mean:.3f} ± {m.fold_accuracy_std:.3f} | {m.fit_seconds:.2f} | "
                     f"{m.predict_ms_per_face:.3f} | {params} |")
    for subset, size in (results.subsets or {}).items():
        what = {"PrivateTest": "PrivateTest alone",
                "test_without_train_duplicates": "Test part without the images that also occur (byte-identical) "
                                                 "in Training"}.get(subset, subset)
        lines += ["", f"{what} ({size} faces), accuracy: " + ", ".join(
            f"{m.name} {m.subsets[subset].accuracy:.3f}" for m in results.models if subset in m.subsets) + "."]
    lines += ["", "## Per-class recall", "",
              "| model | " + " | ".join(results.classes) + " |",
              "|---|" + "---|" * len(results.classes)]
    for m in results.models:
        lines.append(f"| {m.name} | " + " | ".join(f"{m.per_class_recall[c]:.2f}" for c in results.classes) + " |")
    explained = [m for m in results.models if m.top_features]
    if explained:
        lines += ["", "## Most important features per class", "",
                  "Mean contribution toward the true class on test faces (logit/margin for logreg and "
                  "XGBoost, probability for Random Forest); charts `features_<model>.png`.", ""]
        for m in explained:
            lines.append(f"- **{m.name}**: " + "; ".join(
                f"{label}: {', '.join(f'{u} ({v:+.2f})' for u, v in items[:3])}"
                for label, items in m.top_features.items()))
    lines += ["", "Figures: `comparison.png`; confusion matrices `confusion_<model>.png` (rows: true class).",
              f"Times: {results.fit_seconds_note}; {results.predict_ms_note}.", ""]
    return "\n".join(lines)


def plot_top_features(entry, path):
    """Per class, the features that pushed most toward (green) or against (red) the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(entry.top_features)
    cols = min(4, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, label in zip(axes.ravel(), classes):
        items = entry.top_features[label][::-1]
        values = [v for _, v in items]
        ax.barh(range(len(items)), values, color=["#2a9d48" if v > 0 else "#c0392b" for v in values])
        ax.set_yticks(range(len(items)), [u for u, _ in items], fontsize=7)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(classes):]:
        ax.axis("off")
    fig.suptitle(f"{entry.name}: mean contribution toward the true class (test faces)", fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def write_report(results, folder):
    """Every report file of one :class:`~classifiers.results.BenchmarkResult` into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    for m in results.models:
        if m.top_features:
            plot_top_features(m, os.path.join(folder, f"features_{m.name}.png"))
    for m in results.models:
        plot_confusion(m.confusion_matrix, results.classes,
                       f"{m.name} on {results.dataset}: accuracy {m.accuracy:.3f}",
                       os.path.join(folder, f"confusion_{m.name}.png"))
    plot_comparison(results, os.path.join(folder, "comparison.png"))
    _write_text(os.path.join(folder, "report.md"), format_report(results))
    _write_text(os.path.join(folder, "results.json"), results.to_json())


def scheme_summary(runs):
    """Markdown table: one row per (label scheme, model), from several BenchmarkResults."""
    lines = [f"# Label schemes: {runs[0].dataset}", "",
             f"Protocol: {runs[0].protocol_description}.", "",
             "| scheme | classes | faces tested | model | accuracy | balanced acc. | macro F1 | majority class |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for m in sorted(r.models, key=lambda m: -m.accuracy):
            lines.append(f"| {r.label_scheme} | {len(r.classes)} ({', '.join(r.classes)}) | {r.n_tested} | "
                         f"{m.name} | {m.accuracy:.3f} | {m.balanced_accuracy:.3f} | {m.macro_f1:.3f} | "
                         f"{r.baseline.accuracy:.3f} |")
    lines += ["", "Each scheme's full report (confusion matrices, per-class recall) is in its sub-folder.", ""]
    return "\n".join(lines)


def write_scheme_summary(runs, folder):
    """schemes.md and schemes.json comparing the runs of several label schemes."""
    os.makedirs(folder, exist_ok=True)
    _write_text(os.path.join(folder, "schemes.md"), scheme_summary(runs))
    summary = [{"label_scheme": r.label_scheme, "classes": r.classes, "n_tested": r.n_tested,
                "baseline_accuracy": r.baseline.accuracy,
                "models": {m.name: {k: getattr(m, k) for k in ("accuracy", "balanced_accuracy", "macro_f1")}
                           for m in r.models}} for r in runs]
    _write_text(os.path.join(folder, "schemes.json"), json.dumps(summary, indent=2) + "\n")


#: ``--scheme each``: every label scheme the issue tracker asks the benchmark to report.
EACH_SCHEME = ("basic7", "basic6", "valence3")


def parse_schemes(text):
    """"basic6,valence3" / "each" / "all" -> tuple of scheme names (in the order given)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    names = [s for n in names for s in (EACH_SCHEME if n == "each" else (n,))]
    unknown = [n for n in names if n != "all" and n not in SCHEMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown label scheme(s) {unknown}; choose from all, each, {', '.join(SCHEMES)}")
    return tuple(dict.fromkeys(names))


def parse_models(text):
    """"rf,logreg" -> list of model names (in the order given, each once)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown model(s) {unknown}; choose from {', '.join(MODEL_NAMES)}")
    return list(dict.fromkeys(names))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("features_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "report_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for results.json, report.md, comparison.png and confusion_<model>.png.")
@click.option("--models", default=",".join(DEFAULT_MODELS), show_default=True,
              help="Comma-separated models to compare.")
@click.option("--quick", is_flag=True, help="Small grids, 5 outer folds, 3 inner folds: a fast sanity run.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice (folds, models).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes (outer folds run in parallel; with one fold, the grid search does).")
@click.option("--scheme", default="all", show_default=True, callback=lambda ctx, param, value: parse_schemes(value),
              help="Label scheme(s), comma-separated: all (the table's labels), basic7 (7 basic emotions incl. "
                   "neutral), basic6 (no neutral), valence3 (negative: angry, disgust, fear, sad; neutral; "
                   "positive: happy, surprise), or each (= basic7,basic6,valence3). With several schemes each "
                   "gets its own sub-folder of OUTPUT and OUTPUT/schemes.md compares them.")
@click.option("--calibrate", type=click.Choice(CALIBRATIONS), default="none", show_default=True,
              help="subject: centre every face's features on the mean of its person's faces (test persons "
                   "included, labels unused). A different, transductive setting: it needs several faces of "
                   "each person at prediction time. Reported separately, never as the per-image figure.")
@click.option("--backend", type=click.Choice(BACKENDS), default=default_backend,
              show_default="local, or dask when FER_DASK_SCHEDULER is set",
              help="Run the (model, fold) fits on this machine's cores or on a Dask cluster.")
@click.option("--scheduler", envvar="FER_DASK_SCHEDULER", default=None,
              help="Dask scheduler address (tcp://host:8786) for --backend dask [env: FER_DASK_SCHEDULER].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def main(features_file, report_dir, models, quick, seed, jobs, scheme, calibrate, backend, scheduler, quiet):
    """Compare classical expression classifiers on FEATURES_FILE, the same folds for every model.

    \b
    Protocol, chosen from the table:
      FER-2013 (splits hold Training)  train on Training, test on PublicTest+PrivateTest
      subjects known, <= 12 subjects  leave-one-subject-out
      subjects known, more            10-fold StratifiedGroupKFold by subject
      no subjects, no splits          10-fold StratifiedKFold (NOT subject-independent)
    Hyperparameters come from an inner grid search on each training part only (grouped by
    subject where subjects are known). Rows whose face failed (status != ok) are excluded
    and counted. --quick uses small grids and 5 outer folds.

    \b
    Models: rf, svm_rbf, svm_linear, xgboost, logreg, logreg_au (explainable: action units and
    geometry only), ensemble, and svm_pca (RBF SVM on 256 whitened principal components: for
    large tables like FER-2013, not run unless asked for).
    Example:
      python -m classifiers.benchmark data/ckplus48.npz -o reports/ckplus48 --quick
    """
    names = parse_models(models)
    several = len(scheme) > 1
    lock_path = os.path.join(report_dir, "schemes.json" if several else "results.json")
    try:
        with output_lock(lock_path, "benchmark"), compute_backend(backend, scheduler):
            runs = []
            for one in scheme:
                data = load_training_data(features_file, scheme=None if one == "all" else one)
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
    except (FacialExpressionError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _echo_results(folder, results):
    click.echo(f"{folder}: {results.dataset}, scheme {results.label_scheme}, {results.protocol_description}")
    click.echo(f"  majority class   accuracy {results.baseline.accuracy:.3f}")
    for m in sorted(results.models, key=lambda m: -m.accuracy):
        click.echo(f"  {m.name:<16} accuracy {m.accuracy:.3f}  balanced {m.balanced_accuracy:.3f}  "
                   f"macro-F1 {m.macro_f1:.3f}  ({m.fit_seconds:.1f} s/fold)")


if __name__ == "__main__":
    # run the imported module's main, so worker processes find its functions by name
    from classifiers.benchmark import main as _main

    _main()
