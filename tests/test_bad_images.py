"""Every kind of bad image input raises its own specific common.errors exception; nothing else escapes.

The damaged files are made from real dataset files (a JAFFE TIFF, a CK+48 PNG, a FER-2013 JPEG)
and from a real face re-encoded by Pillow.
"""

import io
import os
import struct
import textwrap
import time
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from common import errors
from common.errors import (CorruptImageError, EmptyImageError, ImageError, ImageNotFoundError,
                              ImagePermissionError, ImageTooLargeError, ImageTooSmallError, NotAFileError,
                              NotAnImageError)
from landmarks.io import MAX_PIXELS, read_image

SIGNATURE_LENGTH = {"png": 8, "jpg": 3, "tif": 4}

# Pillow's TIFF reader warns about the damaged directories we feed it; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _raises_exactly(path, allowed, **kwargs):
    """read_image(path) raises one of ``allowed`` (exact types); return the exception."""
    try:
        image = read_image(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the point is to see whatever escapes
        assert type(exc) in allowed, f"{path}: {type(exc).__name__} ({exc}) not in {[a.__name__ for a in allowed]}"
        assert str(path) in str(exc) or os.fsdecode(path) in str(exc)
        assert "\n" not in str(exc)
        return exc
    pytest.fail(f"{path}: read as a {image.shape} image, expected {[a.__name__ for a in allowed]}")


@pytest.fixture(scope="module")
def real_files(jaffe_dir, ckplus_dir, fer_dir, jaffe_face_image):
    """name -> (bytes of a real, valid image file, extension)."""
    face = jaffe_face_image[0]

    def encoded(fmt, **kwargs):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, fmt, **kwargs)
        return buf.getvalue()

    return {
        "jaffe_tiff": ((jaffe_dir / "anger" / "KA.AN1.39.tiff").read_bytes(), "tif"),
        "jaffe_palette_tiff": ((jaffe_dir / "anger" / "KM.AN1.17.tiff").read_bytes(), "tif"),
        "ckplus_png": ((ckplus_dir / "happy" / "S010_006_00000013.png").read_bytes(), "png"),
        "fer_jpeg": ((fer_dir / "train" / "happy" / "Training_10019449.jpg").read_bytes(), "jpg"),
        "pillow_png": (encoded("PNG"), "png"),
        "pillow_jpeg": (encoded("JPEG", quality=90), "jpg"),
        "pillow_lzw_tiff": (encoded("TIFF", compression="tiff_lzw"), "tif"),  # directory at the end
    }


def test_real_files_are_valid(tmp_path, real_files):
    for name, (data, ext) in real_files.items():
        path = tmp_path / f"{name}.{ext}"
        path.write_bytes(data)
        assert read_image(path).ndim == 2, name


# --- the file itself ----------------------------------------------------------------------------

def test_missing_file(tmp_path):
    exc = _raises_exactly(tmp_path / "nope.png", {ImageNotFoundError})
    assert isinstance(exc, FileNotFoundError) and exc.reason == "missing"


def test_directory_named_like_an_image(tmp_path):
    (tmp_path / "x.jpg").mkdir()
    assert _raises_exactly(tmp_path / "x.jpg", {NotAFileError}).reason == "not_a_file"


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert _raises_exactly(tmp_path / "empty.png", {EmptyImageError}).reason == "empty_file"


def test_text_file_with_an_image_name(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("emotion,pixels,Usage\nthis is a text file, not a picture\n" * 50)
    assert _raises_exactly(path, {NotAnImageError}).reason == "not_an_image"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.png"
    path.write_bytes(data)
    _raises_exactly(path, {NotAnImageError})


def test_embedded_nul_in_name(tmp_path):
    _raises_exactly(str(tmp_path / "a\0b.png"), {ImageNotFoundError})


def test_unreadable_file(tmp_path, real_files, run_python):
    """A chmod-000 file, read in a fresh process that cannot override file permissions (as root,
    the override capabilities are dropped first): ImagePermissionError, reason permission_denied."""
    from conftest import drop_root_read_override

    path = tmp_path / "locked.png"
    path.write_bytes(real_files["ckplus_png"][0])
    path.chmod(0)
    code = ("import sys\nfrom landmarks.io import read_image\ntry:\n    read_image(sys.argv[1])\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc.reason, isinstance(exc, PermissionError))\n"
            "else:\n    print('read')")
    try:
        result = run_python(["-c", code, path], preexec_fn=drop_root_read_override)
    finally:
        path.chmod(0o600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [ImagePermissionError.__name__, "permission_denied", "True"], result.stdout


# --- truncated and corrupt data -----------------------------------------------------------------

def _offsets(n, sig):
    return sorted({1, sig - 1, sig, sig + 1, 16, 33, 60, 100, 200, n // 4, n // 2, 3 * n // 4})


@pytest.mark.parametrize("name", ["jaffe_tiff", "jaffe_palette_tiff", "ckplus_png", "fer_jpeg",
                                  "pillow_png", "pillow_jpeg", "pillow_lzw_tiff"])
def test_truncated_files(tmp_path, real_files, name):
    """Cut inside the format signature: not an image. Cut anywhere after it (header, directory or
    pixel data): corrupt. Nothing else, and never a silently half-decoded image."""
    data, ext = real_files[name]
    sig = SIGNATURE_LENGTH[ext]
    seen = {}
    for offset in _offsets(len(data), sig):
        path = tmp_path / f"cut{offset}.{ext}"
        path.write_bytes(data[:offset])
        allowed = {NotAnImageError} if offset < sig else {CorruptImageError}
        seen[offset] = type(_raises_exactly(path, allowed)).__name__
    assert set(seen.values()) == {"NotAnImageError", "CorruptImageError"}, seen


@pytest.mark.parametrize("name, header_lengths", [
    ("ckplus_png", (8, 16, 33)),        # signature; + IHDR length/type; + whole IHDR chunk
    ("fer_jpeg", (3, 20)),              # SOI + marker; + APP0 (JFIF) segment
    ("jaffe_tiff", (4, 8)),             # byte order + magic; + first directory offset
    ("pillow_lzw_tiff", (4, 8)),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes_behind_a_valid_header(tmp_path, real_files, name, header_lengths, seed):
    data, ext = real_files[name]
    rng = np.random.default_rng(seed)
    for n in header_lengths:
        path = tmp_path / f"junk{n}.{ext}"
        path.write_bytes(data[:n] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
        assert _raises_exactly(path, {CorruptImageError}).reason == "corrupt"


@pytest.mark.parametrize("name", ["ckplus_png", "fer_jpeg", "pillow_png"])
def test_damaged_pixel_data(tmp_path, real_files, name):
    """Garbage written over the middle of the compressed pixel data, file length unchanged."""
    data, ext = real_files[name]
    damaged = bytearray(data)
    middle = len(data) // 2
    damaged[middle:middle + 64] = np.random.default_rng(7).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path = tmp_path / f"damaged.{ext}"
    path.write_bytes(bytes(damaged))
    if ext == "png":
        _raises_exactly(path, {CorruptImageError})
    else:
        # JPEG has no checksum: a damaged scan may still decode (to wrong pixels) or be refused
        try:
            image = read_image(path)
        except ImageError as exc:
            assert type(exc) is CorruptImageError
        else:
            assert image.shape == (48, 48)


# --- absurd sizes -------------------------------------------------------------------------------

def _png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def forged_png(width, height):
    """A tiny, well-formed PNG (valid CRCs) whose header declares width x height 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + _png_chunk(b"IEND", b""))


def forged_jpeg(real_jpeg, width, height):
    """A real JPEG with its SOF frame header rewritten to declare width x height."""
    data = bytearray(real_jpeg)
    i = 2
    while i < len(data):
        assert data[i] == 0xFF
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def forged_tiff(real_tiff, width, height):
    """A real little-endian TIFF with ImageWidth/ImageLength rewritten in its first directory."""
    data = bytearray(real_tiff)
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd:ifd + 2])[0]
    patched = 0
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[entry + 8:entry + 12] = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            patched += 1
    assert patched == 2
    return bytes(data)


def forged_ico(width, height):
    """A tiny ICO whose one entry is a PNG declaring width x height RGBA pixels: Pillow decodes an
    ICO's image inside Image.open, before any caller can look at its size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
           + _png_chunk(b"IEND", b""))
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


@pytest.fixture(scope="module")
def bombs(real_files):
    return {
        "ico": forged_ico(12_000, 12_000),   # 144 MP: over the limit, under twice Pillow's threshold
        "png": forged_png(50_000, 50_000),
        "jpg": forged_jpeg(real_files["fer_jpeg"][0], 50_000, 50_000),
        "tif": forged_tiff(real_files["jaffe_tiff"][0], 50_000, 50_000),
    }


@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_header_declaring_50000_by_50000_pixels(tmp_path, bombs, ext):
    path = tmp_path / f"bomb.{ext}"
    path.write_bytes(bombs[ext])
    assert path.stat().st_size < 100_000
    started = time.perf_counter()
    exc = _raises_exactly(path, {ImageTooLargeError})
    elapsed = time.perf_counter() - started
    assert exc.reason == "too_large"
    assert elapsed < 5, f"refusing a decompression bomb took {elapsed:.2f} s: it was decoded?"
    assert "out of memory" not in exc.detail


def test_the_pixel_limit_is_the_projects_not_pillows(tmp_path):
    """Pillow warns from 89.5 megapixels; the documented limit is 100: a header declaring 90.25 MP
    passes the size check (this forged file then fails as a short, corrupt image), one declaring
    100.01 MP does not."""
    under, over = tmp_path / "under.png", tmp_path / "over.png"
    under.write_bytes(forged_png(9_500, 9_500))
    over.write_bytes(forged_png(10_001, 10_000))
    assert _raises_exactly(under, {CorruptImageError}).reason == "corrupt"
    assert _raises_exactly(over, {ImageTooLargeError}).reason == "too_large"


def test_bombs_are_refused_without_allocating(tmp_path, bombs, run_python):
    """In a process whose address space is capped ~400 MB above its size after import, the forged
    50,000 x 50,000 files (2.5 GB of pixels) are refused from their headers alone."""
    paths = []
    for ext, data in bombs.items():
        path = tmp_path / f"bomb.{ext}"
        path.write_bytes(data)
        paths.append(str(path))
    code = textwrap.dedent(f"""
        import resource
        from landmarks.io import read_image
        from common.errors import ImageTooLargeError
        with open("/proc/self/statm") as fh:
            vm_bytes = int(fh.read().split()[0]) * resource.getpagesize()
        limit = vm_bytes + 400 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        for path in {paths!r}:
            try:
                read_image(path)
                print("READ", path)
            except ImageTooLargeError as exc:
                print("TOO_LARGE", exc.detail)
    """)
    if not os.path.exists("/proc/self/statm"):
        assert not os.environ.get("CI"), "CI runs on Linux: /proc must be there"
        pytest.skip("needs /proc (Linux) to cap the address space")
    result = run_python(["-c", code])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("TOO_LARGE") for line in lines), lines
    assert not any("out of memory" in line for line in lines), lines


def test_max_pixels_is_checked_before_decoding(tmp_path):
    """A real (not forged) bomb: a 4000 x 4000 black PNG is a few KB on disk."""
    path = tmp_path / "black.png"
    Image.new("L", (4000, 4000)).save(path, optimize=True)
    assert path.stat().st_size < 100_000
    exc = _raises_exactly(path, {ImageTooLargeError}, max_pixels=1_000_000)
    assert "4000x4000" in exc.detail
    assert read_image(path).shape == (4000, 4000)  # under the default limit it reads


@pytest.mark.parametrize("size", [(1, 1), (15, 200), (200, 15)])
def test_images_too_small_to_hold_a_face(tmp_path, size):
    path = tmp_path / f"small{size[0]}x{size[1]}.png"
    Image.new("L", size, 128).save(path)
    assert _raises_exactly(path, {ImageTooSmallError}).reason == "too_small"


def test_smallest_accepted_size(tmp_path):
    path = tmp_path / "16.png"
    Image.new("L", (16, 16), 128).save(path)
    assert read_image(path).shape == (16, 16)


# --- the error types themselves ----------------------------------------------------------------

def test_each_image_error_has_its_own_reason():
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, ImageError) and c is not ImageError]
    reasons = [c.reason for c in classes]
    assert len(classes) >= 8
    assert len(set(reasons)) == len(reasons), reasons
    for cls in classes:
        message = str(cls("/some/face.png", "detail"))
        assert message.startswith("/some/face.png: ") and "\n" not in message


# --- fuzzing: whatever the bytes, the answer is an image or an ImageError -----------------------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _outcome(path):
    """read_image's answer: the array, or the ImageError it raised (anything else propagates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read_image(path)
        except ImageError as exc:
            return exc


def _assert_image_or_image_error(outcome):
    if isinstance(outcome, ImageError):
        assert type(outcome) in (NotAnImageError, CorruptImageError, ImageTooLargeError, ImageTooSmallError), outcome
    else:
        assert outcome.dtype == np.uint8 and outcome.ndim == 2 and min(outcome.shape) >= 16


@FUZZ
@given(data=st.binary(min_size=1, max_size=3000))
def test_fuzz_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "fuzz.png"
    path.write_bytes(data)
    _assert_image_or_image_error(_outcome(path))


@FUZZ
@given(name=st.sampled_from(["jaffe_tiff", "ckplus_png", "fer_jpeg", "pillow_lzw_tiff"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0.05, 1.0)))
def test_fuzz_damaged_real_files(tmp_path, real_files, name, flips, cut):
    data, ext = real_files[name]
    damaged = bytearray(data)
    for where, value in flips:
        damaged[int(where * len(damaged))] = value
    if cut is not None:
        damaged = damaged[:max(1, int(cut * len(damaged)))]
    path = tmp_path / f"fuzz.{ext}"
    path.write_bytes(bytes(damaged))
    _assert_image_or_image_error(_outcome(path))


@FUZZ
@given(width=st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1)),
       height=st.one_of(st.integers(1, 64), st.integers(1, 2**31 - 1)))
def test_fuzz_forged_png_sizes(tmp_path, width, height):
    """Any declared size: the outcome follows from the header alone (the pixel data holds 1024 zeros)."""
    path = tmp_path / "forged.png"
    path.write_bytes(forged_png(width, height))
    if width * height > MAX_PIXELS:  # refused from the header (Pillow's own bomb error lies beyond)
        _raises_exactly(path, {ImageTooLargeError})
    elif min(width, height) < 16:
        _raises_exactly(path, {ImageTooSmallError})
    elif (width + 1) * height <= 1024:  # the zeros cover every row (and its filter byte)
        assert read_image(path).shape == (height, width)
    else:
        # Rows missing from a *complete* zlib stream: Pillow refuses this for some sizes and, for
        # others, returns the missing rows black (a known Pillow leniency, e.g. 63 x 17). Either way
        # the answer is an image of the declared size or a CorruptImageError, nothing else.
        try:
            image = read_image(path)
        except ImageError as exc:
            assert type(exc) is CorruptImageError, exc
        else:
            assert image.shape == (height, width)
