"""The ``predict`` command: the emotion of every face in images (and with --age-gender its apparent
age and gender), as text, JSON lines, CSV or pictures.

    facial-expressions predict IMAGE_OR_FOLDER... [--model FILE] [--json|--csv] [--annotate OUT] [--age-gender]
    python -m classifiers.predict IMAGE_OR_FOLDER...          (the same command)

A thin layer over :func:`classifiers.recognise_many`: this module only reads the command
line and writes what the library returns. Exit codes: 0 every image had a face; 3 some
image had no face (reported, not an error); 1 some image could not be read, or the model
file is bad (one line on stderr each).
"""

import csv
import json
import os
import sys

import click

from common.cli import (age_gender_option, check_recommend_options, command, detector_options, jobs_option, mirror_option, one_line, printable, quiet_option,
                        recommend_options, utf8_safe_output)
from common.errors import FacialExpressionError, ImageError
from landmarks.datasets import IMAGE_EXTENSIONS
from landmarks.detect import DETECTORS

from .artifact import DEFAULT_MODEL
from .api import load_model, recognise_many

EXIT_OK, EXIT_ERROR, EXIT_NO_FACE = 0, 1, 3


def expand_inputs(paths):
    """(image path, problem or None) from files and folders (every image file directly inside a folder, sorted)."""
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


def annotation_paths(out, paths, several):
    """Where each image's annotated picture goes: ``out`` itself for one image, else
    ``out/<name>.png`` for each, made unique (``face.png``, ``face-2.png``) when names repeat.
    A destination that is one of the input images maps to None: inputs are never overwritten."""
    inputs = {os.path.realpath(p) for p in paths}
    if not several and not (os.path.isdir(out) or out.endswith(os.sep)):
        chosen = [out] * len(paths)
    else:
        chosen, taken, of_input = [], set(), {}
        for path in paths:
            real = os.path.realpath(path)
            if real not in of_input:  # the same image given twice gets the same picture
                stem = os.path.splitext(os.path.basename(path))[0]
                dest, k = os.path.join(out, f"{stem}.png"), 1
                while dest in taken:
                    k += 1
                    dest = os.path.join(out, f"{stem}-{k}.png")
                taken.add(dest)
                of_input[real] = dest
            chosen.append(of_input[real])
    return {path: None if os.path.realpath(dest) in inputs else dest for path, dest in zip(paths, chosen)}


def annotate(image_path, predictions, dest):
    """Write the image with each face's box, dots and label; with explanations, face parts are
    coloured green (pushed toward the label) or red (against), brighter for larger amounts."""
    import numpy as np

    from features.pixelize import pixelize, save_rgb
    from landmarks.io import read_image
    from landmarks.shape import Face

    from .explain import part_colours

    faces = [Face(box=p.box, points=np.asarray(p.landmarks, dtype=np.float32)) for p in predictions]
    labels = [f"{p.label} {p.confidence:.0%}" + (f", {p.age:.0f}, {p.gender}" if p.age is not None else "")
              for p in predictions]
    colours = [part_colours(p.explanation.parts) if p.explanation else None for p in predictions]
    save_rgb(dest, pixelize(read_image(image_path, "rgb"), faces, labels, colours))


def _words(reasons, unit=""):
    return ", ".join(f"{r.feature} {r.contribution:+.2f}{unit}" for r in reasons) or "nothing notable"


def format_human(image, predictions):
    """Readable lines for one image: each face's box, label and runners-up, and its reasons; with
    age and gender, the apparent age with its range and the apparent gender with its probability."""
    image = printable(image)
    if not predictions:
        return f"{image}: no face found"
    lines = [f"{image}: {len(predictions)} face{'s' if len(predictions) > 1 else ''}"]
    for i, p in enumerate(predictions, 1):
        ranked = sorted(p.probabilities.items(), key=lambda kv: -kv[1])
        others = ", ".join(f"{k} {v:.0%}" for k, v in ranked[1:4])
        x, y, w, h = p.box
        lines.append(f"  face {i} at x={x} y={y} w={w} h={h}: {p.label} {ranked[0][1]:.0%} ({others})")
        if p.explanation is not None:
            lines.append(f"    for {p.label}: {_words(p.explanation.toward)}")
            lines.append(f"    against: {_words(p.explanation.against)}")
        if p.age is not None:
            low, high = p.age_range
            confidence = p.p_female if p.gender == "female" else 1 - p.p_female
            lines.append(f"    apparent age {p.age:.0f} (likely {low:.0f}-{high:.0f}), apparent gender {p.gender} "
                         f"{confidence:.0%}")
        if p.age_explanation is not None:
            lines.append(f"    age up: {_words(p.age_explanation.toward, ' y')}")
            lines.append(f"    age down: {_words(p.age_explanation.against, ' y')}")
        if p.gender_explanation is not None:
            lines.append(f"    for {p.gender}: {_words(p.gender_explanation.toward)}")
            lines.append(f"    against: {_words(p.gender_explanation.against)}")
    return "\n".join(lines)


#: predict --csv --age-gender: the columns after the class probabilities.
AGE_GENDER_COLUMNS = ("age", "age_low", "age_high", "gender", "p_female")


def _age_gender_cells(p):
    return [round(p.age, 1), round(p.age_range[0], 1), round(p.age_range[1], 1), p.gender, round(p.p_female, 4)]


def _write_annotation(path, predictions, dest):
    """Write the annotated picture; on failure one line saying why. True when written."""
    if dest is None:
        click.echo(f"error: {printable(path)}: not annotated: the picture would overwrite this input image",
                   err=True)
        return False
    try:
        annotate(path, predictions, dest)
        return True
    except (ImageError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)
        click.echo(f"error: {printable(dest)}: the annotated picture could not be written ({reason})", err=True)
        return False


def format_recommendation(recommendation):
    """The reason line, then one line per track with its link."""
    lines = [f"  music: {recommendation.reason}"]
    lines += [f"    {i}. {t.artist} - {t.title}  {t.url}" for i, t in enumerate(recommendation.tracks, 1)]
    return "\n".join(lines)


def _message(path, exc):
    return printable(exc) if isinstance(exc, FacialExpressionError) else f"{printable(path)}: {one_line(exc)}"


@command("predict")
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
@detector_options(DETECTORS)
@click.option("--explain", "explain_top", type=click.IntRange(0, 20), default=0, is_flag=False, flag_value=3,
              help="Explain each face: the N features (default 3) that pushed most toward the predicted label "
                   "and against it, with signed amounts (logit for logistic regression, margin for XGBoost, "
                   "probability via SHAP for other models). With --annotate, face parts are coloured by their "
                   "contribution (green toward, red against).")
@mirror_option
@age_gender_option("Adds age, age_range, gender, p_female to --json and age, age_low, age_high, gender, p_female "
                   "to --csv; with --explain, what pushed the age up or down and toward the gender.")
@recommend_options("after each image, tracks that fit the mood of its largest face (see --mode).")
@jobs_option()
@quiet_option
def main(inputs, model_path, as_json, as_csv, annotate_out, detector, upsample, explain_top, mirror, age_gender,
         catalogue_path, mode, n_tracks, jobs, quiet):
    """Recognise the facial expression of every face in IMAGE_OR_FOLDER(s).

    A folder stands for every image file directly inside it; many images run on every
    core (--jobs). Per face: the box (x, y, w, h in pixels), the label, the probability
    of every class the model knows, and the 68 landmarks (with --json); with --age-gender
    also the apparent age (a plausible range) and apparent gender (its probability).

    \b
    Exit codes:
      0  every image had at least one face
      3  some image had no face ("no face found"; not an error)
      1  some image could not be read (one line on stderr; the others are still
         processed), or the model file is missing, damaged or incompatible
    \b
    Examples:
      facial-expressions predict photo.jpg
      facial-expressions predict photos/ --json > faces.jsonl
      facial-expressions predict photo.jpg --explain --annotate out/photo.png
      facial-expressions predict photo.jpg --age-gender --json
      facial-expressions predict photo.jpg --recommend my_tracks.csv --mode lift
    """
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    check_recommend_options(catalogue_path)
    if catalogue_path and as_csv:
        raise click.UsageError("--recommend writes text or --json, not --csv")
    if explain_top and as_csv and not annotate_out:
        raise click.UsageError("--explain shows in text, --json and --annotate pictures, not in --csv")
    utf8_safe_output()
    model = load_model(model_path or DEFAULT_MODEL)
    catalogue = None
    if catalogue_path:
        from .recommend import load_catalogue

        catalogue = load_catalogue(catalogue_path)
    images = expand_inputs(inputs)
    problems = {path: problem for path, problem in images if problem}
    paths = [path for path, problem in images if not problem]
    several = len(images) > 1
    writer = None
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["image", "face", "x", "y", "w", "h", "label"] + [f"p_{c}" for c in model.labels]
                        + list(AGE_GENDER_COLUMNS if age_gender else ()))
    bar = None
    if len(paths) > 1 and not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        # no monitor thread: recognise_many forks its workers only while this process has one thread
        tqdm.monitor_interval = 0
        bar = tqdm(total=len(paths), unit="img", desc="predict", file=sys.stderr, leave=False)
    any_error = any_no_face = False
    for path, problem in problems.items():
        any_error = True
        click.echo(f"error: {printable(path)}: {problem}", err=True)
    destinations = annotation_paths(annotate_out, paths, several) if annotate_out else {}
    stream = recognise_many(paths, model=model, jobs=jobs, explain=explain_top, detector=detector, upsample=upsample,
                            age_gender=age_gender, mirror=mirror)
    for path, result in stream:
        if bar is not None:
            bar.update()
        if isinstance(result, Exception):
            any_error = True
            message = _message(path, result)
            click.echo(f"error: {message}", err=True)
            if as_json:
                click.echo(json.dumps({"image": path, "mirror_averaged": bool(mirror), "faces": [], "error": str(result)}))
            continue
        if not result:
            any_no_face = True
        recommendation = None
        if catalogue is not None and result and result[0].valence is not None:
            from .recommend import recommend

            recommendation = recommend(result, catalogue, n=n_tracks, mode=mode)
        if as_json:
            record = {"image": path, "mirror_averaged": bool(mirror), "faces": [p.to_dict() for p in result]}
            if recommendation is not None:
                record["recommendation"] = recommendation.to_dict()
            click.echo(json.dumps(record))
        elif as_csv:
            extra = len(AGE_GENDER_COLUMNS) if age_gender else 0
            if not result:
                writer.writerow([path, 0, "", "", "", "", "no_face"] + [""] * (len(model.labels) + extra))
            for i, p in enumerate(result, 1):
                writer.writerow([path, i] + list(p.box) + [p.label]
                                + [round(p.probabilities[c], 4) for c in model.labels]
                                + (_age_gender_cells(p) if age_gender else []))
            sys.stdout.flush()
        else:
            click.echo(format_human(path, result))
            if recommendation is not None:
                click.echo(format_recommendation(recommendation))
        if annotate_out and result:  # after the prediction is out: a picture that fails loses nothing else
            any_error |= not _write_annotation(path, result, destinations[path])
    if bar is not None:
        bar.close()
    sys.exit(EXIT_ERROR if any_error else EXIT_NO_FACE if any_no_face else EXIT_OK)


if __name__ == "__main__":
    main()
