"""Run a model file on a labelled class-per-folder dataset and report how it does.

    python -m classifiers.evaluate MODEL_FILE DATASET_DIR [--preset P] [--json]

Images whose face is not found count as misses (and are reported separately); images of
a class the model does not know are skipped and counted; unreadable images are counted
and left out of the scores.
"""

import collections
import json
import os
import sys

import click
import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import accuracy_score, f1_score, recall_score

from common.cli import command, detector_options, jobs_option, mirror_option, quiet_option, scheme_option
from common.errors import FacialExpressionError, ImageError
from landmarks.datasets import PRESETS, load_dataset
from landmarks.detect import DETECTORS


NO_FACE = "no_face"
CHUNK = 32


def _predict_chunk(model_path, samples, detector, upsample=None, mirror=True):
    """(status, label, probability) of each sample's largest face, through classifiers.api."""
    from features.extract import image_of

    from .api import recognise

    out = []
    for sample in samples:
        try:
            faces = recognise(image_of(sample), model=model_path, detector=detector, upsample=upsample,
                              max_faces=1, mirror=mirror)
        except ImageError as exc:
            out.append(("error", exc.reason, None))
            continue
        if not faces:
            out.append((NO_FACE, None, None))
        else:  # the largest face carries the image's label
            out.append(("ok", faces[0].label, faces[0].confidence))
    return out


def confusion(y_true, y_pred, rows, columns):
    """Counts[i][j] of true ``rows[i]`` predicted ``columns[j]`` (rows and columns may differ)."""
    out = np.zeros((len(rows), len(columns)), dtype=int)
    row_of, col_of = {c: i for i, c in enumerate(rows)}, {c: j for j, c in enumerate(columns)}
    for t, p in zip(y_true, y_pred):
        if t in row_of and p in col_of:
            out[row_of[t], col_of[p]] += 1
    return out.tolist()


def evaluate(model_path, dataset, preset=None, detector=None, jobs=1, progress=True, scheme=None, upsample=None,
             mirror=True):
    """Scores of the model at ``model_path`` on ``dataset``; returns a JSON-ready dict.

    ``scheme`` maps the dataset's labels through a label scheme (common.labels.SCHEMES)
    first, e.g. valence3 for a model trained on valence classes.
    """
    import dataclasses

    from tqdm import tqdm

    from common.labels import apply_scheme

    from .api import load_model

    model = load_model(model_path)
    if model.regression:
        raise FacialExpressionError(f"{model.path}: an age model estimates years, not classes; its figures come "
                                    f"from train --holdout or benchmark --target age")
    samples = load_dataset(dataset, preset)
    if scheme not in (None, "all"):
        mapped, keep = apply_scheme(np.array([s.label for s in samples]), scheme)
        samples = [dataclasses.replace(s, label=str(m)) if k else s for s, m, k in zip(samples, mapped, keep)]
    known = [s for s in samples if s.label in model.labels]
    unknown = collections.Counter(s.label for s in samples if s.label not in model.labels)
    chunks = [known[i:i + CHUNK] for i in range(0, len(known), CHUNK)]
    tasks = [delayed(_predict_chunk)(model.path, chunk, detector, upsample, mirror) for chunk in chunks]
    bar = tqdm(total=len(known), unit="img", desc="evaluate", disable=not progress, file=sys.stderr)
    results = []
    stream = Parallel(n_jobs=jobs, return_as="generator")(tasks) if jobs > 1 and len(tasks) > 1 else \
        (fn(*a, **k) for fn, a, k in tasks)
    for chunk_result in stream:
        results.extend(chunk_result)
        bar.update(len(chunk_result))
    bar.close()

    status = np.array([r[0] for r in results], dtype=object)
    y_true = np.array([s.label for s in known], dtype=object)
    y_pred = np.array([r[1] if r[0] == "ok" else NO_FACE for r in results], dtype=object)
    errors = collections.Counter(r[1] for r in results if r[0] == "error")
    scored = status != "error"
    classes = list(model.labels)
    present = [c for c in classes if np.any(y_true[scored] == c)]
    yt, yp = y_true[scored].astype(str), y_pred[scored].astype(str)
    detected = status == "ok"
    report = {
        "model": os.path.basename(model.path),
        "dataset": os.path.basename(os.path.normpath(os.fspath(dataset))),
        "images": len(samples),
        "scored": int(scored.sum()),
        "no_face": int((status == NO_FACE).sum()),
        "unreadable": dict(errors),
        "unknown_class_skipped": dict(unknown),
        "classes": classes,
        "mirror_averaged": bool(mirror),
        "note": "images without a detected face count as misses; unreadable images and classes the model "
                "does not know are left out",
    }
    if len(yt):
        recall = recall_score(yt, yp, labels=present, average=None, zero_division=0)
        report.update({
            "accuracy": round(float(accuracy_score(yt, yp)), 4),
            "accuracy_on_detected": round(float(accuracy_score(y_true[detected].astype(str),
                                                                y_pred[detected].astype(str))), 4)
            if detected.any() else None,
            "macro_f1": round(float(f1_score(yt, yp, labels=present, average="macro", zero_division=0)), 4),
            "per_class_recall": {c: round(float(r), 4) for c, r in zip(present, recall)},
            "confusion_labels": {"rows": present, "columns": classes + [NO_FACE]},
            "confusion_matrix": confusion(yt, yp, present, classes + [NO_FACE]),
        })
    return report


def format_report(r):
    lines = [f"{r['model']} on {r['dataset']}: {r['images']} images, {r['scored']} scored"]
    if r["unknown_class_skipped"]:
        lines.append("  skipped (class unknown to the model): "
                     + ", ".join(f"{k} {v}" for k, v in r["unknown_class_skipped"].items()))
    if r["unreadable"]:
        lines.append("  unreadable: " + ", ".join(f"{k} {v}" for k, v in r["unreadable"].items()))
    lines.append(f"  no face found (counted as misses): {r['no_face']}")
    if "accuracy" in r:
        detected = r["accuracy_on_detected"]
        lines.append(f"  accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}"
                     + (f"  (accuracy on faces found {detected:.3f})" if detected is not None else ""))
        lines.append("  recall: " + ", ".join(f"{k} {v:.2f}" for k, v in r["per_class_recall"].items()))
        cols = r["confusion_labels"]["columns"]
        width = max(8, max(len(c) for c in cols) + 1)
        lines.append("  confusion (rows true, columns predicted):")
        lines.append("  " + " " * width + "".join(f"{c:>{width}}" for c in cols))
        for name, row in zip(r["confusion_labels"]["rows"], r["confusion_matrix"]):
            lines.append("  " + f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


@command("evaluate")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("dataset_dir", type=click.Path(exists=True))
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="Dataset layout (default: guessed from the path).")
@detector_options(DETECTORS)
@mirror_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@scheme_option(help="Map the dataset's labels through this label scheme first (as the model was trained).")
@jobs_option(default=2, help="Worker processes.")
@quiet_option
def main(model_file, dataset_dir, preset, detector, upsample, mirror, as_json, scheme, jobs, quiet):
    """Score MODEL_FILE on the labelled images of DATASET_DIR (DATASET_DIR/<class>/<image>).

    Reports accuracy, macro-F1, per-class recall and the confusion matrix. The largest
    face of each image is classified; images without a detected face count as misses
    and are reported separately; images of classes the model does not know are skipped
    and counted; unreadable images are counted and left out.
    """
    report = evaluate(model_file, dataset_dir, preset, detector, jobs, progress=not quiet, scheme=scheme,
                      upsample=upsample, mirror=mirror)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


if __name__ == "__main__":
    # run the imported module's main, so worker processes find its functions by name
    from classifiers.evaluate import main as _main

    _main()
