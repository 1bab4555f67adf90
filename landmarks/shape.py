"""68 landmark points (their named parts are in :mod:`landmarks.parts`), and alignment to a canonical face."""

from dataclasses import dataclass

import cv2
import numpy as np

from . import models
from .detect import detect_faces
from .parts import PARTS
from common.errors import DegenerateLandmarksError

#: Horizontal mirror: point i of a flipped face is point MIRROR[i] of the original.
MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)

#: Canonical aligned face: output side, eye centres' height and inter-ocular distance,
#: both as fractions of the side.
ALIGN_SIZE = 96
#: No detector looks for a face in an image (after reduction to MAX_SIDE) thinner than this.
MIN_FACE_SIDE = 16
ALIGN_EYE_Y = 0.36
ALIGN_EYE_DISTANCE = 0.40


@dataclass
class Face:
    box: tuple            # (x, y, w, h) in the input image
    points: np.ndarray    # (68, 2) float32, input-image coordinates
    aligned: np.ndarray = None         # (S, S) uint8 aligned face
    aligned_points: np.ndarray = None  # (68, 2) float32 in aligned coordinates
    checked: bool = False              # points passed check_points (not degenerate)


def eye_centres(points):
    points = np.asarray(points, dtype=np.float64)
    return points[PARTS["left_eye"]].mean(axis=0), points[PARTS["right_eye"]].mean(axis=0)


def check_points(points, min_spread=1e-3):
    """Raise DegenerateLandmarksError for points that cannot describe a face."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        raise DegenerateLandmarksError("landmarks are not 68 finite points")
    with np.errstate(over="ignore", invalid="ignore"):  # absurd coordinates overflow to inf/nan
        left, right = eye_centres(points)
        iod = float(np.hypot(*(right - left)))
        centred = points - points.mean(axis=0)
        if not (np.isfinite(iod) and np.all(np.isfinite(centred))):
            raise DegenerateLandmarksError("landmark coordinates are too large to describe a face")
        # written as "not >=" so that a NaN never passes
        if not iod >= min_spread:
            raise DegenerateLandmarksError("eye centres coincide")
        singular = np.linalg.svd(centred, compute_uv=False)
        if not singular[-1] >= min_spread * singular[0] + 1e-12:
            raise DegenerateLandmarksError("landmarks are collinear")
    return iod


def predict_landmarks(image, box, symmetric=False):
    """68 (x, y) points for the face in ``box`` = (x, y, w, h), as float32 (68, 2).

    ``symmetric=True``: the mean of these points and the mirror image of the points dlib finds on
    the mirrored image at the mirrored box (renumbered with :data:`MIRROR`). dlib's cascade is not
    mirror-symmetric: on a mirrored photo it places the points a pixel or two differently, enough
    to change the label of one FER-2013 face in eight. With the mean, a photo and its mirror image
    get exactly mirror-image points (dlib's points are whole pixels: the mean is exact). It costs a
    second run of the predictor.
    """
    points = _predict_landmarks(image, box)
    if symmetric:
        width = image.shape[1]
        x, y, w, h = (int(v) for v in box)
        seen = _predict_landmarks(np.ascontiguousarray(image[:, ::-1]), (width - x - w, y, w, h))
        seen[:, 0] = (width - 1) - seen[:, 0]
        points = (points + seen[MIRROR]) / np.float32(2)
    return points


def _predict_landmarks(image, box):
    import dlib

    x, y, w, h = (int(v) for v in box)
    rect = dlib.rectangle(x, y, x + w - 1, y + h - 1)
    parts = models.shape_predictor()(np.ascontiguousarray(image), rect).parts()
    # dlib's text of the points, "points[(x, y), ...]", parses 3x faster than reading 68 point
    # objects one by one (which stays the fallback, should that text ever change)
    values = np.fromstring(str(parts).translate(_POINTS_TEXT), dtype=np.float32, sep=",")
    if values.size != 136:
        values = np.fromiter((v for p in parts for v in (p.x, p.y)), dtype=np.float32, count=136)
    return values.reshape(68, 2)


_POINTS_TEXT = str.maketrans("points[()]", " " * 10)


def alignment_matrix(points, size=ALIGN_SIZE, eye_y=ALIGN_EYE_Y, eye_distance=ALIGN_EYE_DISTANCE):
    """2x3 similarity transform: eyes level, at a fixed distance and place."""
    left, right = eye_centres(points)
    dx, dy = right - left
    angle = np.degrees(np.arctan2(dy, dx))
    scale = eye_distance * size / max(np.hypot(dx, dy), 1e-9)
    centre = (left + right) / 2.0
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    matrix[0, 2] += size / 2.0 - centre[0]
    matrix[1, 2] += eye_y * size - centre[1]
    return matrix


def transform_points(points, matrix):
    points = np.asarray(points, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _shrunk_source(gray, matrix, size):
    """(source, matrix) for warping ``gray`` by ``matrix`` into size x size without aliasing.

    Bilinear warping samples the source at one point per output pixel: when it shrinks a face
    (a 200 px face in a photo to the 96 px aligned crop) detail finer than the output's pixels
    folds back as false texture, which the texture descriptors (HOG, Gabor) read as wrinkles
    and furrows. So the region the crop covers is first reduced with area averaging to the
    crop's scale, and the matrix is adjusted to the reduced region.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.8:   # little or no shrinking: bilinear is fine
        return gray, matrix
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    source_corners = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.maximum(np.floor(source_corners.min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(source_corners.max(axis=0)).astype(int) + 2, gray.shape[1::-1])
    if x1 - x0 < 2 or y1 - y0 < 2:   # the crop lies outside the image: nothing to shrink
        return gray, matrix
    region = gray[y0:y1, x0:x1]
    width, height = max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale)))
    small = cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)
    fx, fy = width / (x1 - x0), height / (y1 - y0)
    # cv2.resize maps pixel centres: x_small = (x - x0 + 0.5) * fx - 0.5
    linear = matrix[:, :2] @ np.diag([1 / fx, 1 / fy])
    offset = np.array([x0 - 0.5 + 0.5 / fx, y0 - 0.5 + 0.5 / fy])
    return small, np.hstack([linear, (matrix[:, 2] + matrix[:, :2] @ offset)[:, None]])


def align_face(image, points, size=ALIGN_SIZE):
    """Aligned gray face (size x size) and the points in its coordinates.

    Large faces are reduced with area averaging before the warp (see :func:`_shrunk_source`),
    so a face looks the same whatever its size in the photo.
    """
    check_points(points)
    matrix = alignment_matrix(points, size)
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    source, source_matrix = _shrunk_source(gray, matrix, size)
    aligned = cv2.warpAffine(source, source_matrix, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    return aligned, transform_points(points, matrix)


#: Faces smaller than this (shorter box side) are enlarged before the shape predictor.
UPSCALE_TO = 160
#: Images larger than this (longer side) are reduced before detection (bounded memory and time).
MAX_SIDE = 1600


def _resize(image, factor):
    h, w = image.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interp)


def find_faces(image, detector="auto", upsample=0, upscale_to=UPSCALE_TO, align_size=ALIGN_SIZE,
               max_side=MAX_SIDE, boxes=None, symmetric=False):
    """Detect, place 68 landmarks and align every face in ``image``; largest face first.

    Boxes and points are in the coordinates of ``image``. Faces whose landmarks are
    degenerate are dropped. ``boxes`` ((x, y, w, h) in image coordinates, e.g. faces tracked
    from an earlier video frame) replaces the detector and keeps its order. ``symmetric``: the
    landmarks of :func:`predict_landmarks` with ``symmetric=True`` (prediction reads faces so).
    """
    image = np.asarray(image)
    scale = 1.0
    if max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        image = _resize(image, scale)
    if boxes is None:
        if min(image.shape[:2]) < MIN_FACE_SIDE:  # e.g. a 10000x16 strip reduced to 1600x3: no room for a face
            return []
        boxes = detect_faces(image, detector, upsample)
    else:
        boxes = [tuple(int(round(v * scale)) for v in box) for box in boxes]
    faces = []
    for box in boxes:
        work, factor, wbox = image, 1.0, box
        if upscale_to and min(box[2], box[3]) < upscale_to:
            # enlarge the region around the face so the predictor and the crop see more pixels
            factor = upscale_to / min(box[2], box[3])
            x, y, w, h = box
            pad = int(0.25 * max(w, h))
            x0, y0 = max(x - pad, 0), max(y - pad, 0)
            x1, y1 = min(x + w + pad, image.shape[1]), min(y + h + pad, image.shape[0])
            work = _resize(image[y0:y1, x0:x1], factor)
            wbox = (int(round((x - x0) * factor)), int(round((y - y0) * factor)),
                    int(round(w * factor)), int(round(h * factor)))
            offset = np.array([x0, y0], dtype=np.float64)
        else:
            offset = np.zeros(2)
        points = predict_landmarks(work, wbox, symmetric)
        try:
            aligned, aligned_points = align_face(work, points, align_size)
        except DegenerateLandmarksError:
            continue
        original = (points.astype(np.float64) / factor + offset) / scale
        x, y, w, h = box
        faces.append(Face(box=tuple(int(round(v / scale)) for v in (x, y, w, h)),
                          points=original.astype(np.float32),
                          aligned=aligned, aligned_points=aligned_points, checked=True))
    return faces


def mirrored(face):
    """The same face seen in a mirror, made from its aligned crop (no warp, no shape predictor).

    The crop is flipped about the canonical frame's centre line, x = size / 2 (the eye midpoint's
    place), which lies half a pixel off the pixel grid's own centre, (size - 1) / 2: column j of the
    mirrored crop is column size - j of the crop, and column 0, which has no counterpart in the
    crop, repeats the last one. So it is the alignment of the flipped image the face was aligned
    from (the photo, or for a face under ``UPSCALE_TO`` its enlargement) up to the rounding of the
    warp, at a fraction of its cost. :func:`mirror_face` (``extract --flip``) aligns the flipped
    photo itself, without that enlargement, so for small faces the two differ a little. Points are
    reflected and renumbered with :data:`MIRROR` (point 36 is still the image-left eye's outer
    corner); image points are reflected about the box's centre line.
    """
    size = face.aligned.shape[1]
    aligned = np.empty_like(face.aligned)
    aligned[:, 1:] = face.aligned[:, :0:-1]
    aligned[:, 0] = face.aligned[:, -1]
    aligned_points = np.asarray(face.aligned_points, dtype=np.float32).copy()
    aligned_points[:, 0] = size - aligned_points[:, 0]
    points = np.asarray(face.points, dtype=np.float32).copy()
    x, _, w, _ = face.box
    points[:, 0] = (2 * x + w - 1) - points[:, 0]
    return Face(box=face.box, points=points[MIRROR], aligned=aligned, aligned_points=aligned_points[MIRROR],
                checked=face.checked)


def mirror_face(image, face, align_size=ALIGN_SIZE):
    """The horizontally mirrored image and its Face, without rerunning the shape predictor.

    Points are reflected and renumbered with :data:`MIRROR`, so point 36 is still the
    image-left eye's outer corner. Used for training-time flip augmentation.
    """
    image = np.asarray(image)
    width = image.shape[1]
    flipped = np.ascontiguousarray(image[:, ::-1])
    points = np.asarray(face.points, dtype=np.float32).copy()
    points[:, 0] = (width - 1) - points[:, 0]
    points = points[MIRROR]
    aligned, aligned_points = align_face(flipped, points, align_size)
    x, y, w, h = face.box
    return flipped, Face(box=(width - x - w, y, w, h), points=points, aligned=aligned,
                         aligned_points=aligned_points, checked=face.checked)
