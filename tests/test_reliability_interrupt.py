"""Interrupted and concurrent runs (issue 6): SIGKILL at random moments and two runs on one output,
for features.extract, classifiers.train and classifiers.benchmark.

What must hold: an output file is written whole or not at all (the old file stays, byte for byte,
until the new one is complete); an interrupted extraction resumes to the table an uninterrupted run
gives; a second run on the same output refuses with a one-line error instead of corrupting it.

The kills are real SIGKILLs of real commands in other processes. Where a moment is too short to hit
by chance (the write of a model file, the rename of results.json), the child process is the real
command with one library call slowed down, and it is killed inside that call. The random moments
come from a seeded generator.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from classifiers.artifact import DEFAULT_MODEL, load_model
from classifiers.results import BenchmarkResult
from features.describe import FeatureConfig
from features.extract import extract_dataset
from features.table import load_table
from common.errors import ModelFileError

from conftest import keep_groups

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE_FIELDS = ("X", "columns", "labels", "subjects", "sources", "splits", "status", "n_faces", "augmented")


def assert_tables_identical(a, b):
    for name in TABLE_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), f"table field {name} differs"
    assert a.groups == b.groups and (a.dataset, a.preset) == (b.dataset, b.preset)
    assert FeatureConfig.from_dict(a.config) == FeatureConfig.from_dict(b.config)


def _env():
    env = dict(os.environ)
    for name in ("FER_SHAPE_PREDICTOR", "FER_DASK_SCHEDULER"):
        env.pop(name, None)
    return env


def start(args, stdin=None, env=None):
    """``python args...`` in the background, from the project folder."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=PROJECT_DIR, env=dict(_env(), **(env or {})),
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=PROJECT_DIR, env=_env(), capture_output=True,
                          text=True, timeout=90)


def start_patched(module, args, patch, stdin=None, env=None):
    """The real command ``python -m module args...``, with ``patch`` (Python source) run first."""
    code = "import os, sys, time\n" + textwrap.dedent(patch) + textwrap.dedent(f"""
        import {module} as command
        sys.argv = [{module!r}] + {[str(a) for a in args]!r}
        command.main()
    """)
    return start(["-c", code], stdin=stdin, env=env)


def wait_for_line(proc, text, timeout=60):
    """Read the child's stdout until a line equal to ``text``; fail if it ends or takes too long."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if ready:
            line = proc.stdout.readline()
            if line.strip() == text:
                return
            if not line:
                break
    proc.kill()
    pytest.fail(f"the child never printed {text!r}: {proc.communicate()[1][-2000:]}")


def kill(proc):
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.communicate()[1][-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def finish(proc, timeout=90):
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def visible(folder):
    """Files a user (or a glob such as *.skops) would see: not hidden temporaries, not lock files."""
    return sorted(n for n in os.listdir(folder) if not n.startswith(".") and not n.endswith(".lock"))


# --- a real dataset subset and its uninterrupted table --------------------------------------------

@pytest.fixture(scope="module")
def ck_subset(tmp_path_factory, ckplus_samples):
    """164 CK+48 images (every 6th: all 7 classes, 99 subjects) as a class-per-folder tree of symlinks."""
    root = tmp_path_factory.mktemp("interrupt") / "ck_subset"
    for sample in ckplus_samples[::6]:
        folder = root / os.path.basename(os.path.dirname(sample.path))
        folder.mkdir(parents=True, exist_ok=True)
        os.symlink(sample.path, folder / os.path.basename(sample.path))
    return root


@pytest.fixture(scope="module")
def reference(ck_subset, tmp_path_factory):
    """The uninterrupted extraction (also the training table of the train and benchmark tests)."""
    path = tmp_path_factory.mktemp("reference") / "ck_subset.npz"
    table, summary = extract_dataset(ck_subset, path, preset="ckplus48", jobs=1, progress=False)
    assert summary["faces"] == len(table) == 164
    return table, path


@pytest.fixture(scope="module")
def training_table(reference, tmp_path_factory):
    """The training table of the train and benchmark tests: the uninterrupted table's 164 faces with
    its SMALL_GROUPS columns (1,081 of 5,303). What they check (the old output kept whole, the lock)
    needs a real table, not the part-patch columns that made each fit and benchmark 5x slower."""
    return keep_groups(reference[1], tmp_path_factory.mktemp("training") / "ck_subset_small.npz")


# --- features.extract ------------------------------------------------------------------------------

def _chunks(partial):
    try:
        return sum(n.startswith("chunk_") and n.endswith(".npz") for n in os.listdir(partial))
    except FileNotFoundError:
        return 0


def test_extraction_killed_three_times_at_random_moments_resumes_to_the_same_table(ck_subset, reference,
                                                                                 tmp_path):
    """Three SIGKILLs, each after a random number of checkpoints (chunks of 4 images) plus a random
    fraction of the next one; after each, nothing exists under the output name. The rerun resumes
    and gives exactly the uninterrupted table."""
    rng = np.random.default_rng(2024)
    output, partial = tmp_path / "out.npz", tmp_path / "out.npz.partial"
    code = textwrap.dedent(f"""
        from features.extract import extract_dataset
        extract_dataset({str(ck_subset)!r}, {str(output)!r}, preset="ckplus48", jobs=1, chunk_size=4,
                        progress=False)
    """)
    n_chunks, done = 41, 0
    for kill_number in range(3):
        # the next kill lands 1 to 8 checkpoints further on, a random moment into the chunk after
        target = done + int(rng.integers(1, 9))
        jitter = float(rng.uniform(0, 0.03))
        assert target < n_chunks
        proc = start(["-c", code])
        try:
            deadline = time.time() + 60
            while proc.poll() is None and _chunks(partial) < target and time.time() < deadline:
                time.sleep(0.002)
            time.sleep(jitter)
            kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not output.exists(), f"kill {kill_number + 1}: a file appeared under the output name"
        assert visible(tmp_path) == ["out.npz.partial"]
        assert _chunks(partial) >= target > done
        done = _chunks(partial)
    table, summary = extract_dataset(ck_subset, output, preset="ckplus48", jobs=1, chunk_size=4, progress=False)
    assert 0 < summary["resumed"] < len(table) and summary["resumed"] == 4 * done
    assert_tables_identical(reference[0], table)
    assert_tables_identical(reference[0], load_table(output))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]


def test_two_extractions_started_on_one_output_do_not_corrupt_it(ck_subset, reference, tmp_path):
    """Two real extraction commands started together: the second refuses with one line (exit 1) while
    the first runs, or runs after it; either way the table is the uninterrupted one."""
    output = tmp_path / "out.npz"
    args = ["-m", "features.extract", ck_subset, "-o", output, "--preset", "ckplus48", "-j", "1", "-q"]
    procs = [start(args), start(args)]
    results = [finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 1]), results
    for code, out, err in results:
        assert "Traceback" not in err
        if code == 1:
            assert err.strip().splitlines() == [f"error: {output}: another extraction is writing this file"]
            assert out == ""
    assert_tables_identical(reference[0], load_table(output))
    assert sorted(os.listdir(tmp_path)) == ["out.npz"]


# --- classifiers.train -----------------------------------------------------------------------------

#: The model file is written in two zip members; stop after the first, in the temporary file.
PAUSE_IN_WRITE = """
import zipfile
_writestr = zipfile.ZipFile.writestr
def writestr(self, name, data, *args, **kwargs):
    _writestr(self, name, data, *args, **kwargs)
    if name == "meta.json":
        self.fp.flush()
        print("WRITING", flush=True)
        time.sleep(600)
zipfile.ZipFile.writestr = writestr
"""

#: Announce the start of the fit (inside the output lock), then fit for real; never write.
ANNOUNCE_FIT = """
import classifiers.train
_train_model = classifiers.train.train_model
def train_model(*args, **kwargs):
    print("FITTING", flush=True)
    if os.environ.get("HOLD") == "stdin":
        sys.stdin.read()
    result = _train_model(*args, **kwargs)
    if os.environ.get("HOLD") != "stdin":
        time.sleep(600)  # a kill drawn later than the fit lands here: after the fit, before the write
    return result
classifiers.train.train_model = train_model
"""


@pytest.fixture()
def old_model(tmp_path):
    """An existing model file at the output path (the shipped model: it knows no 'contempt')."""
    path = tmp_path / "model.skops"
    shutil.copy(DEFAULT_MODEL, path)
    assert "contempt" not in load_model(path).labels
    return path, path.read_bytes()


def _assert_intact(path, data):
    assert path.read_bytes() == data, "the old model file changed"
    assert "contempt" not in load_model(path).labels
    assert visible(path.parent) == [path.name]


def test_killed_training_leaves_the_old_model_file_intact(training_table, old_model):
    """SIGKILL during the fit (two random moments) and in the middle of writing the new file: the
    old model file stays byte-identical and loads; the half-written temporary is hidden, named
    apart, and refused as a model. A complete run then replaces it with a model that loads."""
    path, data = old_model
    table = training_table
    rng = np.random.default_rng(7)
    full_grid = [table, "-o", path, "--model", "logreg", "-q", "-j", "1"]  # a search of a few seconds
    for delay in rng.uniform(0, 1.2, size=2):
        proc = start_patched("classifiers.train", full_grid, ANNOUNCE_FIT)
        wait_for_line(proc, "FITTING")
        time.sleep(delay)
        kill(proc)
        _assert_intact(path, data)

    proc = start_patched("classifiers.train", full_grid[:-3] + ["--quick", "-q", "-j", "1"], PAUSE_IN_WRITE)
    wait_for_line(proc, "WRITING")
    kill(proc)
    _assert_intact(path, data)
    partial, = [n for n in os.listdir(path.parent) if n.startswith(".")]
    assert partial.startswith(".model.skops.tmp-")
    with pytest.raises(ModelFileError):
        load_model(path.parent / partial)

    result = run(["-m", "classifiers.train", table, "-o", path, "--quick", "-q", "-j", "1"])
    assert result.returncode == 0, result.stderr
    model = load_model(path)
    assert "contempt" in model.labels and model.meta["training_data"]["n_faces"] == 164
    assert not (path.parent / "model.skops.lock").exists()


def test_second_training_on_the_same_output_is_refused(training_table, old_model):
    """While one training holds the output (paused in its fit), a second one exits 1 with one line
    and leaves the old file alone; the first then finishes and writes its model."""
    path, data = old_model
    args = [training_table, "-o", path, "--quick", "-q", "-j", "1"]
    first = start_patched("classifiers.train", args, ANNOUNCE_FIT, stdin=subprocess.PIPE, env={"HOLD": "stdin"})
    try:
        wait_for_line(first, "FITTING")
        second = run(["-m", "classifiers.train", *args])
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [f"error: {path}: another training is writing this file"]
        _assert_intact(path, data)
        first.stdin.close()
        code, out, err = finish(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 0, err
    assert "contempt" in load_model(path).labels
    assert sorted(os.listdir(path.parent)) == ["model.skops"]


# --- classifiers.benchmark -------------------------------------------------------------------------

#: Hold the benchmark inside its output lock until stdin closes.
HOLD_BENCHMARK = """
import classifiers.benchmark
_run_benchmark = classifiers.benchmark.run_benchmark
def run_benchmark(*args, **kwargs):
    print("RUNNING", flush=True)
    sys.stdin.read()
    return _run_benchmark(*args, **kwargs)
classifiers.benchmark.run_benchmark = run_benchmark
"""

#: Stop just before results.json is renamed into place (its temporary complete and synced).
PAUSE_BEFORE_RENAME = """
_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith("results.json"):
        print("REPLACING", flush=True)
        time.sleep(600)
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
"""


def _benchmark_args(table, report):
    return [table, "-o", report, "--quick", "--models", "logreg", "-j", "1", "-q"]


def test_second_benchmark_on_the_same_report_is_refused_and_kills_leave_results_intact(training_table, tmp_path):
    """A benchmark holding REPORT: a second one on it exits 1 with one line. The first then completes
    (results.json A). A run killed at a random moment leaves a results.json that is whole (A or its
    complete successor); a run killed at the rename of results.json leaves A byte for byte."""
    report = tmp_path / "report"
    args = _benchmark_args(training_table, report)
    first = start_patched("classifiers.benchmark", args, HOLD_BENCHMARK, stdin=subprocess.PIPE)
    try:
        wait_for_line(first, "RUNNING")
        second = run(["-m", "classifiers.benchmark", *args])
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "another benchmark" in lines[0], lines
        assert not (report / "results.json").exists()
        first.stdin.close()
        code, _, err = finish(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 0, err
    results_a = (report / "results.json").read_bytes()
    accuracy = BenchmarkResult.from_dict(json.loads(results_a)).models[0].accuracy
    files = visible(report)
    assert "results.json" in files and "report.md" in files

    rng = np.random.default_rng(11)
    proc = start(["-m", "classifiers.benchmark", *args])
    time.sleep(float(rng.uniform(1.0, 4.0)))  # imports, folds, plots or writes: wherever it is
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=90)
    results = BenchmarkResult.read(report / "results.json")  # whole, whichever it is
    assert results.models[0].name == "logreg" and results.models[0].accuracy == accuracy
    assert visible(report) == files
    results_a = (report / "results.json").read_bytes()

    proc = start_patched("classifiers.benchmark", args, PAUSE_BEFORE_RENAME)
    wait_for_line(proc, "REPLACING")
    kill(proc)
    assert (report / "results.json").read_bytes() == results_a
    assert visible(report) == files
    assert any(name.startswith(".results.json.tmp-") for name in os.listdir(report))


def _children(pid):
    """The process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_ends_a_benchmark_and_its_worker_processes(training_table, tmp_path):
    """SIGTERM (kill, a job scheduler, a container stopping) ends a benchmark as Ctrl-C does: exit 143,
    one line, no report, and its worker processes stop too (before, they were left orphaned,
    computing their grid searches for minutes)."""
    report = tmp_path / "report"
    proc = start(["-m", "classifiers.benchmark", training_table, "-o", report, "--models", "rf,xgboost", "-j", "2", "-q"])
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        time.sleep(0.1)
        workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "no worker processes started: " + proc.communicate()[1][-2000:]
    time.sleep(1.0)   # the workers are inside their first grid searches
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143 and err.strip().splitlines()[-1] == "terminated", err
    deadline = time.time() + 30
    while time.time() < deadline and any(_running(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)], "worker processes outlived the benchmark"
    assert not (report / "results.json").exists()


def test_sigterm_ends_predict_on_a_folder_and_its_forked_workers(datasets_dir):
    """predict over a folder forks its workers from a process whose SIGTERM handler raises: the
    workers must not inherit it (a pool's terminate would print their tracebacks)."""
    folders = sorted(p for name in ("ckplus48", "jaffe") for p in (datasets_dir / name).iterdir() if p.is_dir())
    proc = start(["-m", "classifiers.predict", *folders, "-j", "2"])   # 1,194 photos
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        time.sleep(0.05)
        workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "no worker processes started: " + proc.communicate()[1][-2000:]
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 143 and err.strip().splitlines()[-1] == "terminated", err[-2000:]
    assert "Traceback" not in err and out.count("\n") > 0, err[-2000:]   # some faces were printed first
    deadline = time.time() + 30
    while time.time() < deadline and any(_running(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _running(w)], "worker processes outlived predict"
