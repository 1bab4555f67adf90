"""Cost of the shipped age and gender models: one estimate each, and one explained estimate.

    python benchmarks/age_speed.py [IMAGE] [--repeats 5]

* estimate: the age model on one face's feature row, libsvm's ``SVR.predict`` against
  :func:`classifiers.models.predict_regressor` (batched RBF kernel), and the gender model's
  ``predict_proba`` against :func:`classifiers.models.predict_proba`, medians of 200 calls,
  alternating, in this process;
* explanation: ``facial-expressions predict IMAGE --age-gender --explain 3`` as a whole process
  (start-up and model loading included), medians of ``--repeats`` runs, against the same command
  without ``--explain``. The first run may also compile SHAP's helpers (numba) into its cache.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path(np.__file__).parents[1] / "matplotlib" / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def _process_seconds(args):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "facial_expressions", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=SAMPLE)
@click.option("--repeats", type=click.IntRange(1, 100), default=5, show_default=True)
def main(image, repeats):
    """Time one age and one gender estimate, and one explained estimate."""
    from classifiers import artifact
    from classifiers.models import predict_proba, predict_regressor

    for name, path, own, batched_call in [
            ("age", artifact.AGE_MODEL, "predict", predict_regressor),
            ("gender", artifact.GENDER_MODEL, "predict_proba", predict_proba)]:
        model = artifact.load_model(path)
        row = np.asarray(model.meta["explain_background"][:1], dtype=np.float32)
        libsvm, batched = [], []
        for _ in range(200):
            start = time.perf_counter()
            getattr(model.pipeline, own)(row)
            libsvm.append(time.perf_counter() - start)
            start = time.perf_counter()
            batched_call(model.pipeline, row)
            batched.append(time.perf_counter() - start)
        click.echo(f"one {name} estimate: libsvm {statistics.median(libsvm) * 1000:.2f} ms, "
                   f"batched kernel {statistics.median(batched) * 1000:.2f} ms (medians of 200)")
    plain, explained = [], []
    for _ in range(repeats):
        plain.append(_process_seconds(["predict", str(image), "--age-gender"]))
        explained.append(_process_seconds(["predict", str(image), "--age-gender", "--explain", "3"]))
    click.echo(f"predict --age-gender: {statistics.median(plain):.2f} s; with --explain 3: "
               f"{statistics.median(explained):.2f} s (medians of {repeats}; all runs: "
               f"{', '.join(f'{s:.1f}' for s in explained)})")


if __name__ == "__main__":
    main()
