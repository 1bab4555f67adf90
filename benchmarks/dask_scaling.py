"""Extraction on a local Dask cluster with 1 and then 2 workers: speed-up and a projection.

Runs ``features.extract.extract_dataset(..., backend="dask")`` on the same image sample
with a ``distributed.LocalCluster`` of 1 worker and of 2 workers (one thread each), checks
that both tables equal the local (loky) run's, and prints images/s, the speed-up and,
from the measured per-image cost in core-seconds, the time and cluster size for one
million photos.

    python benchmarks/dask_scaling.py [--dataset ../shared/datasets/fer2013] [--images 4000]
    python benchmarks/dask_scaling.py --dataset ../shared/datasets/jaffe --images 213 --detector hog
"""

import json
import math
import os
import sys
import tempfile
import time

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.extraction_speed import link_subset  # noqa: E402


def run(subset, output, detector, backend, scheduler=None, jobs=-1):
    from features import FeatureConfig
    from features.extract import extract_dataset

    start = time.perf_counter()
    table, _ = extract_dataset(subset, output, preset="folder", config=FeatureConfig(detector=detector),
                               progress=False, backend=backend, scheduler=scheduler, jobs=jobs)
    return table, time.perf_counter() - start


@click.command()
@click.option("--dataset", default="../shared/datasets/fer2013", show_default=True, type=click.Path(exists=True))
@click.option("--images", default=4000, show_default=True)
@click.option("--detector", type=click.Choice(["whole", "hog"]), default="whole", show_default=True)
@click.option("--photos", default=1_000_000, show_default=True, help="Size of the projected job.")
@click.option("--hours", default=1.0, show_default=True, help="Wall time the projected job should take.")
def main(dataset, images, detector, photos, hours):
    import numpy as np
    from distributed import LocalCluster

    from landmarks.datasets import load_dataset

    paths = [s.path for s in load_dataset(dataset)]
    paths = paths[::max(1, len(paths) // images)][:images]
    result = {"dataset": os.path.basename(os.path.normpath(dataset)), "images": len(paths), "detector": detector}
    with tempfile.TemporaryDirectory() as tmp:
        subset = os.path.join(tmp, "images")
        link_subset(paths, subset)
        reference, seconds = run(subset, os.path.join(tmp, "local.npz"), detector, "local")
        result["local_2_processes_images_per_second"] = round(len(paths) / seconds, 1)
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                # warm-up: load the dlib models in every worker before timing
                run(subset, os.path.join(tmp, "warm.npz"), detector, "dask", cluster.scheduler_address)
                os.remove(os.path.join(tmp, "warm.npz"))
                table, seconds = run(subset, os.path.join(tmp, f"dask{workers}.npz"), detector, "dask",
                                     cluster.scheduler_address)
            same = bool(np.array_equal(table.X, reference.X) and np.array_equal(table.status, reference.status))
            result[f"dask_{workers}_worker_images_per_second"] = round(len(paths) / seconds, 1)
            result[f"dask_{workers}_worker_table_equals_local"] = same
    one, two = result["dask_1_worker_images_per_second"], result["dask_2_worker_images_per_second"]
    result["speedup_1_to_2_workers"] = round(two / one, 2)
    core_seconds = 1.0 / one  # one worker = one core
    result["core_seconds_per_image"] = round(core_seconds, 5)
    result["projection"] = {
        "photos": photos, "core_hours": round(photos * core_seconds / 3600, 1),
        "workers_for_%g_hours" % hours: math.ceil(photos * core_seconds / (hours * 3600)),
        "hours_on_this_2_core_machine": round(photos / two / 3600, 1),
    }
    click.echo(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
