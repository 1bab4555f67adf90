"""A benchmark's report files: results.json, report.md, the comparison, confusion-matrix and
feature-importance charts, and the label-scheme comparison (schemes.md, schemes.json).

Every file is written atomically (complete or absent); everything is read from a
:class:`~classifiers.results.BenchmarkResult`.
"""

import json
import os

import numpy as np

from common.files import atomic_path


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
    if results.regression:  # age: MAE per age group, the mean-age estimate's as a line
        metrics, labels = list(results.classes), list(results.classes)
        values_of = {g: [m.per_age_group.get(g, {}).get("mae", 0.0) for m in results.models] for g in metrics}
        reference, reference_label = results.baseline.mae, "mean-age estimate, MAE"
    else:
        metrics = ("accuracy", "balanced_accuracy", "macro_f1")
        labels = [metric.replace("_", " ") for metric in metrics]
        values_of = {metric: [getattr(m, metric) for m in results.models] for metric in metrics}
        reference, reference_label = results.baseline.accuracy, "majority-class accuracy"
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(names), 4))
    width = 0.8 / len(metrics)
    for k, (metric, label) in enumerate(zip(metrics, labels)):
        ax.bar(np.arange(len(names)) + (k - (len(metrics) - 1) / 2) * width, values_of[metric], width, label=label)
    ax.axhline(reference, color="grey", linestyle="--", linewidth=1, label=reference_label)
    ax.set_xticks(range(len(names)), names)
    if results.regression:
        ax.set_ylabel("mean absolute error, years (lower is better)")
    else:
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
    ax.set_title(f"{results.dataset}: {results.protocol}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save_figure(fig, path)


def _report_head(results, counted):
    """report.md's title, protocol and data lines (``counted``: what class_counts counts)."""
    return [f"# Benchmark: {results.dataset}" + (f", {results.target}" if results.target else ""), "",
            f"Protocol: {results.protocol_description}.", "",
            f"Faces: {results.n_samples} used, {results.n_tested} tested; rows excluded (no usable face): "
            f"{results.n_excluded}" + (f" ({', '.join(f'{k} {v}' for k, v in results.excluded_rows.items())})"
                                        if results.excluded_rows else "") + ".",
            f"{counted}: {', '.join(f'{c} {n}' for c, n in results.class_counts.items())}.",
            f"Run: {'quick grids' if results.quick else 'full grids'}, seed {results.seed}"
            + ("" if results.regression else f", label scheme {results.label_scheme or 'all'}")
            + (f", {results.n_augmented} mirrored training faces" if results.n_augmented else "") + ".", ""]


def _params_words(model):
    return ", ".join(f"{k.split('__', 1)[-1]}={v}" for k, v in model.best_params.items())


def _model_table(columns, baseline, models, scores, fold):
    """report.md's main table: the ``columns`` of ``scores(result)``, then the fold figure
    ``fold = (column, mean attribute, sd attribute, digits)``, fit and predict times and the best
    parameters; the trivial predictor's row ``baseline = (name, result)`` holds its scores only."""
    name, trivial = baseline
    column, mean, sd, digits = fold
    columns = list(columns) + [column, "fit s/fold", "predict ms/face", "best params (most common)"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
             f"| {name} | " + " | ".join(scores(trivial)) + " |" + " |" * 4]
    return lines + [f"| {m.name} | " + " | ".join(
        scores(m) + [f"{getattr(m, mean):.{digits}f} ± {getattr(m, sd):.{digits}f}", f"{m.fit_seconds:.2f}",
                     f"{m.predict_ms_per_face:.3f}", _params_words(m)]) + " |" for m in models]


def _report_tail(results, what, figures):
    """The end of report.md: the most important features (``what`` says what their numbers are),
    the ``figures`` line and the times."""
    explained = [m for m in results.models if m.top_features]
    lines = []
    if explained:
        lines += ["", f"## Most important features per {'age group' if results.regression else 'class'}", "",
                  what, ""]
        for m in explained:
            lines.append(f"- **{m.name}**: " + "; ".join(
                f"{label}: {', '.join(f'{u} ({v:+.2f})' for u, v in items[:3])}"
                for label, items in m.top_features.items()))
    return lines + ["", figures, f"Times: {results.fit_seconds_note}; {results.predict_ms_note}.", ""]


def _per_group_table(title, rows, cell):
    """A markdown table of figures per age group: ``rows`` are (name, result with per_age_group),
    one column per age group of the first, each cell ``cell(figures of the group)``."""
    groups = rows[0][1].per_age_group
    lines = ["", title, "", "| model | " + " | ".join(f"{g} ({v['n']})" for g, v in groups.items()) + " |",
             "|---|" + "---|" * len(groups)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(cell(m.per_age_group[g]) if g in m.per_age_group else ""
                                                 for g in groups) + " |")
    return lines


def _age_group_lines(results):
    """The per-age-group accuracy table of a classifier benchmark on a table with ages (gender)."""
    rows = [("majority class" if m is results.baseline else m.name, m)
            for m in [results.baseline] + list(results.models) if m.per_age_group]
    if not rows:
        return []
    return _per_group_table("## Per age group (accuracy / balanced accuracy)", rows,
                            lambda v: f"{v['accuracy']:.3f} / {v['balanced_accuracy']:.3f}")


def format_age_report(results):
    """report.md of the age target: MAE, RMSE, CS(5) and bias per model and per age group."""
    b = results.baseline

    def scores(m):
        return [f"{m.mae:.2f}", f"{m.rmse:.2f}", f"{m.cs5:.3f}", f"{m.bias:+.2f}"]

    lines = _report_head(results, "Age groups") + _model_table(
        ["MAE (years)", "RMSE", "CS(5)", "bias"], ("mean age", b), sorted(results.models, key=lambda m: m.mae),
        scores, ("fold MAE (mean ± sd)", "fold_mae_mean", "fold_mae_std", 2))
    lines += _per_group_table("## Per age group (MAE / CS(5) / bias, years)",
                              [("mean age", b)] + [(m.name, m) for m in sorted(results.models, key=lambda m: m.mae)],
                              lambda v: f"{v['mae']:.2f} / {v['cs5']:.2f} / {v['bias']:+.1f}")
    lines += _report_tail(results, "Mean contribution to the age estimates of the test faces of each age group, in "
                                   "years (ridge: coefficient x standardised value; XGBoost: its per-prediction "
                                   "contributions); charts `features_<model>.png`.",
                          "Figures: `comparison.png` (MAE per age group). The age groups are those of the labelled age.")
    return "\n".join(lines)


def format_report(results):
    """report.md: the protocol, the data, one row per model, per-class recall, top features."""
    if results.regression:
        return format_age_report(results)

    def scores(m):
        return [f"{m.accuracy:.3f}", f"{m.balanced_accuracy:.3f}", f"{m.macro_f1:.3f}"]

    lines = _report_head(results, "Classes") + _model_table(
        ["accuracy", "balanced acc.", "macro F1"], ("majority class", results.baseline),
        sorted(results.models, key=lambda m: -m.accuracy), scores,
        ("fold acc. (mean ± sd)", "fold_accuracy_mean", "fold_accuracy_std", 3))
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
    lines += _age_group_lines(results)
    lines += _report_tail(results, "Mean contribution toward the true class on test faces (logit/margin for logreg "
                                   "and XGBoost, probability for Random Forest); charts `features_<model>.png`.",
                          "Figures: `comparison.png`; confusion matrices `confusion_<model>.png` (rows: true class).")
    return "\n".join(lines)


def plot_top_features(entry, path, regression=False):
    """Per class, the features that pushed most toward (green) or against (red) the true class;
    ``regression``: per age group, the features that pushed the age estimates up (green) or down (red)."""
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
    fig.suptitle(f"{entry.name}: " + ("mean contribution to the age estimate, years (test faces by age group)"
                                       if regression else "mean contribution toward the true class (test faces)"),
                 fontsize=10)
    fig.tight_layout()
    _save_figure(fig, path)


def write_report(results, folder):
    """Every report file of one :class:`~classifiers.results.BenchmarkResult` into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    for m in results.models:
        if m.top_features:
            plot_top_features(m, os.path.join(folder, f"features_{m.name}.png"), results.regression)
    for m in results.models if not results.regression else ():
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
