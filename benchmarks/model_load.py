"""Size and load time of a model file (default: the shipped one).

Prints the file size, the median time of ``load_model`` in a warm process (libraries
already imported), and the median wall time of a cold start: a fresh interpreter that
imports the libraries and loads the file.

    python benchmarks/model_load.py [MODEL_FILE] [--repeats 7]
"""

import json
import os
import statistics
import subprocess
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@click.command()
@click.argument("model_file", required=False)
@click.option("--repeats", default=7, show_default=True)
def main(model_file, repeats):
    from classifiers.artifact import DEFAULT_MODEL, load_model

    path = model_file or DEFAULT_MODEL
    load_model(path)  # imports done
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_model(path)
        warm.append(time.perf_counter() - start)
    cold = []
    code = f"from classifiers.artifact import load_model; load_model({path!r})"
    for _ in range(max(3, repeats // 2)):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        cold.append(time.perf_counter() - start)
    click.echo(json.dumps({"model": path, "bytes": os.path.getsize(path),
                           "load_seconds_warm_median": round(statistics.median(warm), 4),
                           "cold_start_seconds_median": round(statistics.median(cold), 3),
                           "repeats": repeats}, indent=2))


if __name__ == "__main__":
    main()
