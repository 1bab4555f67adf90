"""The emotion of every face in images: box, label, probabilities of every class, landmarks.

    python -m classifiers.predict IMAGE_OR_FOLDER... [--model FILE] [--json] [--csv] [--annotate OUT]

Exit codes: 0 every image had a face; 3 some image had no face (reported, not an error);
1 some image could not be read, or the model file is bad (one line on stderr each).
"""

import csv
import json
import os
import sys

import click
import numpy as np

from landmarks.datasets import IMAGE_EXTENSIONS
from landmarks.detect import DETECTORS
from common.errors import DegenerateLandmarksError, FacialExpressionError, ImageError
from landmarks.io import read_image
from landmarks.shape import find_faces

from .artifact import DEFAULT_MODEL, load_model

EXIT_OK, EXIT_ERROR, EXIT_NO_FACE = 0, 1, 3


def detect_and_describe(image, config, detector=None, upsample=None):
    """(faces, feature matrix) of every usable face in ``image`` under FeatureConfig ``config``."""
    from features.describe import describe_face

    faces = find_faces(image, detector or config.detector, config.upsample if upsample is None else upsample,
                       config.upscale_to, config.align_size)
    kept, rows = [], []
    for face in faces:
        try:
            vector = describe_face(face, config)
        except DegenerateLandmarksError:
            continue
        if np.all(np.isfinite(vector)):
            kept.append(face)
            rows.append(vector)
    n_columns = len(config.columns()[0])
    return kept, (np.vstack(rows) if rows else np.zeros((0, n_columns), dtype=np.float32))


def predict_image(image, model, detector=None, upsample=None, explain_top=0):
    """Per face (largest first): dict(box, label, probabilities, landmarks), and the Face objects.

    With ``explain_top`` > 0 each face also gets ``explanation``: the features that pushed
    most toward the predicted label and against it, as {"feature", "value", "contribution"}
    (see :mod:`classifiers.explain`), and ``_parts`` (face part -> contribution) for pictures.
    """
    faces, X = detect_and_describe(image, model.config, detector, upsample)
    if not faces:
        return [], faces
    proba = model.predict_proba(X)
    explanations = None
    if explain_top:
        from .explain import explain

        explanations = explain(model, X)
    out = []
    for i, (face, p) in enumerate(zip(faces, proba)):
        result = {
            "box": [int(v) for v in face.box],
            "label": model.labels[int(np.argmax(p))],
            "probabilities": {label: round(float(v), 4) for label, v in zip(model.labels, p)},
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.points],
        }
        if explanations is not None:
            toward, against = explanations[i].top(explain_top)
            result["explanation"] = toward + against
            result["explanation_kind"] = explanations[i].output_kind
            result["_parts"] = explanations[i].parts
        out.append(result)
    return out, faces


def expand_inputs(paths):
    """Image paths from files and folders (every image file directly inside a folder, sorted)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path)
                           if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
            out.extend((os.path.join(path, n), None) for n in names)
            if not names:
                out.append((path, "folder holds no image files"))
        else:
            out.append((path, None))
    return out


def annotation_path(out, image_path, several):
    if several or os.path.isdir(out) or out.endswith(os.sep):
        stem = os.path.splitext(os.path.basename(image_path))[0]
        return os.path.join(out, f"{stem}.png")
    return out


def annotate(image_path, faces, results, dest):
    """Write the image with each face's box, dots and label; with explanations, face parts are
    coloured green (pushed toward the label) or red (against), brighter for larger amounts."""
    from features.pixelize import pixelize, save_rgb

    from .explain import part_colours

    rgb = read_image(image_path, "rgb")
    labels = [f"{r['label']} {r['probabilities'][r['label']]:.0%}" for r in results]
    colours = [part_colours(r["_parts"]) if "_parts" in r else None for r in results]
    canvas = pixelize(rgb, faces, labels, colours)
    save_rgb(dest, canvas)


def format_human(image, results):
    if not results:
        return f"{image}: no face found"
    lines = [f"{image}: {len(results)} face{'s' if len(results) > 1 else ''}"]
    for i, r in enumerate(results, 1):
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
        others = ", ".join(f"{k} {v:.0%}" for k, v in ranked[1:4])
        x, y, w, h = r["box"]
        lines.append(f"  face {i} at x={x} y={y} w={w} h={h}: {r['label']} {ranked[0][1]:.0%} ({others})")
        if "explanation" in r:
            toward = [e for e in r["explanation"] if e["contribution"] > 0]
            against = [e for e in r["explanation"] if e["contribution"] < 0]

            def words(items):
                return ", ".join(f"{e['feature']} {e['contribution']:+.2f}" for e in items) or "nothing notable"

            lines.append(f"    for {r['label']}: {words(toward)}")
            lines.append(f"    against: {words(against)}")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(readable=False), metavar="IMAGE_OR_FOLDER...")
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Model file (default: the shipped model classifiers/models/default.skops).")
@click.option("--json", "as_json", is_flag=True,
              help='JSON lines: one object per image, {"image", "faces": [{"box": [x, y, w, h], "label", '
                   '"probabilities", "landmarks": [[x, y], ...]}]}; an unreadable image adds "error".')
@click.option("--csv", "as_csv", is_flag=True,
              help="CSV: a header, then one row per face (image, face, x, y, w, h, label, one column per class); "
                   "an image without a face gives one row with face 0 and label 'no_face'.")
@click.option("--annotate", "annotate_out", type=click.Path(), default=None,
              help="Write each image with boxes, landmark dots and labels: a file for one image, a folder for several.")
@click.option("--detector", type=click.Choice(DETECTORS), default=None,
              help="Override the model's detector: hog (photos), cnn (slower, more poses), whole (the image is a "
                   "face crop), auto (whole up to 128 px, else hog).")
@click.option("--upsample", type=click.IntRange(0, 3), default=None,
              help="Override the model's detector upsampling (finds smaller faces, ~4x slower per step).")
@click.option("--explain", "explain_top", type=click.IntRange(0, 20), default=0, is_flag=False, flag_value=3,
              help="Explain each face: the N features (default 3) that pushed most toward the predicted label "
                   "and against it, with signed amounts (logit for logistic regression, margin for XGBoost, "
                   "probability via SHAP for other models). With --annotate, face parts are coloured by their "
                   "contribution (green toward, red against).")
def main(inputs, model_path, as_json, as_csv, annotate_out, detector, upsample, explain_top):
    """Recognise the facial expression of every face in IMAGE_OR_FOLDER(s).

    A folder stands for every image file directly inside it. Per face: the box
    (x, y, w, h in pixels), the label, the probability of every class the model knows,
    and the 68 landmarks (with --json).

    \b
    Exit codes:
      0  every image had at least one face
      3  some image had no face ("no face found"; not an error)
      1  some image could not be read (one line on stderr; the others are still
         processed), or the model file is missing, damaged or incompatible
    \b
    Examples:
      python -m classifiers.predict photo.jpg
      python -m classifiers.predict photos/ --json > faces.jsonl
      python -m classifiers.predict photo.jpg --annotate out/photo.png
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as they are
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        model = load_model(model_path or DEFAULT_MODEL)
    except FacialExpressionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    images = expand_inputs(inputs)
    several = len(images) > 1
    writer = None
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["image", "face", "x", "y", "w", "h", "label"] + [f"p_{c}" for c in model.labels])
    any_error = any_no_face = False
    for path, problem in images:
        try:
            if problem:
                raise FacialExpressionError(f"{path}: {problem}")
            image = read_image(path, "gray")
            results, faces = predict_image(image, model, detector, upsample, explain_top)
            if annotate_out and faces:
                annotate(path, faces, results, annotation_path(annotate_out, path, several))
        except (FacialExpressionError, OSError, ValueError) as exc:
            any_error = True
            message = str(exc) if isinstance(exc, (ImageError, FacialExpressionError)) else f"{path}: {exc}"
            click.echo(f"error: {message.splitlines()[0] if message else path}", err=True)
            if as_json:
                click.echo(json.dumps({"image": path, "faces": [], "error": message}))
            continue
        if not results:
            any_no_face = True
        if as_json:
            click.echo(json.dumps({"image": path, "faces": [{k: v for k, v in r.items() if not k.startswith("_")}
                                                            for r in results]}))
        elif as_csv:
            if not results:
                writer.writerow([path, 0, "", "", "", "", "no_face"] + [""] * len(model.labels))
            for i, r in enumerate(results, 1):
                writer.writerow([path, i] + r["box"] + [r["label"]] + [r["probabilities"][c] for c in model.labels])
            sys.stdout.flush()
        else:
            click.echo(format_human(path, results))
    sys.exit(EXIT_ERROR if any_error else EXIT_NO_FACE if any_no_face else EXIT_OK)


if __name__ == "__main__":
    main()
