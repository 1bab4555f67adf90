"""Gabor jets: the texture of the face around each inner landmark, at several scales and orientations.

The classical facial-expression descriptor (Lyons et al., "Coding facial expressions with Gabor
wavelets", 1998, the paper that introduced JAFFE): a bank of complex Gabor filters, 5
wavelengths an octave-half apart times 8 orientations, and the magnitude of each response read
at each landmark of the brows, nose, eyes and mouth (the jaw outline is left out: it is the
face's edge, not its expression). Wrinkles, furrows and bulges that the landmark positions
miss (a nose wrinkle in disgust, a bulging cheek under a smile) show up here.

The bank keeps the paper's design values; none of them was tuned on a benchmark. Only the
responses at the landmarks are needed, so each is one dot product of the filter with the
patch around the point (OpenCV's ``getRectSubPix`` reads the patch at sub-pixel precision),
not a filtering of the whole face, and each wavelength reads only as much of the patch as
its kernel covers: about 0.4 ms per face on one core.
"""

import contextlib
import functools

import cv2
import numpy as np

from landmarks.parts import points_of
from landmarks.shape import ALIGN_SIZE

from .columns import Column

#: Wavelengths in aligned-face pixels at ALIGN_SIZE=96 (scale with the aligned size).
WAVELENGTHS = tuple(4.0 * 2 ** (k / 2) for k in range(5))
ORIENTATIONS = 8
SIGMA_PER_WAVELENGTH = 0.56   # about one octave of bandwidth
#: The inner landmarks, by region: (region name in the column names, face part, its landmark indices).
REGIONS = tuple((region, part, points_of(part)) for region, part in
                (("brow", "brows"), ("nose", "nose"), ("eye", "eyes"), ("mouth", "mouth")))
POINTS = tuple(i for _, _, indices in REGIONS for i in indices)
_POINTS = np.array(POINTS)


@functools.lru_cache(maxsize=None)
def _bank(size):
    """[(patch side, (side*side, 2*ORIENTATIONS) float32 matrix: even then odd kernels)] per wavelength."""
    bank = []
    for wavelength in WAVELENGTHS:
        wavelength *= size / ALIGN_SIZE
        sigma = SIGMA_PER_WAVELENGTH * wavelength
        side = 2 * int(round(2.5 * sigma)) + 1
        even, odd = [], []
        for k in range(ORIENTATIONS):
            theta = k * np.pi / ORIENTATIONS
            for psi, out in ((0.0, even), (np.pi / 2, odd)):
                kernel = cv2.getGaborKernel((side, side), sigma, theta, wavelength, 1.0, psi, cv2.CV_64F)
                out.append((kernel - kernel.mean()).ravel())  # no response to flat brightness
        bank.append((side, np.ascontiguousarray(np.stack(even + odd, axis=1), dtype=np.float32)))
    return bank


@functools.lru_cache(maxsize=None)
def _blas():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController().select(user_api="blas")


def _one_blas_thread():
    """BLAS sums in an order that depends on its thread count: one thread everywhere keeps
    extraction workers (one thread each) and the per-image API bit-identical. Small products
    gain nothing from threads anyway; OpenCV's gemm is deterministic but 7x slower. Where BLAS
    already runs one thread (extraction workers) nothing needs changing (limiting costs 8 us)."""
    blas = _blas()
    if all(library.num_threads == 1 for library in blas.lib_controllers):
        return contextlib.nullcontext()
    return blas.limit(limits=1)


def gabor_jets(aligned, aligned_points):
    """log(1 + |response|) of each filter at each of POINTS: (len(POINTS) * 40,) float32,
    point-major (all filters of one point together, wavelength-major within a point)."""
    bank = _bank(aligned.shape[0])
    full = bank[-1][0]
    image = aligned.astype(np.float32)
    image = (image - image.mean()) / (image.std() + 1e-6)   # invariant to brightness and contrast
    points = np.asarray(aligned_points, dtype=np.float64)[_POINTS]
    # each patch is read straight into its slot (no per-patch array, no stacking copy), at
    # points given as Python floats: same values, about 0.1 ms less per face
    patches = np.empty((len(points), full, full), dtype=np.float32)
    for patch, (x, y) in zip(patches, points.tolist()):
        cv2.getRectSubPix(image, (full, full), (x, y), patch=patch)
    magnitudes = []
    with _one_blas_thread():
        for side, kernels in bank:   # each wavelength reads only the centre of the patch it needs
            start = (full - side) // 2
            window = np.ascontiguousarray(patches[:, start:start + side, start:start + side]).reshape(len(points), -1)
            responses = window @ kernels
            magnitudes.append(np.hypot(responses[:, :ORIENTATIONS], responses[:, ORIENTATIONS:]))
    return np.log1p(np.concatenate(magnitudes, axis=1)).ravel().astype(np.float32)


@functools.lru_cache(maxsize=None)
def gabor_columns():
    """The gabor group's columns, ``gabor_<region>_point<i>_wl<wavelength>px_ori<degrees>``: the
    jets of one face part's points make one unit, its texture. ``ori`` is the direction the wave
    runs in the image (0: left to right, i.e. vertical stripes and edges; 90: downwards, i.e.
    horizontal ones such as the lip line or forehead wrinkles)."""
    columns = []
    for region, part, indices in REGIONS:   # REGIONS in POINTS order
        columns += [Column(f"gabor_{region}_point{i:02d}_wl{wavelength:.1f}px_ori{k * 180 // ORIENTATIONS:03d}",
                           f"{part} texture (Gabor jets)", part)
                    for i in indices for wavelength in WAVELENGTHS for k in range(ORIENTATIONS)]
    return tuple(columns)


def gabor_names():
    """The names of :func:`gabor_columns`."""
    return tuple(column.name for column in gabor_columns())
