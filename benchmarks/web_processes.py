"""How fast the web server gets a new analysis process: forked from its preloaded fork server
(the server's way, ``facial_expressions.web.processes``) against spawned afresh (the way before).

Each measurement runs in a fresh interpreter, so every fork server starts from nothing: the time
until an :class:`AnalysisPool` of ``--workers`` processes is ready (the server's start-up), then
``--restarts`` replacements of a worker one after the other (what a photo over its time budget
costs; a video job's process starts the same way). The two methods alternate; medians printed.

    python benchmarks/web_processes.py [--repeats 5] [--workers 1] [--restarts 3]
"""

import json
import statistics
import subprocess
import sys

import click

CHILD = r"""
import json, multiprocessing, sys, time
def main(method, workers, restarts):
    from facial_expressions.web import pool as pool_module, processes
    if method == "spawn":
        processes.context = lambda: multiprocessing.get_context("spawn")
    start = time.perf_counter()
    pool = pool_module.AnalysisPool(workers, 1, 60.0, None).start()
    ready = time.perf_counter() - start
    replaced = []
    for _ in range(restarts):
        start = time.perf_counter()
        pool._restart(pool._all[0])
        replaced.append(time.perf_counter() - start)
    pool.close()
    print(json.dumps({"start": ready, "restarts": replaced}))
if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


@click.command()
@click.option("--repeats", default=5, show_default=True)
@click.option("--workers", default=1, show_default=True)
@click.option("--restarts", default=3, show_default=True)
def main(repeats, workers, restarts):
    import os
    import tempfile

    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {"forkserver": {"start": [], "restart": []}, "spawn": {"start": [], "restart": []}}
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as fh:
            fh.write(CHILD)
        for r in range(repeats):
            for method in (("forkserver", "spawn") if r % 2 == 0 else ("spawn", "forkserver")):
                out = subprocess.run([sys.executable, script, method, str(workers), str(restarts)], cwd=project,
                                     env=dict(os.environ, PYTHONPATH=project), capture_output=True, text=True,
                                     check=True)
                seen = json.loads(out.stdout.strip().splitlines()[-1])
                results[method]["start"].append(seen["start"])
                results[method]["restart"].extend(seen["restarts"])
    print(f"{repeats} repeats, {workers} worker(s), {restarts} replacements each, methods alternating; load {os.getloadavg()[0]:.1f}")
    for method, seen in results.items():
        print(f"  {method:10s} pool ready {statistics.median(seen['start']):.2f} s "
              f"(range {min(seen['start']):.2f}-{max(seen['start']):.2f}), "
              f"a replacement {statistics.median(seen['restart']):.2f} s "
              f"(range {min(seen['restart']):.2f}-{max(seen['restart']):.2f})")


if __name__ == "__main__":
    main()
