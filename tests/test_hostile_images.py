"""Images built to hurt (issue 24, items 6-9): float and 16-bit samples, huge sample depths, thin
strips, endless progressive scans. Each gives pixels, no face or one clear error, in bounded memory."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.errors import CorruptImageError
from conftest import PROJECT_DIR
from landmarks.io import read_image
from landmarks.shape import find_faces


@pytest.fixture(scope="module")
def face(jaffe_dir):
    return np.asarray(Image.open(jaffe_dir / "happy" / "KA.HA1.29.tiff").convert("L"))


def test_float_tiff_in_0_1_is_scaled_not_black(face, tmp_path):
    Image.fromarray(face.astype(np.float32) / 255, "F").save(tmp_path / "f.tif")
    assert np.array_equal(read_image(tmp_path / "f.tif"), face)


def test_float_tiff_with_nan_and_inf_still_reads(face, tmp_path):
    pixels = face.astype(np.float32) / 255
    pixels[0, :3] = [np.nan, np.inf, -np.inf]
    Image.fromarray(pixels, "F").save(tmp_path / "f.tif")
    got = read_image(tmp_path / "f.tif")
    assert got.dtype == np.uint8 and np.array_equal(got[1:], face[1:])


def test_16_bit_tiff_keeps_its_scale(face, tmp_path):
    Image.fromarray(face.astype(np.uint16) * 257).save(tmp_path / "s.tif")
    assert np.array_equal(read_image(tmp_path / "s.tif"), face)


@pytest.mark.parametrize("shape, detector", [((16, 10000), "cnn"), ((10000, 16), "cnn"), ((40, 10000), "hog"),
                                             ((17, 1600), "cnn")])
def test_a_thin_strip_has_no_face_instead_of_a_detector_crash(shape, detector):
    assert find_faces(np.full(shape, 128, dtype=np.uint8), detector) == []


def _rss_of(args):
    """Peak resident memory (MB) of a fresh ``python args`` and its exit code.

    Read from /proc/self/status (VmHWM, this process's own memory): ru_maxrss would also count
    the resident size of the pytest process it was forked from."""
    code = ("import runpy, sys\n"
            f"sys.argv = {args!r}\n"
            "try:\n    runpy.run_module(sys.argv[0], run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
            "print('RSS', peak // 1024, code, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True,
                            timeout=300)
    line = [x for x in result.stderr.splitlines() if x.startswith("RSS")][-1].split()
    return int(line[1]), line[2], result


@pytest.mark.parametrize("kind", ["uint16", "float32"])
def test_an_88_megapixel_deep_tiff_stays_under_1_gb(tmp_path, kind):
    """The README's promise: one image of up to 100 megapixels, any sample depth, under 1 GB."""
    rows = np.linspace(0, 1, 11000, dtype=np.float32)[None, :].repeat(8000, axis=0)
    pixels = (rows * 65535).astype(np.uint16) if kind == "uint16" else rows
    path = tmp_path / f"big_{kind}.tif"
    Image.fromarray(pixels).save(path)
    del rows, pixels
    peak, code, result = _rss_of(["classifiers.predict", str(path)])
    assert code == "3" and "no face found" in result.stdout, result.stderr  # a gradient has no face
    assert peak < 1000, f"{peak} MB"


def _many_scans(face, path, scans):
    """A progressive JPEG of ``face`` whose last scan is repeated until it has ``scans`` scans."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    body, eoi = data[last:-2], data[-2:]
    have = data.count(b"\xff\xda")
    path.write_bytes(data[:-2] + body * max(0, scans - have) + eoi)
    return path


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding(face, tmp_path):
    ordinary = _many_scans(face, tmp_path / "ok.jpg", 0)
    assert read_image(ordinary).shape == face.shape  # a normal progressive JPEG (about ten scans) reads
    bomb = _many_scans(face, tmp_path / "scans.jpg", 2000)
    with pytest.raises(CorruptImageError, match="more than 100 JPEG scans: refused before decoding"):
        read_image(bomb)  # (decoding it would take minutes: each scan is a pass over the image)
