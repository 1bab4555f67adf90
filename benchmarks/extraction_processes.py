"""Extraction as whole processes, side by side: the bare loop against ``features.extract`` of one
or more source trees (e.g. main and a branch), start-up, model loading and table writing included.

The bare loop: two processes, each decoding every second image and running dlib's 68-point shape
predictor on it (on the whole image for ``whole``, on the first HOG detection for ``hog``). The
pipeline: ``python -m features.extract SUBSET -o OUT --detector D --preset folder --jobs 2 -q``
run from each tree. Trees alternate in order between repeats; compare only figures of one run.

    python benchmarks/extraction_processes.py ../shared/datasets/fer2013/test --step 3 --repeats 4 . ../other/tree
    python benchmarks/extraction_processes.py ../shared/datasets/jaffe --detector hog --repeats 3 .
    python benchmarks/extraction_processes.py ../shared/datasets/fer2013/test --groups geometry --repeats 3 .
"""

import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

import click


def bare_worker(listfile, k, n, detect):
    """Every n-th image of ``listfile`` from the k-th: extraction_speed's bare loop, in this process."""
    from extraction_speed import _bare_worker

    return _bare_worker(open(listfile).read().split("\n")[k::n], detect)


@click.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.argument("trees", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--detector", type=click.Choice(["whole", "hog"]), default="whole", show_default=True)
@click.option("--step", default=1, show_default=True, help="Every step-th image (a tree of links to them).")
@click.option("--repeats", default=3, show_default=True)
@click.option("--groups", default=None, help="Feature groups for the pipeline (default: extract's default groups); "
              "e.g. geometry shows the floor: landmarks, alignment and the cheapest group.")
def main(dataset, trees, detector, step, repeats, groups):
    paths = sorted(glob.glob(os.path.join(os.path.abspath(dataset), "*", "*")))[::step]
    trees = [os.path.abspath(t) for t in trees]
    results = {"bare": []} | {t: [] for t in trees}
    with tempfile.TemporaryDirectory() as tmp:
        subset = os.path.join(tmp, os.path.basename(os.path.normpath(dataset)))
        for path in paths:
            folder = os.path.join(subset, os.path.basename(os.path.dirname(path)))
            os.makedirs(folder, exist_ok=True)
            os.symlink(path, os.path.join(folder, os.path.basename(path)))
        listfile = os.path.join(tmp, "paths.txt")
        with open(listfile, "w") as fh:
            fh.write("\n".join(paths))
        for r in range(repeats):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            procs = [subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
                                       f"from extraction_processes import bare_worker; "
                                       f"bare_worker({listfile!r}, {k}, 2, {detector == 'hog'})"]) for k in range(2)]
            assert all(p.wait() == 0 for p in procs)
            results["bare"].append(len(paths) / (time.perf_counter() - start))
            for i, tree in enumerate(trees if r % 2 == 0 else trees[::-1]):
                out = os.path.join(tmp, f"table{trees.index(tree)}.npz")
                if os.path.exists(out):
                    os.remove(out)
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "features.extract", subset, "-o", out, "--detector", detector,
                                "--preset", "folder", "--jobs", "2", "-q"]
                               + (["--groups", groups] if groups else []), cwd=tree, env=dict(os.environ, PYTHONPATH=tree),
                               check=True, stdout=subprocess.DEVNULL)
                results[tree].append(len(paths) / (time.perf_counter() - start))
            click.echo(f"repeat {r + 1} [load {load:.1f} -> {os.getloadavg()[0]:.1f}]: bare {results['bare'][-1]:.0f} img/s; "
                       + "; ".join(f"{t} {results[t][-1]:.0f} img/s (ratio {results[t][-1] / results['bare'][-1]:.2f})"
                                   for t in trees))
        medians = {k: statistics.median(v) for k, v in results.items()}
        click.echo(f"{len(paths)} images, medians: bare {medians['bare']:.0f} img/s; "
                   + "; ".join(f"{t} {medians[t]:.0f} img/s (ratio {medians[t] / medians['bare']:.2f})" for t in trees))
        if len(trees) > 1:
            import numpy as np

            tables = [np.load(os.path.join(tmp, f"table{i}.npz")) for i in range(len(trees))]
            same = all(np.array_equal(tables[0][key], t[key]) for t in tables[1:] for key in ("X", "status", "labels"))
            click.echo(f"feature tables of the trees identical: {same}")


if __name__ == "__main__":
    main()
