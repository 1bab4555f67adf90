"""Read any image file safely into a uint8 array.

Pillow decodes; every failure becomes one specific :mod:`common.errors` exception.
The pixel count is checked from the header *before* decoding, so a file that declares
50,000 x 50,000 pixels is refused without allocating memory for it.
"""

import os
import stat
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import (CorruptImageError, EmptyImageError, ImageNotFoundError,
                     ImagePermissionError, ImageTooLargeError, ImageTooSmallError,
                     NotAFileError, NotAnImageError)

#: Refuse images with more pixels than this (about 10k x 10k).
MAX_PIXELS = 100_000_000
# Pillow's decompression-bomb warning starts at 89.5 MP by default: the project's limit is 100 MP
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
#: Images smaller than this on a side cannot hold 68 meaningful landmarks.
MIN_SIDE = 16
_EXIF_ORIENTATION = 0x0112
#: Leading bytes of the formats Pillow reads. A file that starts with one of these but that
#: Pillow cannot identify is a broken image (header cut or damaged), not a non-image.
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a")


def _has_image_signature(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _check_file(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageNotFoundError(path) from None
    except PermissionError:
        raise ImagePermissionError(path) from None
    except (OSError, ValueError) as exc:  # name too long, embedded NUL, ...
        raise ImageNotFoundError(path, str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(path)
    if st.st_size == 0:
        raise EmptyImageError(path)


#: A JPEG with more scans than this is refused before decoding: progressive JPEGs have about
#: ten; each extra scan costs a full pass over the image (libjpeg-turbo's -maxscans guard).
MAX_JPEG_SCANS = 100
#: Decoding work allowed for one JPEG, in pixels x scans: a progressive scan is a pass over the
#: whole image (about 2.5-5 ms per megapixel on this project's 2-core benchmark machine), so
#: this bounds one image's decoding to a few seconds: 100 MP with 20 scans, or 20 MP with 100.
MAX_JPEG_WORK = 2_000_000_000


def _check_jpeg_scans(path):
    """Count a JPEG's start-of-scan markers (FF DA; never inside entropy-coded data, where FF is
    always followed by 00 or a restart marker), refusing more than MAX_JPEG_SCANS; 0 for other files."""
    with open(path, "rb") as fh:
        if fh.read(3) != b"\xff\xd8\xff":
            return 0
        fh.seek(0)
        scans, tail = 0, b""
        while chunk := fh.read(1 << 20):
            data = tail + chunk
            scans += data.count(b"\xff\xda")
            tail = data[-1:]
            if scans > MAX_JPEG_SCANS:
                raise CorruptImageError(path, f"more than {MAX_JPEG_SCANS} JPEG scans: refused before decoding")
    return scans


#: Rows converted at a time from 16-bit, 32-bit or float samples (bounds the temporary arrays).
_ROWS_PER_STEP = 512


def _scaled_to_uint8(img):
    """16-bit, 32-bit integer or float samples -> uint8, a band of rows at a time in float32.

    16-bit images keep their scale (0-65535 -> 0-255) when they use it; float images already
    in 0..1 are scaled by 255; anything else is stretched from its minimum to its maximum.
    Memory: the image itself plus a few bands, never a float64 copy of the whole image.
    """
    lo, hi = (float(v) for v in img.getextrema())  # Pillow scans the samples without a copy
    is_float = img.mode == "F"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if img.mode.startswith("I;16") and lo >= 0 and hi <= 65535 and hi > 255:
        offset, scale = 0.0, 1 / 257.0
    elif is_float and lo >= 0 and hi <= 1:
        offset, scale = 0.0, 255.0
    elif hi > 255 or lo < 0:
        offset, scale = lo, 255.0 / max(hi - lo, 1e-9)
    else:
        offset, scale = 0.0, 1.0
    width, height = img.size
    out = np.empty((height, width), dtype=np.uint8)
    for r in range(0, height, _ROWS_PER_STEP):
        band = np.asarray(img.crop((0, r, width, min(r + _ROWS_PER_STEP, height))), dtype=np.float32)
        if is_float:
            band = np.nan_to_num(band, nan=0.0, posinf=255.0 / scale + offset, neginf=offset)
        band = (band - offset) * scale
        np.clip(np.rint(band, out=band), 0, 255, out=band)
        out[r:r + _ROWS_PER_STEP] = band
    return out


def _to_uint8(img):
    """Any Pillow mode -> 'L' or 'RGB' image with 8-bit samples."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_scaled_to_uint8(img), "L")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "P":
        palette = img.getpalette() or []
        rgb = np.asarray(palette[:768], dtype=np.int32).reshape(-1, 3) if palette else None
        is_gray = rgb is not None and bool(np.all(rgb[:, 0] == rgb[:, 1]) and np.all(rgb[:, 1] == rgb[:, 2]))
        return img.convert("L" if is_gray else "RGB")
    if mode in ("1", "La"):
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def read_image(path, mode="gray", max_pixels=MAX_PIXELS):
    """Read ``path`` into a uint8 array: (h, w) for ``mode="gray"``, (h, w, 3) RGB for ``"rgb"``.

    EXIF orientation is applied. Raises a subclass of :class:`common.errors.ImageError`.
    """
    if mode not in ("gray", "rgb"):
        raise ValueError(f"mode must be 'gray' or 'rgb', not {mode!r}")
    path = os.fspath(path)
    _check_file(path)
    try:
        scans = _check_jpeg_scans(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF/truncation chatter: errors are raised instead
            # Pillow's warning, raised here as an error, is the check that runs before anything is
            # decoded for every format (an ICO decodes its image inside Image.open); its threshold
            # is MAX_PIXELS (set where this module is imported), so the README's limit is the one applied
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageTooLargeError(path, f"{w}x{h}")
                if min(w, h) < MIN_SIDE:
                    raise ImageTooSmallError(path, f"{w}x{h}")
                if w * h * scans > MAX_JPEG_WORK:
                    raise ImageTooLargeError(path, f"{w}x{h} x {scans} scans: over {MAX_JPEG_WORK:.0e} pixel-scans "
                                                   "of decoding, refused before decoding")
                img.load()
                if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                    img = ImageOps.exif_transpose(img)
                img = _to_uint8(img)
                img = img.convert("L") if mode == "gray" else img.convert("RGB")
                return np.array(img, dtype=np.uint8)
    except UnidentifiedImageError:
        if _has_image_signature(path):
            raise CorruptImageError(path, "image header is damaged or cut short") from None
        raise NotAnImageError(path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(path, str(exc).split(".")[0]) from None
    except PermissionError:
        raise ImagePermissionError(path) from None
    except (ImageTooLargeError, ImageTooSmallError):
        raise
    except MemoryError:
        raise ImageTooLargeError(path, "out of memory while decoding") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            KeyError, ZeroDivisionError, struct.error) as exc:
        raise CorruptImageError(path, str(exc)[:120]) from None


def as_image(image, mode="gray", max_pixels=MAX_PIXELS):
    """Pixels of ``image`` as read_image gives them: a path, a PIL image, or a numpy array.

    A numpy array must be uint8, (h, w) gray or (h, w, 3) RGB ((h, w, 4) RGBA is composited
    on white like an RGBA file). In-memory images pass the same size checks as files and
    raise ImageError subclasses naming ``<array>`` or ``<PIL image>``.
    """
    if isinstance(image, (str, bytes, os.PathLike)):
        return read_image(image, mode, max_pixels)
    if isinstance(image, Image.Image):
        name, img = "<PIL image>", image
    else:
        name, arr = "<array>", np.asarray(image)
        if arr.dtype != np.uint8:
            raise NotAnImageError(name, f"dtype {arr.dtype}, expected uint8 pixels")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
            raise NotAnImageError(name, f"shape {arr.shape}, expected (h, w), (h, w, 3) or (h, w, 4)")
        img = Image.fromarray(np.ascontiguousarray(arr), "L" if arr.ndim == 2 else {3: "RGB", 4: "RGBA"}[arr.shape[2]])
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(name, f"{w}x{h}")
    if min(w, h) < MIN_SIDE:
        raise ImageTooSmallError(name, f"{w}x{h}")
    img = _to_uint8(img)
    img = img.convert("L") if mode == "gray" else img.convert("RGB")
    return np.array(img, dtype=np.uint8)
