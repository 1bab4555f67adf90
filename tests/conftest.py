"""Shared fixtures: the real datasets beside the project, and small real subsets built from them.

The datasets live at ``<project>/../shared/datasets`` (see that folder's README.md; the
``FER_DATASETS`` environment variable points elsewhere). CI runs from a fresh clone, so
nothing here relies on ``<project>/data``: whatever a test needs is built in pytest's
temporary folders.

Two tiers: a test that uses a dataset (any fixture built on ``datasets_dir``, or a module
marked ``pytestmark = pytest.mark.integration``) is an *integration* test; every other test
is a *unit* test that needs no dataset (the shipped model and dlib's model files are part
of the install, not datasets). ``make test-fast`` runs the unit tier with the datasets
hidden, so a unit test that reaches for one fails instead of passing by accident.
"""

import contextlib
import fcntl
import os
import pathlib
import shutil
import signal
import subprocess
import sys

# One BLAS thread in the test processes and the commands they start (unless the environment says
# otherwise): the parallelism comes from pytest-xdist's processes and the commands' own worker
# processes. Multithreaded OpenBLAS beside another busy process spin-waits, and made the small
# matrix products of the tests 10-30x slower (as in classifiers.search.single_blas_thread); the
# commands' own pools already run one thread each. Set before numpy loads; threadpoolctl covers
# a BLAS a plugin may have loaded earlier.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(limits=int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
DATASETS_DIR = pathlib.Path(os.environ.get("FER_DATASETS") or PROJECT_DIR.parent / "shared" / "datasets")
#: Real files the tests use directly: the shared folder beside the project (datasets, videos, music).
SHARED_DIR = DATASETS_DIR.parent


# The Ctrl-C tests send SIGINT to the commands they start and expect a terminal's Ctrl-C. A test run
# started in the background (a CI job, a shell's `&`, pytest-xdist's workers under it) may have
# SIGINT ignored, and an ignored signal stays ignored in every child: give the test processes
# Python's own handler, which their children get back as the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "datasets_dir" in getattr(item, "fixturenames", ()) or item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


def _require(path, what):
    if not path.is_dir():
        pytest.fail(f"{what} not found at {path}: the test suite needs the real datasets in "
                    f"<project>/../shared/datasets (see its README.md)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def datasets_dir():
    return _require(DATASETS_DIR, "the shared datasets folder")


@pytest.fixture(scope="session")
def ckplus_dir(datasets_dir):
    return _require(datasets_dir / "ckplus48", "CK+48")


@pytest.fixture(scope="session")
def jaffe_dir(datasets_dir):
    return _require(datasets_dir / "jaffe", "JAFFE")


@pytest.fixture(scope="session")
def fer_dir(datasets_dir):
    return _require(datasets_dir / "fer2013", "FER-2013")


@pytest.fixture(scope="session")
def jaffe_samples(jaffe_dir):
    from landmarks.datasets import load_dataset

    return load_dataset(jaffe_dir, "jaffe")


@pytest.fixture(scope="session")
def ckplus_samples(ckplus_dir):
    from landmarks.datasets import load_dataset

    return load_dataset(ckplus_dir, "ckplus48")


@pytest.fixture(scope="session")
def jaffe_face_image(jaffe_dir):
    """One real JAFFE face (256x256 gray uint8) and its path."""
    path = jaffe_dir / "happy" / "KA.HA1.29.tiff"
    from landmarks.io import read_image

    return read_image(path), path


@pytest.fixture(scope="session")
def jaffe_faces(jaffe_samples):
    """Landmarks of 21 real JAFFE faces (every 10th image: all subjects and expressions), by HOG."""
    from landmarks.io import read_image
    from landmarks.shape import find_faces

    out = []
    for sample in jaffe_samples[::10]:
        image = read_image(sample.path)
        faces = find_faces(image, "hog")
        assert faces, f"no face found in {sample.path}"
        out.append((sample, image, faces[0]))
    return out


@pytest.fixture(scope="session")
def ckplus_faces(ckplus_samples):
    """Landmarks of 20 real CK+48 faces (spread over all classes), whole-image box."""
    from landmarks.io import read_image
    from landmarks.shape import find_faces

    out = []
    for sample in ckplus_samples[::49]:
        image = read_image(sample.path)
        faces = find_faces(image, "whole")
        assert len(faces) == 1, f"whole detector gave {len(faces)} faces for {sample.path}"
        out.append((sample, image, faces[0]))
    return out


@pytest.fixture(scope="session")
def real_landmark_sets(jaffe_faces, ckplus_faces):
    """(68, 2) float64 landmark sets of real faces from two datasets."""
    return [np.asarray(face.points, dtype=np.float64) for _, _, face in jaffe_faces + ckplus_faces]


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def drop_root_read_override():
    """For a subprocess's preexec_fn: as root on Linux, drop the capabilities that let root read a
    chmod-000 file (from the bounding set, so they stay dropped across exec); a no-op otherwise."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0 and hasattr(libc, "prctl"):
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def _run_python(args, env=None, timeout=120, **kwargs):
    full_env = dict(os.environ)
    for name in ("FER_SHAPE_PREDICTOR", "FER_DASK_SCHEDULER"):  # no outside model file or cluster
        full_env.pop(name, None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=PROJECT_DIR, env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def run_python():
    """``run_python(args, env=None)``: run ``python args...`` from the project folder in a fresh
    interpreter (FER_SHAPE_PREDICTOR and FER_DASK_SCHEDULER cleared unless given) -> CompletedProcess
    with text output."""
    return _run_python


# ---- real feature tables and one small trained model (classifier and explanation tests) ----

@contextlib.contextmanager
def built_once(tmp_path_factory, name):
    """``with built_once(tmp_path_factory, name) as (folder, build):`` a folder every test process
    of this run shares (pytest-xdist's workers, or this process alone): the first process to get
    here builds it (``build`` true), under a lock the others wait on, then reuse it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = not done.exists()
        if build:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        yield folder, build
        done.touch()


@pytest.fixture(scope="session")
def tables(tmp_path_factory, jaffe_dir, ckplus_samples):
    """Real feature tables: all of JAFFE, and one frame per CK+ sequence (327 of 981 images)."""
    with built_once(tmp_path_factory, "tables") as (folder, build):
        if build:
            _build_tables(folder, jaffe_dir, ckplus_samples)
    return {"jaffe": folder / "jaffe.npz", "ck_subset": folder / "ck_subset.npz"}


def _build_tables(folder, jaffe_dir, ckplus_samples):
    from features.extract import extract_dataset

    extract_dataset(jaffe_dir, folder / "jaffe.npz", jobs=2, progress=False)
    # one frame per CK+ sequence (the 3 frames of a sequence are near-duplicates, sorted together):
    # only those images are extracted, from a tree of links with the dataset's folder and file
    # names, so the table has the rows of the full table's every third row (sources aside) at a
    # third of the cost
    images = folder / "ck_subset_images" / "ckplus48"
    for sample in ckplus_samples[::3]:
        link = images / pathlib.Path(sample.path).parent.name / pathlib.Path(sample.path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(pathlib.Path(sample.path).resolve())
    extract_dataset(images, folder / "ck_subset.npz", "ckplus48", jobs=2, progress=False)


#: The columns of the small tables: the shape groups and the whole-face HOG, 1,081 of 5,303.
SMALL_GROUPS = ("geometry", "landmarks", "action_units", "face_hog")


@pytest.fixture(scope="session")
def small_tables(tables, tmp_path_factory):
    """The same faces as ``tables`` with only the SMALL_GROUPS columns: for tests of the benchmark's
    machinery (protocols, Dask against local, reports), where every model on all 5,303 columns
    costs minutes (XGBoost most) and proves nothing more. The quick grids' two group choices
    (shape and parts, all) still differ on them."""
    folder = tmp_path_factory.mktemp("small_tables")
    return {name: keep_groups(path, folder / f"{name}.npz") for name, path in tables.items()}


def keep_groups(path, dest, groups=SMALL_GROUPS):
    """Write the feature table at ``path`` with only the columns of ``groups`` (every row) to ``dest``."""
    import dataclasses

    from features import load_table

    table = load_table(path)
    slices, start = {}, 0
    for group in groups:
        width = table.groups[group].stop - table.groups[group].start
        slices[group], start = slice(start, start + width), start + width
    columns = table.group_columns(groups)
    dataclasses.replace(table, X=table.X[:, columns], columns=table.columns[columns], groups=slices,
                        config=dict(table.config, groups=list(groups))).save(dest)
    return dest


@pytest.fixture(scope="session")
def jaffe_model(tables, tmp_path_factory):
    from click.testing import CliRunner

    from classifiers import train as train_cli

    with built_once(tmp_path_factory, "model") as (folder, build):
        path = folder / "jaffe_logreg.skops"
        if build:
            result = CliRunner().invoke(train_cli.main, [str(tables["jaffe"]), "-o", str(path), "--model", "logreg",
                                                         "--quick", "-j", "2", "-q"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
    return path
