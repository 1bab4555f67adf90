"""landmarks.io.read_image on real images in every pixel format and orientation it has to handle.

Bad input (missing, empty, corrupt, truncated, huge, ...) is in test_bad_images.py.
"""

import io
import os

import numpy as np
import pytest
from PIL import Image

from landmarks.detect import detect_faces
from common.errors import ImageError, ImageNotFoundError
from landmarks.io import read_image

EXIF_ORIENTATION = 0x0112


def _save(array, path, fmt=None, mode=None, **kwargs):
    Image.fromarray(array, mode).save(path, fmt, **kwargs) if mode else Image.fromarray(array).save(path, fmt, **kwargs)
    return path


@pytest.fixture(scope="module")
def face(jaffe_face_image):
    return jaffe_face_image[0]


@pytest.fixture(scope="module")
def face_rgb(jaffe_face_image):
    """A real face as RGB with distinct channels (a colour image, not three equal planes)."""
    gray = jaffe_face_image[0].astype(np.int16)
    return np.dstack([gray, np.clip(gray * 0.8 + 20, 0, 255), np.clip(255 - gray, 0, 255)]).astype(np.uint8)


# --- the real datasets ------------------------------------------------------------------------

def test_every_jaffe_and_ckplus_image_reads_as_gray_uint8(jaffe_samples, ckplus_samples):
    for samples, shape in ((jaffe_samples, (256, 256)), (ckplus_samples, (48, 48))):
        for sample in samples:
            image = read_image(sample.path)
            assert image.dtype == np.uint8 and image.shape == shape, sample.path
            assert image.std() > 5, f"{sample.path} decoded to a (nearly) flat image"


def test_fer2013_jpegs_read(fer_dir):
    paths = sorted((fer_dir / "test" / "happy").iterdir())[:20]
    for path in paths:
        image = read_image(path)
        assert image.shape == (48, 48) and image.dtype == np.uint8
        rgb = read_image(path, "rgb")
        assert rgb.shape == (48, 48, 3)


def test_jaffe_palette_tiffs_become_their_gray_values(jaffe_samples):
    """23 JAFFE files (all of subject KM, one of KA) are 'P' mode TIFFs with a gray palette."""
    palette_files = []
    for sample in jaffe_samples:
        with Image.open(sample.path) as img:
            if img.mode != "P":
                continue
            palette = np.asarray(img.getpalette(), dtype=np.int64).reshape(-1, 3)
            expected = palette[np.asarray(img)][..., 0]
        palette_files.append(os.path.basename(sample.path))
        gray = read_image(sample.path)
        assert gray.ndim == 2 and gray.dtype == np.uint8
        np.testing.assert_array_equal(gray, expected)  # the gray level, not the palette index
        rgb = read_image(sample.path, "rgb")
        assert rgb.shape == (256, 256, 3)
        np.testing.assert_array_equal(rgb[..., 0], expected)
        np.testing.assert_array_equal(rgb[..., 1], rgb[..., 2])
    assert len(palette_files) == 23, palette_files
    subjects = sorted({name.split(".")[0] for name in palette_files})
    assert subjects == ["KA", "KM"]
    km_files = [s for s in jaffe_samples if s.subject == "KM"]
    assert all(os.path.basename(s.path) in palette_files for s in km_files)


# --- lossless and lossy formats ---------------------------------------------------------------

@pytest.mark.parametrize("fmt, ext, kwargs", [
    ("PNG", "png", {}),
    ("TIFF", "tif", {}),
    ("TIFF", "tiff", {"compression": "tiff_lzw"}),
    ("BMP", "bmp", {}),
    ("WEBP", "webp", {"lossless": True}),
])
def test_lossless_formats_round_trip_exactly(tmp_path, face, face_rgb, fmt, ext, kwargs):
    path = _save(face, tmp_path / f"gray.{ext}", fmt, **kwargs)
    np.testing.assert_array_equal(read_image(path), face)
    path = _save(face_rgb, tmp_path / f"rgb.{ext}", fmt, **kwargs)
    np.testing.assert_array_equal(read_image(path, "rgb"), face_rgb)
    # gray from colour uses the usual luma weights (Pillow's ITU-R 601-2)
    expected = np.asarray(Image.fromarray(face_rgb).convert("L"))
    np.testing.assert_array_equal(read_image(path, "gray"), expected)


def test_jpeg_reads_close_to_source(tmp_path, face, face_rgb):
    gray = read_image(_save(face, tmp_path / "g.jpg", "JPEG", quality=95))
    assert gray.shape == face.shape and gray.dtype == np.uint8
    assert np.abs(gray.astype(int) - face).mean() < 2.0
    rgb = read_image(_save(face_rgb, tmp_path / "c.jpeg", "JPEG", quality=95, subsampling=0), "rgb")
    assert rgb.shape == face_rgb.shape
    assert np.abs(rgb.astype(int) - face_rgb).mean() < 3.0


def test_gray_image_read_as_rgb_has_three_equal_planes(jaffe_face_image):
    face, path = jaffe_face_image
    rgb = read_image(path, "rgb")
    assert rgb.shape == face.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], face)


# --- pixel modes ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16_bit_gray_scales_to_8_bit(tmp_path, face, ext):
    full_range = face.astype(np.uint16) * 257  # 0..65535
    path = tmp_path / f"full16.{ext}"
    Image.fromarray(full_range).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16"), img.mode
    np.testing.assert_array_equal(read_image(path), face)


def test_16_bit_gray_with_8_bit_values_is_kept(tmp_path, face):
    """A 16-bit container holding 0..255 values is not darkened by a blind /257."""
    path = tmp_path / "low16.png"
    Image.fromarray(face.astype(np.uint16)).save(path)
    np.testing.assert_array_equal(read_image(path), face)


def test_32_bit_integer_and_float_images_are_stretched_to_8_bit(tmp_path, face):
    wide = face.astype(np.int32) * 1000 - 50_000
    path = tmp_path / "i32.tif"
    Image.fromarray(wide, "I").save(path)
    image = read_image(path)
    assert image.min() == 0 and image.max() == 255
    expected = np.rint((face.astype(float) - face.min()) * 255.0 / (face.max() - face.min()))
    assert np.abs(image - expected).max() <= 1


def test_rgba_is_composited_on_white(tmp_path, face_rgb):
    alpha = np.full(face_rgb.shape[:2], 255, np.uint8)
    alpha[:, :64] = 0  # fully transparent left strip
    path = _save(np.dstack([face_rgb, alpha]), tmp_path / "rgba.png", mode="RGBA")
    rgb = read_image(path, "rgb")
    np.testing.assert_array_equal(rgb[:, 64:], face_rgb[:, 64:])
    assert (rgb[:, :64] == 255).all()


def test_la_gray_with_alpha(tmp_path, face):
    path = _save(np.dstack([face, np.full_like(face, 255)]), tmp_path / "la.png", mode="LA")
    with Image.open(path) as img:
        assert img.mode == "LA"
    np.testing.assert_array_equal(read_image(path), face)


def test_cmyk_jpeg(tmp_path, face_rgb):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(face_rgb).convert("CMYK").save(path, quality=95)
    with Image.open(path) as img:
        assert img.mode == "CMYK"
    rgb = read_image(path, "rgb")
    assert rgb.shape == face_rgb.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - face_rgb).mean() < 4.0
    assert read_image(path, "gray").shape == face_rgb.shape[:2]


def test_one_bit_image(tmp_path, face):
    path = tmp_path / "bw.png"
    Image.fromarray(face).convert("1").save(path)  # Floyd-Steinberg dithered
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == face.shape
    assert set(np.unique(image)) <= {0, 255}
    # dithering keeps the local brightness: 16x16 block means follow the source
    blocks = lambda a: a.reshape(16, 16, 16, 16).mean(axis=(1, 3))
    assert np.abs(blocks(image.astype(float)) - blocks(face.astype(float))).mean() < 12


def test_palette_png_with_transparency(tmp_path, face):
    img = Image.fromarray(face).convert("P")
    img.info["transparency"] = 0
    path = tmp_path / "p_transparent.png"
    img.save(path, transparency=int(np.asarray(img)[0, 0]))
    rgb = read_image(path, "rgb")
    assert rgb.shape == face.shape + (3,)
    assert (rgb[0, 0] == 255).all()  # the transparent index shows the white background


# --- EXIF orientation -------------------------------------------------------------------------

@pytest.mark.parametrize("orientation, stored_rotation", [
    (3, 2),    # stored upside down: display rotates 180
    (6, 1),    # stored rotated 90 CCW: display rotates 90 CW
    (8, -1),   # stored rotated 90 CW: display rotates 90 CCW
])
def test_exif_orientation_is_applied(tmp_path, face, orientation, stored_rotation):
    upright = np.ascontiguousarray(face[:, 28:228])  # 256 x 200: non-square, so a transposition shows
    stored = np.ascontiguousarray(np.rot90(upright, stored_rotation))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"orient{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    with Image.open(path) as img:
        raw = np.asarray(img.convert("L"))
    assert raw.shape == stored.shape

    image = read_image(path)
    assert image.shape == upright.shape
    # exactly the decoded pixels, turned as the tag says
    np.testing.assert_array_equal(image, np.rot90(raw, -stored_rotation))
    assert np.abs(image.astype(int) - upright).mean() < 2.0
    # and the face is upright again: HOG finds it (it does not in the stored, turned pixels)
    assert len(detect_faces(image, "hog")) == 1
    if orientation != 3:
        assert detect_faces(raw, "hog") == []


# --- file names -------------------------------------------------------------------------------

def test_non_utf8_file_name(tmp_path, face):
    data = io.BytesIO()
    Image.fromarray(face).save(data, "PNG")
    raw_name = os.path.join(os.fsencode(tmp_path), b"caf\xe9_\xff\xfe.png")  # latin-1 bytes, not UTF-8
    with open(raw_name, "wb") as fh:
        fh.write(data.getvalue())
    np.testing.assert_array_equal(read_image(raw_name), face)            # bytes path
    np.testing.assert_array_equal(read_image(os.fsdecode(raw_name)), face)  # str with surrogate escapes
    assert os.fsdecode(raw_name) in [str(p) for p in tmp_path.iterdir()]


def test_very_long_file_names(tmp_path, face):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    longest = tmp_path / ("a" * (name_max - 4) + ".png")
    assert len(longest.name.encode()) == name_max
    _save(face, longest)
    np.testing.assert_array_equal(read_image(longest), face)

    too_long = tmp_path / ("b" * (name_max + 1) + ".png")
    with pytest.raises(ImageError) as info:
        read_image(too_long)
    assert type(info.value) is ImageNotFoundError
    assert "too long" in str(info.value).lower()

    with pytest.raises(ImageNotFoundError):
        read_image(tmp_path / ("c" * (name_max + 1)) / "face.png")  # a folder name over NAME_MAX


def test_pathlib_str_and_bytes_paths_agree(jaffe_face_image):
    face, path = jaffe_face_image
    for p in (path, str(path), os.fsencode(path)):
        np.testing.assert_array_equal(read_image(p), face)


def test_unknown_mode_is_a_value_error(jaffe_face_image):
    with pytest.raises(ValueError, match="mode"):
        read_image(jaffe_face_image[1], mode="bgr")
