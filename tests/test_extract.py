"""features.extract: one pass over a real dataset subset into a feature table; resume, lock, CLI, pixelize.

The dataset is a temporary class-per-folder tree of symlinks to 123 CK+48 images (every 8th, all
7 classes) plus one JAFFE photo and six bad files, so every per-image status shows up.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from features import FeatureConfig, describe_face, load_table, pixelize
from features.extract import ExtractionLockedError, extract_dataset, output_lock
from features.table import FeatureTable
from landmarks.datasets import FER2013_CSV_LABELS, load_fer2013_folders, write_fer2013_csv
from common.errors import DatasetError
from landmarks.io import read_image
from landmarks.shape import find_faces

TABLE_FIELDS = ("X", "columns", "labels", "subjects", "sources", "splits", "status", "n_faces")

#: the bad (or special) files added to the "happy" class, by file name -> expected status
SPECIAL = {
    "S901_001_00000001.png": "corrupt",        # a real CK+ PNG cut in half
    "S902_001_00000001.png": "empty_file",
    "S903_001_00000001.png": "no_face",        # flat gray 256x256: auto -> hog -> nothing
    "S904_001_00000001.png": "not_an_image",   # a text file
    "S905_001_00000001.png": "too_small",      # a real face reduced to 8x8
    "S906_001_00000001.tiff": "ok",            # a real JAFFE photo: auto -> hog finds it
    "S907_001_00000001.png": "too_large",      # header declares 50,000 x 50,000 pixels
}


def _forged_png(width, height):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def assert_tables_identical(a, b):
    for name in TABLE_FIELDS + (("augmented",) if hasattr(a, "augmented") else ()):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), f"table field {name} differs"
    assert a.groups == b.groups
    assert FeatureConfig.from_dict(a.config) == FeatureConfig.from_dict(b.config)
    assert (a.dataset, a.preset) == (b.dataset, b.preset)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ckplus_samples, jaffe_dir):
    root = tmp_path_factory.mktemp("extract") / "ck_subset"
    for sample in ckplus_samples[::8]:
        folder = os.path.basename(os.path.dirname(sample.path))
        (root / folder).mkdir(parents=True, exist_ok=True)
        os.symlink(sample.path, root / folder / os.path.basename(sample.path))
    happy = root / "happy"
    real_png = open(ckplus_samples[500].path, "rb").read()
    (happy / "S901_001_00000001.png").write_bytes(real_png[:len(real_png) // 2])
    (happy / "S902_001_00000001.png").write_bytes(b"")
    Image.new("L", (256, 256), 128).save(happy / "S903_001_00000001.png")
    (happy / "S904_001_00000001.png").write_text("not a picture\n" * 20)
    Image.fromarray(read_image(ckplus_samples[500].path)).resize((8, 8)).save(happy / "S905_001_00000001.png")
    os.symlink(jaffe_dir / "happy" / "KA.HA1.29.tiff", happy / "S906_001_00000001.tiff")
    (happy / "S907_001_00000001.png").write_bytes(_forged_png(50_000, 50_000))
    return root


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted extraction with 2 worker processes, chunks of 16, and pixelize."""
    out = tmp_path_factory.mktemp("reference")
    table, summary = extract_dataset(dataset, out / "ref.npz", preset="ckplus48", jobs=2, chunk_size=16,
                                     pixelize_dir=out / "pix", progress=False)
    return table, summary, out / "ref.npz", out / "pix"


def test_table_shapes_columns_and_groups(reference):
    table, _, _, _ = reference
    names, slices = FeatureConfig().columns()
    n = 123 + len(SPECIAL)
    assert len(table) == n
    assert table.X.shape == (n, len(names)) and table.X.dtype == np.float32
    assert table.columns.tolist() == list(names)
    assert table.groups == slices
    assert list(slices) == list(FeatureConfig().groups)
    # groups tile the columns in order, and carry their names
    assert slices[list(slices)[0]].start == 0 and slices[list(slices)[-1]].stop == len(names)
    for (g1, s1), (g2, s2) in zip(list(slices.items()), list(slices.items())[1:]):
        assert s1.stop == s2.start
    assert table.columns[slices["geometry"]][0] == "mouth_width"
    assert all(c.startswith("point") for c in table.columns[slices["landmarks"]])
    assert all(c.startswith("hog_face_") for c in table.columns[slices["face_hog"]])
    assert all(c.startswith("gabor_") for c in table.columns[slices["gabor"]])
    assert FeatureConfig.from_dict(table.config) == FeatureConfig()
    assert table.preset == "ckplus48" and table.dataset == "ck_subset"


def test_labels_subjects_sources(reference, dataset, ckplus_samples):
    table, _, _, _ = reference
    expected = {}
    for sample in ckplus_samples[::8]:
        folder = os.path.basename(os.path.dirname(sample.path))
        expected[os.path.join(str(dataset), folder, os.path.basename(sample.path))] = (sample.label, sample.subject)
    for name in SPECIAL:
        expected[os.path.join(str(dataset), "happy", name)] = ("happy", name[:4])
    assert sorted(table.sources.tolist()) == sorted(expected)
    for source, label, subject, split in zip(table.sources, table.labels, table.subjects, table.splits):
        assert (label, subject) == expected[source] and split == ""
    assert set(table.labels) == {"angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"}


def test_status_per_image(reference):
    table, summary, _, _ = reference
    by_name = {os.path.basename(s): (st, nf, row) for s, st, nf, row in
               zip(table.sources, table.status, table.n_faces, table.X)}
    for name, status in SPECIAL.items():
        assert by_name[name][0] == status, name
    ck = [v for k, v in by_name.items() if k not in SPECIAL]
    assert len(ck) == 123 and all(st == "ok" and nf == 1 for st, nf, _ in ck)
    assert by_name["S906_001_00000001.tiff"][1] == 1
    for status, n_faces, row in by_name.values():
        if status == "ok":
            assert np.all(np.isfinite(row)) and np.count_nonzero(row) > row.size // 2
        else:
            assert n_faces == 0 and not row.any()  # failed rows are zeros
    assert table.ok.sum() == 124
    assert summary["images"] == 130 and summary["faces"] == 124 and summary["resumed"] == 0
    assert summary["failures"] == {"corrupt": 1, "empty_file": 1, "no_face": 1, "not_an_image": 1,
                                   "too_large": 1, "too_small": 1}


def test_rows_equal_the_per_image_api(reference):
    """The workers' rows are bit-identical to describe_face(find_faces(read_image(path))) here."""
    table, _, _, _ = reference
    config = FeatureConfig()
    for i in list(np.flatnonzero(table.ok))[::20]:
        face = find_faces(read_image(table.sources[i]), config.detector)[0]
        np.testing.assert_array_equal(table.X[i], describe_face(face, config))


def test_extraction_with_other_threads_running_does_not_fork(reference, dataset, tmp_path, monkeypatch):
    """The local workers are forked from the extracting process only while it has no other thread
    (a forked worker can inherit a lock another thread held and wait on it for ever): with one
    running, they are fresh processes, and the table is the same."""
    import multiprocessing
    import threading

    get_context = multiprocessing.get_context

    def no_fork(method=None):
        assert method != "fork", "a fork pool was started with another thread running"
        return get_context(method)

    monkeypatch.setattr(multiprocessing, "get_context", no_fork)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(60,), daemon=True)
    thread.start()
    try:
        table, _ = extract_dataset(dataset, tmp_path / "t.npz", preset="ckplus48", jobs=2, chunk_size=16,
                                   progress=False)
    finally:
        stop.set()
        thread.join()
        monkeypatch.undo()
    assert_tables_identical(table, reference[0])


FORK_AFTER_OPENCV = textwrap.dedent("""
    import sys, cv2, numpy as np
    cv2.setNumThreads(4)   # a thread pool even on a one-core machine
    image = np.random.default_rng(0).random((3000, 3000), dtype=np.float32)
    for _ in range(3):
        cv2.GaussianBlur(image, (31, 31), 5)   # OpenCV's worker threads are now running
    threads = cv2.getNumThreads()
    from features.extract import extract_dataset
    table, _ = extract_dataset(sys.argv[1], sys.argv[2], preset="ckplus48", jobs=2, chunk_size=16, progress=False)
    print(len(table.X), threads, cv2.getNumThreads())
""")


def test_extraction_forked_after_opencv_ran_in_the_process_finishes(reference, dataset, tmp_path):
    """A process that has used OpenCV's thread pool and then extracts with two forked workers
    finishes with the same table (the workers used to wait for ever on the inherited pool in
    their first cv2.setNumThreads: CI hung on it), and gets its OpenCV threads back."""
    from conftest import PROJECT_DIR

    out = tmp_path / "t.npz"
    proc = subprocess.Popen([sys.executable, "-c", FORK_AFTER_OPENCV, str(dataset), str(out)], cwd=PROJECT_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the workers too
        proc.communicate()
        pytest.fail("extraction forked after OpenCV ran did not finish in 180 s (deadlocked workers)")
    assert proc.returncode == 0, stderr
    rows, threads_before, threads_after = map(int, stdout.split())
    assert rows == len(reference[0]) and threads_before > 1 and threads_after == threads_before
    assert_tables_identical(load_table(out), reference[0])


def test_saved_table_reads_back_identically(reference):
    table, _, path, _ = reference
    loaded = load_table(path)
    assert_tables_identical(table, loaded)
    assert isinstance(loaded, FeatureTable)
    # nothing else left behind: no checkpoint folder, no lock, no temporary file
    assert sorted(os.listdir(path.parent)) == ["pix", "ref.npz"]


def test_table_select_and_group_columns(reference):
    table, _, _, _ = reference
    ok = table.select(table.ok)
    assert len(ok) == 124 and (ok.status == "ok").all()
    np.testing.assert_array_equal(ok.X, table.X[table.ok])
    cols = table.group_columns(["geometry", "face_hog"])
    assert table.columns[cols].tolist() == (table.columns[table.groups["geometry"]].tolist()
                                            + table.columns[table.groups["face_hog"]].tolist())
    with pytest.raises(DatasetError):
        table.group_columns(["parts_lbp"])


def test_load_table_refuses_non_tables(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    (tmp_path / "empty.npz").write_bytes(b"")
    np.savez(tmp_path / "other.npz", X=np.zeros(3))
    for name in ("text.npz", "empty.npz", "other.npz", "missing.npz"):
        with pytest.raises(DatasetError):
            load_table(tmp_path / name)


def test_truncated_table_is_a_dataset_error(tmp_path, reference):
    data = reference[2].read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DatasetError):
        load_table(tmp_path / "cut.npz")


def test_pixelize_images(reference, dataset):
    table, _, _, pix = reference
    files = sorted(os.listdir(pix))
    assert len(files) == int((table.n_faces > 0).sum()) == 124
    for name in files[::10]:
        drawn = read_image(pix / name, "rgb")
        row = int(name.split("_")[0])
        source = read_image(table.sources[row])
        assert name.endswith(".png") and os.path.basename(table.sources[row]).split(".")[0] in name
        assert min(drawn.shape[:2]) >= 256  # small faces are enlarged to stay legible
        coloured = (drawn[..., 0] != drawn[..., 1]) | (drawn[..., 1] != drawn[..., 2])
        assert coloured.sum() > 500, f"{name}: no landmark dots drawn?"  # the source is gray
        gray_source = np.array(Image.fromarray(source).resize(drawn.shape[1::-1], Image.BICUBIC))
        assert np.abs(drawn.mean(axis=2) - gray_source).mean() > 2


def test_pixelize_draws_each_dot_in_its_part_colour(jaffe_faces):
    _, image, face = jaffe_faces[3]
    canvas = pixelize(image, [face], ["happy"])
    assert canvas.shape == image.shape + (3,) and canvas.dtype == np.uint8
    assert image.ndim == 2  # the input is left alone
    for index, colour in ((37, (0, 255, 0)), (44, (0, 255, 0)), (51, (255, 60, 60)), (57, (255, 60, 60))):
        x, y = np.round(face.points[index]).astype(int)
        assert tuple(canvas[y, x]) == colour, (index, canvas[y, x])
    x, y, w, h = face.box
    assert tuple(canvas[y + h // 2, x]) == (255, 255, 255)  # the box outline


def test_a_long_label_on_a_face_filling_the_picture_stays_inside_it(jaffe_faces):
    """A face boxed at the picture's edges (a tight crop) with predict's age-and-gender label: the
    label wraps at its commas, stays inside the picture and sits on a dark band."""
    import dataclasses

    _, image, face = jaffe_faces[3]
    edge = dataclasses.replace(face, box=(0, 0, image.shape[1] - 1, image.shape[0] - 1))
    label = "surprise 100%, 104, female"
    canvas = pixelize(image, [edge], [label])
    text = np.all(canvas == (255, 255, 0), axis=2) | (
        (canvas[..., 0] > 120) & (canvas[..., 1] > 120) & (canvas[..., 2] < 60))   # yellow, anti-aliased
    rows, cols = np.nonzero(text)
    assert len(rows) > 100 and cols.max() < canvas.shape[1] - 2 and rows.min() > 0
    assert rows.max() - rows.min() > 30   # two lines of text
    band = canvas[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert np.mean(np.all(band == 0, axis=2)) > 0.3    # on a dark band


# --- resume ----------------------------------------------------------------------------------------

def _chunks(partial):
    return sorted(p for p in os.listdir(partial) if p.startswith("chunk_") and p.endswith(".npz"))


def test_interrupted_extraction_resumes_to_an_identical_table(reference, dataset, tmp_path):
    """SIGKILL a real extraction (another process, checkpoints of 2 images) once a few chunks are
    on disk; rerunning gives exactly the uninterrupted table (computed with 2 workers and chunks of
    16). A damaged checkpoint is recomputed; another chunk size starts afresh, same table."""
    output = tmp_path / "out.npz"
    partial = tmp_path / "out.npz.partial"
    code = textwrap.dedent(f"""
        from features.extract import extract_dataset
        extract_dataset({str(dataset)!r}, {str(output)!r}, preset="ckplus48", jobs=1, chunk_size=2, progress=False)
        print("FINISHED")
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if partial.is_dir() and len(_chunks(partial)) >= 3:
                break
            time.sleep(0.003)
        assert proc.poll() is None, "the extraction ended before it could be interrupted: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not output.exists(), "a table appeared under the output name before the run finished"
    done = _chunks(partial)
    assert 3 <= len(done) < 65
    assert json.load(open(partial / "meta.json"))["n_samples"] == 130

    shutil.copytree(partial, tmp_path / "other.npz.partial")
    damaged = partial / done[1]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a checkpoint cut short

    table, summary = extract_dataset(dataset, output, preset="ckplus48", jobs=1, chunk_size=2, progress=False)
    assert summary["resumed"] == 2 * (len(done) - 1), summary
    assert_tables_identical(reference[0], table)
    assert_tables_identical(reference[0], load_table(output))
    assert not partial.exists() and not (tmp_path / "out.npz.lock").exists()

    table, summary = extract_dataset(dataset, tmp_path / "other.npz", preset="ckplus48", jobs=1, chunk_size=16,
                                     progress=False)
    assert summary["resumed"] == 0  # checkpoints of another chunk size are not reused
    assert_tables_identical(reference[0], table)


def test_checkpoints_of_another_dataset_are_discarded(dataset, tmp_path, reference):
    partial = tmp_path / "t.npz.partial"
    partial.mkdir()
    (partial / "meta.json").write_text(json.dumps({"fingerprint": "something else", "n_samples": 3}))
    np.savez(partial / "chunk_000000.npz", X=np.ones((16, 3), np.float32), status=np.array(["ok"] * 16),
             n_faces=np.ones(16, np.int32))
    table, summary = extract_dataset(dataset, tmp_path / "t.npz", preset="ckplus48", jobs=1, chunk_size=16,
                                     progress=False, limit=20)
    assert summary["resumed"] == 0 and len(table) == 20
    np.testing.assert_array_equal(table.X, reference[0].X[:20])


# --- lock --------------------------------------------------------------------------------------------

def test_second_extraction_to_the_same_output_is_refused(dataset, tmp_path, run_python):
    output = tmp_path / "locked.npz"
    partial = tmp_path / "locked.npz.partial"
    partial.mkdir()
    (partial / "meta.json").write_text("{}")  # someone's checkpoints: must survive the refused run
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom features.extract import output_lock\n"
                               "with output_lock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n",
         str(output)],
        cwd=os.path.dirname(os.path.dirname(__file__)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ExtractionLockedError, match="another extraction"):
            extract_dataset(dataset, output, preset="ckplus48", jobs=1, progress=False, limit=4)
        cli = run_python(["-m", "features.extract", dataset, "-o", output, "--preset", "ckplus48", "-q",
                          "-j", "1", "--limit", "4"])
        assert cli.returncode == 1
        assert cli.stderr.strip().splitlines() == [f"error: {output}: another extraction is writing this file"]
        assert (partial / "meta.json").read_text() == "{}" and not output.exists()
        # the same process cannot take it twice either
        with pytest.raises(ExtractionLockedError):
            with output_lock(str(output)):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert holder.returncode == 0 and not (tmp_path / "locked.npz.lock").exists()
    table, _ = extract_dataset(dataset, output, preset="ckplus48", jobs=1, progress=False, limit=4)
    assert len(table) == 4 and output.exists()


# --- command line ------------------------------------------------------------------------------------

def test_cli_extracts_the_same_table(reference, dataset, tmp_path, run_python):
    output = tmp_path / "cli.npz"
    result = run_python(["-m", "features.extract", dataset, "-o", output, "--preset", "ckplus48", "-j", "1", "-q",
                         "--pixelize", tmp_path / "pix"])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    line, = result.stdout.strip().splitlines()
    assert line.startswith(f"{output}: 130 images") and "124 faces described" in line
    assert "corrupt 1" in line and "no face 1" in line
    assert_tables_identical(reference[0], load_table(output))
    assert len(os.listdir(tmp_path / "pix")) == 124


def _one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_cli_missing_dataset_path(tmp_path, run_python):
    missing = tmp_path / "no_such_dataset"
    result = run_python(["-m", "features.extract", missing, "-o", tmp_path / "x.npz"])
    assert result.returncode == 2
    assert str(missing) in _one_line_error(result)
    assert not (tmp_path / "x.npz").exists()


def test_cli_unknown_preset(dataset, tmp_path, run_python):
    result = run_python(["-m", "features.extract", dataset, "-o", tmp_path / "x.npz", "--preset", "affectnet"])
    assert result.returncode == 2
    assert "affectnet" in _one_line_error(result)


@pytest.mark.parametrize("case", ["not a dataset", "unknown group", "unwritable output", "bad model file"])
def test_cli_user_mistakes_give_one_line(dataset, tmp_path, run_python, case):
    args, env = ["-m", "features.extract", dataset, "-o", tmp_path / "x.npz", "-q", "-j", "1", "--limit", "3"], {}
    expected = ""
    if case == "not a dataset":
        (tmp_path / "empty").mkdir()
        args[2], expected = tmp_path / "empty", "no images"
    elif case == "unknown group":
        args += ["--groups", "geometry,wrinkles"]
        expected = "wrinkles"
    elif case == "unwritable output":
        (tmp_path / "file").write_text("x")
        args[4], expected = tmp_path / "file" / "x.npz", "File exists"
    else:
        (tmp_path / "model.dat").write_text("not a model")
        env, expected = {"FER_SHAPE_PREDICTOR": str(tmp_path / "model.dat")}, "not a dlib shape predictor"
    result = run_python(args, env=env)
    assert result.returncode == 1
    assert expected in _one_line_error(result)


def test_cli_help_reads_like_a_manual(run_python):
    result = run_python(["-m", "features.extract", "--help"])
    assert result.returncode == 0
    for option in ("--output", "--preset", "--detector", "--groups", "--jobs", "--pixelize", "--limit"):
        assert option in result.stdout


# --- fer2013.csv: pixels held in memory ----------------------------------------------------------------

def test_extract_from_fer2013_csv(tmp_path, fer_dir):
    picked = {}
    for s in load_fer2013_folders(fer_dir):
        picked.setdefault((s.label, s.split), s)
    rows = [(label, usage, read_image(s.path)) for (label, usage), s in sorted(picked.items())][:12]
    rows.append(("happy", "Training", rows[0][2][:4, :4]))  # a 4x4 "image": not a face
    path = tmp_path / "small_fer.csv"
    write_fer2013_csv(rows, path)
    table, summary = extract_dataset(path, tmp_path / "fer.npz", jobs=1, progress=False)
    assert table.preset == "fer2013"
    assert table.labels.tolist() == [r[0] for r in rows]
    assert table.splits.tolist() == [r[1] for r in rows]
    assert table.sources.tolist() == [f"small_fer.csv#{i}" for i in range(len(rows))]
    assert table.status.tolist() == ["ok"] * 12 + ["too_small"]
    assert summary["failures"] == {"too_small": 1}
    assert set(FER2013_CSV_LABELS) >= set(table.labels)
