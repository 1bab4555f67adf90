"""Bad input end to end (issue 6): one folder of broken, odd and hostile image files thrown at the three
commands that read images -- features.extract, classifiers.predict and classifiers.evaluate.

Each command runs in a fresh interpreter with a timeout (no hang) and a capped address space (bounded
memory: the files declaring 50,000 x 50,000 pixels must be refused from their headers, and the real
6000 x 4000 photo must be reduced before detection). Unit-level checks of read_image on each kind of
file are in test_bad_images.py and test_io.py; this file checks that the commands record each file's
reason (extract) or print one line for it (predict), and carry on with the others.
"""

import collections
import io
import json
import os
import resource
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from features.table import load_table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import drop_root_read_override  # noqa: E402
from test_bad_images import forged_jpeg, forged_png, forged_tiff  # noqa: E402

#: Address-space cap of every command run here. Measured on this folder: extract and evaluate run
#: under 0.85 GB, predict (which reads the 6000 x 4000 photo in colour for nothing but the gray) under
#: 1 GB, peak resident memory about 380 MB. Decoding one 50,000 x 50,000 image would need 2.5 GB for
#: its gray pixels alone. (Far too low a cap can make OpenBLAS spin in its start-up allocation loop
#: instead of failing: the timeout covers that.)
ADDRESS_SPACE = 2 * 2**30
#: No command here may take longer than this (they take 3-10 s).
TIMEOUT = 90



def confined(address_space=ADDRESS_SPACE):
    """preexec_fn: cap the address space; as root, also drop the capabilities that let root read a
    chmod-000 file (from the bounding set, so they stay dropped across exec), so that an
    unreadable file is unreadable to the command too."""
    def preexec():
        if address_space:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        drop_root_read_override()
    return preexec


# --- the folder of bad files ---------------------------------------------------------------------

GOOD_FACES = ("happy/KA.HA1.29.tiff", "happy/KL.HA1.158.tiff", "surprise/KA.SU1.36.tiff")
ODD_NAME = os.fsdecode(b"caf\xe9_\xff\xfe.tif")  # latin-1 bytes, not UTF-8 (a good face inside)
LONG_NAME = "long_" + "n" * 241 + ".tif"         # 250 bytes, a good face inside
HUGE = "huge_6000x4000.jpg"                      # a legal 24-megapixel photo of a face
HUGE_OFFSET, HUGE_SCALE = 1000, 4000 / 256       # JAFFE face upscaled 15.625x, 1000 px from the left


def _encode(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def bad_files(jaffe_dir, ckplus_dir, fer_dir):
    """name -> (bytes, expected extraction status); None for bytes marks a special entry
    (a directory named like an image, an unreadable file), written by :func:`write_tree`."""
    face = np.array(Image.open(jaffe_dir / "happy" / "KA.HA1.29.tiff").convert("L"))
    rgb = Image.fromarray(face).convert("RGB")
    tiff = (jaffe_dir / "happy" / "KA.HA1.29.tiff").read_bytes()
    png = (ckplus_dir / "happy" / "S010_006_00000013.png").read_bytes()
    fer_jpeg = (fer_dir / "train" / "happy" / "Training_10019449.jpg").read_bytes()
    jpeg = _encode(Image.fromarray(face), "JPEG", quality=90)
    files = {}
    rng = np.random.default_rng(6)
    for ext, data, signature in (("png", png, 8), ("jpg", jpeg, 3), ("tif", tiff, 4)):
        # cut inside the signature (not an image), then in the header, directory and pixel data
        for offset in (signature - 1, signature + 2, 40, len(data) // 3, 2 * len(data) // 3):
            files[f"cut_{offset}.{ext}"] = (data[:offset], "not_an_image" if offset < signature else "corrupt")
        header = 20 if ext == "jpg" else signature  # JPEG: SOI + the JFIF APP0 segment
        files[f"junk_behind_header.{ext}"] = (data[:header] + rng.integers(0, 256, 4000, np.uint8).tobytes(),
                                              "corrupt")
    files["zero_bytes.png"] = (b"", "empty_file")
    files["one_pixel.png"] = (_encode(Image.new("L", (1, 1), 128), "PNG"), "too_small")
    files["one_pixel.jpg"] = (_encode(Image.new("RGB", (1, 1)), "JPEG"), "too_small")
    files["bomb_50000.png"] = (forged_png(50_000, 50_000), "too_large")
    files["bomb_50000.jpg"] = (forged_jpeg(fer_jpeg, 50_000, 50_000), "too_large")
    files["bomb_50000.tif"] = (forged_tiff((jaffe_dir / "anger" / "KA.AN1.39.tiff").read_bytes(), 50_000, 50_000),
                               "too_large")
    files["not_really.jpg"] = (b"<html>this is a web page saved as .jpg</html>\n" * 20, "not_an_image")
    # unusual pixel formats holding a real face: each must be read and its face described
    files["gray16.png"] = (_encode(Image.fromarray(face.astype(np.uint16) * 257), "PNG"), "ok")
    files["rgb16.png"] = (cv2.imencode(".png", np.dstack([face] * 3).astype(np.uint16) * 257)[1].tobytes(), "ok")
    alpha = np.full(face.shape, 255, np.uint8)
    alpha[:, :20] = 0  # a transparent strip
    files["rgba.png"] = (_encode(Image.fromarray(np.dstack([face] * 3 + [alpha]), "RGBA"), "PNG"), "ok")
    files["cmyk.jpg"] = (_encode(rgb.convert("CMYK"), "JPEG", quality=90), "ok")
    files["cmyk.tif"] = (_encode(rgb.convert("CMYK"), "TIFF"), "ok")
    big = cv2.resize(face, (4000, 4000), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((4000, 6000), 128, np.uint8)
    canvas[:, HUGE_OFFSET:HUGE_OFFSET + 4000] = big
    files[HUGE] = (cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), "ok")
    files[LONG_NAME] = (tiff, "ok")
    files[ODD_NAME] = (tiff, "ok")
    files["folder.jpg"] = (None, "not_a_file")
    files["locked.tif"] = (None, "permission_denied")
    for i, name in enumerate(GOOD_FACES):
        files[f"good_{i}_{os.path.basename(name)}"] = ((jaffe_dir / name).read_bytes(), "ok")
    return files


def write_tree(root, files, odd_name=True):
    """``root/happy/<every file>`` plus ``root/surprise/`` holding one good face; returns root/happy."""
    happy = root / "happy"
    happy.mkdir(parents=True)
    for name, (data, _) in files.items():
        if name == ODD_NAME and not odd_name:
            continue
        path = os.path.join(os.fsencode(happy), os.fsencode(name))
        if name == "folder.jpg":
            os.mkdir(path)
        elif name == "locked.tif":
            with open(path, "wb") as fh:
                fh.write(files[f"good_0_{os.path.basename(GOOD_FACES[0])}"][0])
            os.chmod(path, 0)
        else:
            with open(path, "wb") as fh:
                fh.write(data)
    (root / "surprise").mkdir()
    (root / "surprise" / "KA.SU2.37.tiff").write_bytes(files[f"good_2_{os.path.basename(GOOD_FACES[2])}"][0])
    return happy


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory, jaffe_dir, ckplus_dir, fer_dir, run_python):
    """Trees of bad files: ``full`` (every case), ``portable`` (every case but the non-UTF-8 name),
    and the expected status of each file."""
    files = bad_files(jaffe_dir, ckplus_dir, fer_dir)
    base = tmp_path_factory.mktemp("bad_input")
    full = write_tree(base / "full", files)
    write_tree(base / "portable", files, odd_name=False)
    expected = {name: status for name, (_, status) in files.items()}
    # can this process make a file unreadable to the commands it runs? (root without the dropped
    # capabilities could still read it; then the file is simply a good face)
    probe = run_python(["-c", f"open({str(full / 'locked.tif')!r}, 'rb')"], preexec_fn=confined())
    if probe.returncode == 0:
        expected["locked.tif"] = "ok"
    return {"base": base, "full": base / "full", "portable": base / "portable", "happy": full,
            "expected": expected}


def run_confined(run_python, args, **kwargs):
    """``python args`` with the address-space cap and the timeout; stdout and stderr as str."""
    result = run_python(args, preexec_fn=confined(), timeout=TIMEOUT, errors="backslashreplace", **kwargs)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "MemoryError" not in result.stderr and "Killed" not in result.stderr, result.stderr[-3000:]
    return result


# --- features.extract ----------------------------------------------------------------------------

def test_extract_records_the_reason_of_every_bad_file(bad_tree, run_python, tmp_path):
    """Every bad file gets its own reason in the table, every good face (including 16-bit, RGBA,
    CMYK, a 250-byte name and a 6000 x 4000 photo) is described, and the run exits 0."""
    output = tmp_path / "bad.npz"
    result = run_confined(run_python, ["-m", "features.extract", bad_tree["portable"], "-o", output,
                                       "--detector", "hog", "--preset", "folder", "-j", "2", "-q"])
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {name: status for name, status in bad_tree["expected"].items() if name != ODD_NAME}
    expected["KA.SU2.37.tiff"] = "ok"
    table = load_table(output)
    got = {os.path.basename(s): str(st) for s, st in zip(table.sources, table.status)}
    assert got == expected
    n_ok = sum(status == "ok" for status in expected.values())
    assert np.all(np.isfinite(table.X)) and np.all(table.n_faces[table.ok] == 1)
    assert np.all(table.X[~table.ok] == 0) and np.all(np.abs(table.X[table.ok]).sum(axis=1) > 0)
    failures = collections.Counter(s for s in expected.values() if s != "ok")
    line, = result.stdout.strip().splitlines()
    assert f"{len(expected)} images" in line and f"{n_ok} faces described" in line
    for reason, count in failures.items():
        assert f"{reason.replace('_', ' ')} {count}" in line, (reason, line)
    assert sorted(os.listdir(tmp_path)) == ["bad.npz"]  # no checkpoint folder, lock or temporary left


def test_extract_survives_a_file_name_that_is_not_utf8(bad_tree, jaffe_dir, run_python, tmp_path):
    root = tmp_path / "odd"
    (root / "happy").mkdir(parents=True)
    with open(os.path.join(os.fsencode(root / "happy"), os.fsencode(ODD_NAME)), "wb") as fh:
        fh.write((jaffe_dir / GOOD_FACES[0]).read_bytes())
    (root / "happy" / "KL.HA1.158.tiff").write_bytes((jaffe_dir / GOOD_FACES[1]).read_bytes())
    result = run_confined(run_python, ["-m", "features.extract", root, "-o", tmp_path / "odd.npz",
                                       "--detector", "hog", "--preset", "folder", "-j", "1", "-q"])
    assert result.returncode == 0, result.stderr
    table = load_table(tmp_path / "odd.npz")
    assert sorted(os.path.basename(s) for s in table.sources) == sorted([ODD_NAME, "KL.HA1.158.tiff"])
    assert table.ok.all()


# --- classifiers.predict -------------------------------------------------------------------------

def _error_lines(stderr):
    """The ``error: ...`` lines of stderr (Pillow's warnings about damaged TIFFs also land there:
    see test_predict_stderr_holds_nothing_but_the_error_lines)."""
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _name_in(name, line):
    """The file name (or, for the non-UTF-8 one, its ASCII start) appears in ``line``."""
    return (name if name != ODD_NAME else "caf") in line


def test_predict_prints_one_line_per_bad_file_and_goes_on(bad_tree, run_python, tmp_path):
    """Every file as its own argument, then a file name over NAME_MAX, a path that does not exist, and
    the folder itself: one ``error:`` line on stderr per bad file (nothing else there), every good
    face printed, exit code 1."""
    happy, expected = bad_tree["happy"], bad_tree["expected"]
    # an unreadable file given by name is tested below (click refuses it before any work starts)
    names = sorted(n for n in expected if not (n == "locked.tif" and expected[n] != "ok"))
    too_long = happy / ("x" * 300 + ".jpg")
    missing = tmp_path / "missing.png"
    args = [os.path.join(happy, n) for n in names] + [too_long, missing]
    result = run_confined(run_python, ["-m", "classifiers.predict", *args])
    assert result.returncode == 1
    lines = _error_lines(result.stderr)
    bad = [n for n in names if expected[n] != "ok"]
    assert len(lines) == len(bad) + 2, result.stderr
    for name in bad:
        assert sum(_name_in(name, line) for line in lines) == 1, name
    assert "too long" in next(line for line in lines if "x" * 300 in line).lower()
    assert "no such file" in next(line for line in lines if "missing.png" in line)
    good = [n for n in names if expected[n] == "ok"]
    found = [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert len(found) == len(good), result.stdout
    for name in good:
        assert any(_name_in(name, line) and line.endswith(": 1 face") for line in found), name

    names = sorted(expected)
    bad = [n for n in names if expected[n] != "ok"]
    folder = run_confined(run_python, ["-m", "classifiers.predict", happy, "--json"])
    assert folder.returncode == 1
    objects = [json.loads(line) for line in folder.stdout.splitlines()]
    assert len(objects) == len(names)
    by_name = {os.path.basename(o["image"]): o for o in objects}
    for name in names:
        obj = by_name[name]
        if expected[name] == "ok":
            assert len(obj["faces"]) == 1 and "error" not in obj, name
        else:
            assert obj["faces"] == [] and obj["error"], name
    assert len(_error_lines(folder.stderr)) == len(bad)


def test_predict_prints_a_file_name_that_is_not_utf8_under_a_strict_utf8_stdout(bad_tree, run_python):
    odd = os.path.join(bad_tree["happy"], ODD_NAME)
    result = run_python(["-m", "classifiers.predict", odd], env={"PYTHONIOENCODING": "utf-8:strict"},
                        timeout=TIMEOUT, errors="backslashreplace")
    assert "Traceback" not in result.stderr, result.stderr[-500:]
    assert result.returncode == 0 and result.stdout.splitlines()[0].endswith(": 1 face")


def test_predict_stderr_holds_nothing_but_the_error_lines(bad_tree, run_python):
    names = [n for n in sorted(bad_tree["expected"]) if n.endswith(".tif") and bad_tree["expected"][n] == "corrupt"]
    result = run_confined(run_python, ["-m", "classifiers.predict", *(bad_tree["happy"] / n for n in names)])
    assert result.returncode == 1
    assert result.stderr.splitlines() == _error_lines(result.stderr), result.stderr
    assert len(_error_lines(result.stderr)) == len(names)


def test_predict_goes_on_after_an_unreadable_file_named_on_the_command_line(bad_tree, run_python):
    if bad_tree["expected"]["locked.tif"] == "ok":
        assert not os.environ.get("CI"), "on CI the unreadable file must be unreadable (root's override is dropped)"
        pytest.skip("cannot make a file unreadable here")
    happy = bad_tree["happy"]
    good = happy / f"good_0_{os.path.basename(GOOD_FACES[0])}"
    result = run_confined(run_python, ["-m", "classifiers.predict", happy / "locked.tif", good])
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "locked.tif" in lines[0], lines
    assert result.returncode == 1 and result.stdout.splitlines()[0].endswith(": 1 face")


# --- classifiers.evaluate ------------------------------------------------------------------------

def test_evaluate_counts_bad_files_and_finishes(bad_tree, run_python):
    """The shipped model on the class tree: every bad file counted under its reason, the good faces
    scored, exit code 0."""
    result = run_confined(run_python, ["-m", "classifiers.evaluate", "classifiers/models/default.skops",
                                       bad_tree["full"], "--preset", "folder", "--json", "-q", "-j", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    statuses = list(bad_tree["expected"].values()) + ["ok"]  # + the surprise face
    assert report["images"] == len(statuses)
    assert report["unreadable"] == dict(collections.Counter(s for s in statuses if s != "ok"))
    assert report["scored"] == statuses.count("ok") and report["no_face"] == 0
    assert sum(map(sum, report["confusion_matrix"])) == report["scored"]


# --- a huge but legal photo ----------------------------------------------------------------------

def test_huge_photo_is_reduced_before_detection_and_answers_in_its_own_frame(bad_tree, jaffe_face_image,
                                                                            monkeypatch):
    """The 6000 x 4000 photo (a JAFFE face upscaled 15.625x, 1000 px from the left) reaches the
    detector at MAX_SIDE, and its face comes back in the photo's own coordinates."""
    import landmarks.shape as shape
    from landmarks.io import read_image

    seen, detect = [], shape.detect_faces

    def recording(image, *args, **kwargs):
        seen.append(image.shape)
        return detect(image, *args, **kwargs)
    monkeypatch.setattr(shape, "detect_faces", recording)
    reference = shape.find_faces(jaffe_face_image[0], "hog")[0]
    photo = read_image(bad_tree["happy"] / HUGE)
    assert photo.shape == (4000, 6000)
    faces = shape.find_faces(photo, "hog")
    assert seen == [(256, 256), (round(4000 * shape.MAX_SIDE / 6000), shape.MAX_SIDE)]
    assert len(faces) == 1
    expected = (reference.points.astype(np.float64) + 0.5) * HUGE_SCALE - 0.5 + [HUGE_OFFSET, 0]
    iod = np.linalg.norm(np.subtract(*shape.eye_centres(expected)))
    error = np.linalg.norm(faces[0].points - expected, axis=1).mean() / iod
    assert error < 0.05, f"mean landmark displacement {error:.3f} of the inter-ocular distance"
    x, y, w, h = faces[0].box
    rx, ry, rw, rh = reference.box
    assert abs(x - (HUGE_OFFSET + rx * HUGE_SCALE)) < 0.1 * w and abs(w - rw * HUGE_SCALE) < 0.2 * w
    assert abs(y - ry * HUGE_SCALE) < 0.1 * h
