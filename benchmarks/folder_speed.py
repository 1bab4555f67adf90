"""A folder of images through ``recognise_many``: one worker against every core, in one run.

    python benchmarks/folder_speed.py [--images 200] [--repeats 5] [--jobs 2] [--json]

The images are the first N JAFFE photos (sorted by path; 256x256, HOG detection under the
shipped model's ``auto`` detector). Each repeat times one pass with ``jobs=1`` and one with
``jobs=N``, alternating which goes first, after one untimed warm-up pass; the figure is the
ratio of the medians. Timed: from the call to the last result, worker start-up included
(the model and dlib's models are loaded before, as a first ``predict`` call loads them
anyway); interpreter start-up is measured by benchmarks/cold_start.py.
"""

import json
import os
import statistics
import sys
import time

import click

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)
JAFFE = os.path.join(PROJECT, "..", "shared", "datasets", "jaffe")


def _pass(paths, jobs):
    from classifiers import recognise_many

    started = time.perf_counter()
    faces = sum(len(r) for _, r in recognise_many(paths, jobs=jobs) if not isinstance(r, Exception))
    return time.perf_counter() - started, faces


@click.command()
@click.option("--images", default=200, show_default=True, help="How many JAFFE photos.")
@click.option("--repeats", default=5, show_default=True, help="Timed passes per setting.")
@click.option("--jobs", default=os.cpu_count() or 2, show_default=True, help="Workers of the parallel setting.")
@click.option("--dataset", default=JAFFE, show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def main(images, repeats, jobs, dataset, as_json):
    from landmarks.datasets import load_dataset

    paths = [s.path for s in load_dataset(dataset)][:images]
    _pass(paths[:16], 1)  # load the model and dlib's models, warm the file cache
    _pass(paths, jobs)
    times = {1: [], jobs: []}
    faces = {}
    for r in range(repeats):
        for n in ((1, jobs) if r % 2 == 0 else (jobs, 1)):
            seconds, faces[n] = _pass(paths, n)
            times[n].append(seconds)
    one, many = statistics.median(times[1]), statistics.median(times[jobs])
    result = {"images": len(paths), "faces": faces[1], "jobs": jobs, "repeats": repeats,
              "seconds_1_worker": round(one, 3), f"seconds_{jobs}_workers": round(many, 3),
              "images_per_second_1": round(len(paths) / one, 1), f"images_per_second_{jobs}": round(len(paths) / many, 1),
              "speedup": round(one / many, 2), "cores": os.cpu_count()}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{len(paths)} images ({faces[1]} faces), medians of {repeats}: 1 worker {one:.2f} s "
                   f"({len(paths) / one:.0f} img/s), {jobs} workers {many:.2f} s ({len(paths) / many:.0f} img/s): "
                   f"speed-up {one / many:.2f}x on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
