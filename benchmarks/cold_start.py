"""Cold start of the predict command against a bare dlib process, measured interleaved in one run.

The bare process: a fresh interpreter that imports dlib, loads its HOG face detector and the
68-point shape predictor (``face_recognition_models.pose_predictor_model_location()``), decodes
the image with Pillow and runs both once. The measured command (default
``python -m classifiers.predict``, repeatable ``--command``) gets the image as its last
argument. Each round runs every process once (the order rotates from round to round, so drift
in the machine's load hits all of them alike); the medians and the ratio to the bare process
are printed.

    python benchmarks/cold_start.py [IMAGE] [--runs 9] [--command "facial-expressions predict"] [--json]

Without IMAGE, a 640x480 photo is made from a real JAFFE face pasted on a grey background
(``--dataset``, default ``../shared/datasets/jaffe``).
"""

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import click

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATASET = os.path.normpath(os.path.join(PROJECT_DIR, "..", "shared", "datasets", "jaffe"))
#: The JAFFE face the test photo is made from (any frontal face would do).
JAFFE_FACE = os.path.join("happy", "KA.HA1.29.tiff")
PHOTO_SIZE = (640, 480)

BARE = """
import sys
import dlib
import face_recognition_models
import numpy as np
from PIL import Image

detector = dlib.get_frontal_face_detector()
predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
with Image.open(sys.argv[1]) as img:
    image = np.asarray(img.convert("L"))
faces = [predictor(image, rect) for rect in detector(image, 0)]
print(len(faces), "face(s)")
"""


def make_photo(dataset, dest):
    """A 640x480 JPEG: the JAFFE face ``JAFFE_FACE`` of ``dataset`` on a grey background."""
    from PIL import Image

    with Image.open(os.path.join(dataset, JAFFE_FACE)) as face:
        face = face.convert("L")
        photo = Image.new("L", PHOTO_SIZE, 128)
        photo.paste(face, ((PHOTO_SIZE[0] - face.width) // 2, (PHOTO_SIZE[1] - face.height) // 2))
    photo.convert("RGB").save(dest, quality=95)
    return dest


def run_once(argv, env):
    """Wall seconds of one process; raises if it fails (a no-face exit, 3, counts as a failure)."""
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise click.ClickException(f"{shlex.join(argv)} exited with {result.returncode}: "
                                   f"{(result.stderr or result.stdout).strip()[-300:]}")
    return seconds


def measure(commands, runs, env):
    """{name: [seconds per run]}: one warm-up each, then ``runs`` rounds, the order rotating per round."""
    names = list(commands)
    for name in names:
        run_once(commands[name], env)  # page cache and .pyc files, not counted
    times = {name: [] for name in names}
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(run_once(commands[name], env))
    return times


@click.command()
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--runs", default=9, show_default=True, type=click.IntRange(1, 1000), help="Runs of each process.")
@click.option("--command", "commands", multiple=True,
              help="A command to measure, run from the project folder with the image appended (repeatable). "
                   "Default: python -m classifiers.predict, with this interpreter.")
@click.option("--dataset", default=DEFAULT_DATASET, show_default=True, type=click.Path(exists=True, file_okay=False),
              help="JAFFE folder the test photo is made from when no IMAGE is given.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def main(image, runs, commands, dataset, as_json):
    """Median wall time of a cold `predict` process and of a bare dlib process, and their ratio."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT_DIR, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.abspath(image) if image else f"640x480 photo made from {os.path.join(dataset, JAFFE_FACE)}"
        image = os.path.abspath(image) if image else make_photo(dataset, os.path.join(tmp, "photo640.jpg"))
        measured = {"bare dlib": [sys.executable, "-c", BARE, image]}
        for command in commands or (f"{shlex.quote(sys.executable)} -m classifiers.predict",):
            measured[command] = shlex.split(command) + [image]
        times = measure(measured, runs, env)
    bare = statistics.median(times["bare dlib"])
    result = {"image": source, "runs": runs, "bare_seconds_median": round(bare, 3), "commands": []}
    for name, seconds in times.items():
        if name != "bare dlib":
            median = statistics.median(seconds)
            result["commands"].append({"command": name, "seconds_median": round(median, 3),
                                       "ratio_to_bare": round(median / bare, 2),
                                       "seconds": [round(s, 3) for s in seconds]})
    result["bare_seconds"] = [round(s, 3) for s in times["bare dlib"]]
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['image']}, {runs} runs each, interleaved")
    click.echo(f"  bare dlib (import, HOG detector, 68-point predictor, one image): median {bare:.3f} s")
    for entry in result["commands"]:
        click.echo(f"  {entry['command']}: median {entry['seconds_median']:.3f} s, "
                   f"ratio {entry['ratio_to_bare']:.2f}")


if __name__ == "__main__":
    main()
