"""Per-part patches of the aligned face (brows+eyes, nose, mouth), described by HOG and LBP.

Patches are fixed-size windows centred on each part's landmarks in the aligned face, so
every face gives vectors of the same length. HOG comes from OpenCV's HOGDescriptor (fast,
C++); LBP from scikit-image (uniform patterns, histograms over a grid of cells), imported only
when LBP is computed: it pulls in SciPy, a third of a second at start-up that the default
groups (no LBP) do not need.
"""

import functools

import cv2
import numpy as np

from landmarks.parts import points_of
from landmarks.shape import ALIGN_SIZE

from .columns import Column

#: face part -> (what the patch shows, in words; landmark indices it is centred on; (width, height)
#: in aligned pixels at ALIGN_SIZE=96)
PATCHES = {
    "eyes": ("eyes and brows", points_of("brows", "eyes"), (80, 32)),
    "nose": ("nose", points_of("nose"), (32, 40)),
    "mouth": ("mouth", points_of("mouth"), (56, 32)),
}
HOG_CELL = 8
FACE_HOG_CELL = 16
LBP_POINTS, LBP_RADIUS = 8, 1
LBP_BINS = LBP_POINTS + 2          # uniform patterns
LBP_GRID = (2, 2)                  # cells per patch (columns, rows)
LBP_SCALE = 0.5                    # LBP runs on the aligned face at this scale
#: face_lbp: uniform LBP at these radii (8 neighbours each) over a FACE_LBP_GRID x FACE_LBP_GRID grid
#: of cells of the whole aligned face, at full resolution: skin texture (wrinkles, smooth young
#: skin) for apparent age, where the expression groups read shapes and edges
FACE_LBP_RADII = (1, 2, 3)
FACE_LBP_GRID = 8


@functools.lru_cache(maxsize=None)
def _hog(width, height, cell):
    return cv2.HOGDescriptor((width, height), (2 * cell, 2 * cell), (cell, cell), (cell, cell), 9)


def patch_boxes(aligned_points, size=ALIGN_SIZE):
    """part -> (cx, cy, w, h) of each patch in aligned-face coordinates."""
    scale = size / ALIGN_SIZE
    boxes = {}
    for part, (_, indices, (w, h)) in PATCHES.items():
        cx, cy = np.asarray(aligned_points, dtype=np.float64)[indices].mean(axis=0)
        boxes[part] = (float(cx), float(cy), int(round(w * scale)), int(round(h * scale)))
    return boxes


def crop_patch(aligned, box):
    cx, cy, w, h = box
    return cv2.getRectSubPix(aligned, (w, h), (cx, cy))


def hog_dims():
    return {part: int(_hog(w, h, HOG_CELL).getDescriptorSize()) for part, (_, _, (w, h)) in PATCHES.items()}


def part_hog(aligned, aligned_points):
    """HOG of each part patch, concatenated in PATCHES order (float32)."""
    out = []
    for part, box in patch_boxes(aligned_points, aligned.shape[0]).items():
        patch = crop_patch(aligned, box)
        out.append(_hog(box[2], box[3], HOG_CELL).compute(patch).ravel())
    return np.concatenate(out).astype(np.float32)


def _lbp_histograms(codes, grid=LBP_GRID):
    """Normalised histograms of LBP codes over a grid of (columns, rows) cells, in one bincount."""
    h, w = codes.shape
    row_cell = np.minimum(np.arange(h) * grid[1] // h, grid[1] - 1)
    col_cell = np.minimum(np.arange(w) * grid[0] // w, grid[0] - 1)
    cell = row_cell[:, None] * grid[0] + col_cell[None, :]
    n_cells = grid[0] * grid[1]
    counts = np.bincount((cell * LBP_BINS + codes.astype(np.int64)).ravel(), minlength=n_cells * LBP_BINS)
    counts = counts.reshape(n_cells, LBP_BINS).astype(np.float32)
    return (counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)).ravel()


def part_lbp(aligned, aligned_points):
    """Uniform-LBP histograms (LBP_GRID cells) of each part patch, concatenated.

    Codes are computed once over the aligned face at half resolution (LBP_SCALE; most
    expression datasets are 48 px faces, and it keeps LBP cheap), then counted per patch.
    """
    from skimage.feature import local_binary_pattern

    size = int(round(aligned.shape[0] * LBP_SCALE))
    small = cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)
    codes = local_binary_pattern(small, LBP_POINTS, LBP_RADIUS, "uniform").astype(np.int64)
    points = np.asarray(aligned_points, dtype=np.float64) * (size / aligned.shape[0])
    out = []
    for cx, cy, w, h in patch_boxes(points, size).values():
        x0 = int(np.clip(round(cx - w / 2), 0, size - w))
        y0 = int(np.clip(round(cy - h / 2), 0, size - h))
        out.append(_lbp_histograms(codes[y0:y0 + h, x0:x0 + w]))
    return np.concatenate(out).astype(np.float32)


def face_lbp(aligned):
    """Uniform-LBP histograms of the whole aligned face at each of FACE_LBP_RADII, over a
    FACE_LBP_GRID x FACE_LBP_GRID grid of cells, square-rooted (the Hellinger map: a linear or RBF
    model then compares histograms as distributions). Opt-in (``--groups``): the age and gender
    models' tables use it (BENCHMARKS.md, issue 22)."""
    from skimage.feature import local_binary_pattern

    grid = (FACE_LBP_GRID, FACE_LBP_GRID)
    out = [_lbp_histograms(local_binary_pattern(aligned, LBP_POINTS, radius, "uniform").astype(np.int64), grid)
           for radius in FACE_LBP_RADII]
    return np.sqrt(np.concatenate(out)).astype(np.float32)


def face_hog(aligned):
    """HOG of the whole aligned face with coarse (16 px) cells."""
    size = aligned.shape[0]
    return _hog(size, size, FACE_HOG_CELL).compute(aligned).ravel().astype(np.float32)


def _patch_columns(kind, names):
    """Columns of a descriptor of the part patches from (part, column name) pairs: one unit per patch."""
    return tuple(Column(name, f"{PATCHES[part][0]} appearance ({kind})", part) for part, name in names)


@functools.lru_cache(maxsize=None)
def part_hog_columns():
    """The parts_hog group's columns: each patch's HOG cells make one unit, its appearance."""
    return _patch_columns("HOG", ((part, f"hog_{part}_{i:04d}") for part, n in hog_dims().items() for i in range(n)))


@functools.lru_cache(maxsize=None)
def part_lbp_columns():
    """The parts_lbp group's columns: each patch's LBP histograms make one unit, its appearance."""
    cells = LBP_GRID[0] * LBP_GRID[1]
    return _patch_columns("LBP", ((part, f"lbp_{part}_cell{c}_bin{b}")
                                  for part in PATCHES for c in range(cells) for b in range(LBP_BINS)))


@functools.lru_cache(maxsize=None)
def face_lbp_columns():
    """The face_lbp group's columns, ``lbp_face_r<radius>_cell<row><column>_bin<b>``: one unit, the
    whole face's skin texture (no face part)."""
    return tuple(Column(f"lbp_face_r{radius}_cell{r}{c}_bin{b}", "whole-face skin texture (LBP)")
                 for radius in FACE_LBP_RADII for r in range(FACE_LBP_GRID) for c in range(FACE_LBP_GRID)
                 for b in range(LBP_BINS))


@functools.lru_cache(maxsize=None)
def face_hog_columns(size=ALIGN_SIZE):
    """The face_hog group's columns: one unit, the whole face's appearance (no face part)."""
    return tuple(Column(f"hog_face_{i:04d}", "whole-face appearance (HOG)")
                 for i in range(_hog(size, size, FACE_HOG_CELL).getDescriptorSize()))
