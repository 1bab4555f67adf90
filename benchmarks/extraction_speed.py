"""Extraction throughput against the bare dlib limit, measured in the same run.

The limit: N worker processes (default: all cores) each running a bare loop of image
decode + dlib's 68-point shape predictor (whole-image box) over their share of the same
images. The pipeline: ``features.extract.extract_dataset`` with the same number of
workers and the default feature configuration. Each is repeated and the median kept.

    python benchmarks/extraction_speed.py [--dataset ../shared/datasets/fer2013] [--images 6000] [--repeats 3]
    python benchmarks/extraction_speed.py --full    # every FER-2013 image, once
    python benchmarks/extraction_speed.py --dataset ../shared/datasets/jaffe --detector hog --images 213
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


def _bare_worker(paths, detect=False):
    import dlib
    import numpy as np
    from PIL import Image

    from landmarks.models import hog_detector, shape_predictor

    predictor = shape_predictor()
    detector = hog_detector() if detect else None
    for path in paths:
        with Image.open(path) as img:
            a = np.asarray(img.convert("L"))
        rects = detector(a, 0) if detect else [dlib.rectangle(0, 0, a.shape[1] - 1, a.shape[0] - 1)]
        for rect in rects[:1]:
            predictor(a, rect)
    return len(paths)


def bare_loop(paths, workers, detect=False):
    """Images per second of the bare decode (+ HOG detection) + shape-predictor loop over ``paths``."""
    shares = [paths[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_bare_worker, [s[:5] for s in shares], [detect] * workers))  # load models first
        start = time.perf_counter()
        done = sum(pool.map(_bare_worker, shares, [detect] * workers))
        return done / (time.perf_counter() - start)


def pipeline(dataset_dir, workers, output, detector="auto"):
    """Images per second of features.extract (worker start-up and table writing included)."""
    from features import FeatureConfig
    from features.extract import extract_dataset

    if os.path.exists(output):
        os.remove(output)
    start = time.perf_counter()
    table, summary = extract_dataset(dataset_dir, output, preset="folder", jobs=workers, progress=False,
                                     config=FeatureConfig(detector=detector))
    return len(table) / (time.perf_counter() - start), summary


class TreeMemory:
    """Peak resident memory (MB) of this process plus all its children, sampled every 0.1 s."""

    def __enter__(self):
        import threading

        import psutil

        self.peak, self._stop = 0.0, threading.Event()
        me = psutil.Process()

        def sample():
            while not self._stop.is_set():
                total = 0
                for proc in [me] + me.children(recursive=True):
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total / 2**20)
                self._stop.wait(0.1)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


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
@click.option("--detector", type=click.Choice(["whole", "hog"]), default="whole", show_default=True,
              help="whole: FER-2013-style crops (the limit is decode + shape predictor); hog: photos "
                   "(the limit adds dlib's HOG detector).")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Also write the figures as JSON.")
def main(dataset, images, repeats, workers, full, detector, json_out):
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
        bare, ours, summaries, peaks = [], [], [], []
        for r in range(repeats):
            bare.append(bare_loop(paths, workers, detect=detector == "hog"))
            with TreeMemory() as memory:
                speed, summary = pipeline(subset, workers, os.path.join(tmp, "table.npz"), detector)
            peaks.append(memory.peak)
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
        "faces": summaries[-1]["faces"], "failures": summaries[-1]["failures"], "detector": detector,
        "pipeline_peak_rss_mb_all_processes": round(max(peaks), 1),
    }
    click.echo(json.dumps(result, indent=2))
    if json_out:
        from common.files import atomic_path

        with atomic_path(json_out) as t, open(t, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
