"""Extraction throughput against the bare dlib limit, measured in the same run.

The limit: N worker processes (default: all cores) each running a bare loop of image
decode + dlib's 68-point shape predictor (whole-image box) over their share of the same
images. The pipeline: ``features.extract.extract_dataset`` with the same number of
workers and the default feature configuration. Each is repeated and the median kept.

    python benchmarks/extraction_speed.py [--dataset ../shared/datasets/fer2013] [--images 6000] [--repeats 3]
    python benchmarks/extraction_speed.py --full    # every FER-2013 image, once
"""

import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bare_worker(paths):
    import dlib
    import numpy as np
    from PIL import Image

    from landmarks.models import shape_predictor

    predictor = shape_predictor()
    for path in paths:
        with Image.open(path) as img:
            a = np.asarray(img.convert("L"))
        predictor(a, dlib.rectangle(0, 0, a.shape[1] - 1, a.shape[0] - 1))
    return len(paths)


def bare_loop(paths, workers):
    """Images per second of the bare decode + shape-predictor loop over ``paths``."""
    shares = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_bare_worker, [s[:20] for s in shares]))  # load the model in every worker first
        start = time.perf_counter()
        done = sum(pool.map(_bare_worker, shares))
        return done / (time.perf_counter() - start)


def pipeline(dataset_dir, workers, output):
    from features.extract import extract_dataset

    if os.path.exists(output):
        os.remove(output)
    start = time.perf_counter()
    table, summary = extract_dataset(dataset_dir, output, preset="folder", jobs=workers, progress=False)
    return len(table) / (time.perf_counter() - start), summary


def link_subset(paths, folder):
    """A class-per-folder tree of symlinks (no copies) to ``paths``."""
    for path in paths:
        label = os.path.basename(os.path.dirname(path))
        os.makedirs(os.path.join(folder, label), exist_ok=True)
        os.symlink(os.path.abspath(path), os.path.join(folder, label, os.path.basename(path)))


@click.command()
@click.option("--dataset", default="../shared/datasets/fer2013", show_default=True, type=click.Path(exists=True))
@click.option("--images", default=6000, show_default=True, help="Images in the sample (spread over all classes).")
@click.option("--repeats", default=3, show_default=True)
@click.option("--workers", default=os.cpu_count(), show_default=True)
@click.option("--full", is_flag=True, help="Every image of the dataset, one repeat.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
def main(dataset, images, repeats, workers, full, json_out):
    from landmarks.datasets import load_dataset

    samples = load_dataset(dataset)
    paths = [s.path for s in samples]
    if full:
        repeats = 1
    else:
        step = max(1, len(paths) // images)
        paths = paths[::step][:images]
    with tempfile.TemporaryDirectory() as tmp:
        subset = os.path.join(tmp, "images")
        link_subset(paths, subset)
        bare, ours, summaries = [], [], []
        for r in range(repeats):
            bare.append(bare_loop(paths, workers))
            speed, summary = pipeline(subset, workers, os.path.join(tmp, "table.npz"))
            ours.append(speed)
            summaries.append(summary)
            click.echo(f"repeat {r + 1}: bare {bare[-1]:.0f} img/s, pipeline {ours[-1]:.0f} img/s, "
                       f"ratio {ours[-1] / bare[-1]:.2f}", err=True)
    result = {
        "dataset": os.path.basename(os.path.normpath(dataset)), "images": len(paths), "workers": workers,
        "repeats": repeats, "bare_images_per_second_median": round(statistics.median(bare), 1),
        "pipeline_images_per_second_median": round(statistics.median(ours), 1),
        "ratio_of_medians": round(statistics.median(ours) / statistics.median(bare), 3),
        "pipeline_seconds_median": round(len(paths) / statistics.median(ours), 1),
        "faces": summaries[-1]["faces"], "failures": summaries[-1]["failures"],
    }
    click.echo(json.dumps(result, indent=2))
    if json_out:
        from landmarks.io import atomic_path

        with atomic_path(json_out) as t, open(t, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
