"""Scale-free geometric features of 68 landmarks, each with a name a person understands.

Points are first normalised: origin at the midpoint of the eye centres, eye line
horizontal, inter-ocular distance (IOD) = 1, y pointing down. Every feature is then
invariant to translation, scale and in-plane rotation of the input. "left"/"right" are as
seen in the image (``left_*`` is the subject's right side).
"""

import functools
import math

import numpy as np

from common.errors import DegenerateLandmarksError
from landmarks.parts import N_POINTS, PART_OF_POINT, points_of
from landmarks.shape import check_points, eye_centres

from .columns import Column


def normalise_points(points, checked=False):
    """(68, 2) points -> the same points with eyes level, IOD 1, eye midpoint at the origin.

    ``checked=True`` skips the degeneracy check for points that already passed it.
    """
    points = np.asarray(points, dtype=np.float64)
    iod = None if checked else check_points(points)  # checked first: it rejects non-finite points
    left, right = eye_centres(points)
    iod = float(np.hypot(*(right - left))) if iod is None else iod
    dx, dy = (right - left) / iod
    rotation = np.array([[dx, dy], [-dy, dx]])  # rotates the eye line onto +x
    with np.errstate(over="ignore", invalid="ignore"):
        normalised = (points - (left + right) / 2.0) @ rotation.T / iod
    if not np.all(np.isfinite(normalised)):  # absurd spread relative to the eye distance
        raise DegenerateLandmarksError("normalised landmarks are not finite")
    return normalised


# The feature functions take the normalised points as a list of (x, y) float pairs:
# plain-Python arithmetic on 68 points is several times faster than numpy's per-call overhead.
def distance(p, i, j):
    return math.hypot(p[i][0] - p[j][0], p[i][1] - p[j][1])


def _mean_y(p, *indices):
    return sum(p[k][1] for k in indices) / len(indices)


def _angle(p, i, j):
    """Angle (degrees) of the segment i -> j against the eye line, positive when j is higher."""
    dx, dy = p[j][0] - p[i][0], p[j][1] - p[i][1]
    return math.degrees(math.atan2(-dy, abs(dx) + 1e-12))


def _eye_openness(p, eye):
    a, b, c, d, e, f = eye  # corners a, d; upper lid b, c; lower lid f, e
    return (distance(p, b, f) + distance(p, c, e)) / (2.0 * distance(p, a, d) + 1e-12)


_LEFT_EYE, _RIGHT_EYE = points_of("left_eye"), points_of("right_eye")


def _brow_to_mouth(p):
    mx, my = (p[21][0] + p[22][0]) / 2, (p[21][1] + p[22][1]) / 2
    return math.hypot(mx - p[51][0], my - p[51][1])


# name -> (description, face part, function of normalised points). Order is the column order.
FEATURES = {
    "mouth_width": ("distance between the lip corners", "mouth", lambda p: distance(p, 48, 54)),
    "mouth_opening": ("gap between the inner lips", "mouth", lambda p: distance(p, 62, 66)),
    "outer_lip_height": ("top of upper lip to bottom of lower lip", "mouth", lambda p: distance(p, 51, 57)),
    "mouth_aspect": ("inner-lip gap over mouth width", "mouth",
                     lambda p: distance(p, 62, 66) / (distance(p, 60, 64) + 1e-12)),
    "left_lip_corner_raise": ("left lip corner above the lip midline", "mouth",
                              lambda p: (p[51][1] + p[57][1]) / 2.0 - p[48][1]),
    "right_lip_corner_raise": ("right lip corner above the lip midline", "mouth",
                               lambda p: (p[51][1] + p[57][1]) / 2.0 - p[54][1]),
    "left_lip_corner_angle": ("slope from lower-lip centre to left corner", "mouth", lambda p: _angle(p, 57, 48)),
    "right_lip_corner_angle": ("slope from lower-lip centre to right corner", "mouth", lambda p: _angle(p, 57, 54)),
    "upper_lip_to_nose": ("nose base to top of upper lip", "nose", lambda p: distance(p, 33, 51)),
    "lower_lip_to_chin": ("bottom of lower lip to chin", "mouth", lambda p: distance(p, 57, 8)),
    "jaw_drop": ("eye line to chin", "jaw", lambda p: p[8][1]),
    "left_corner_to_eye": ("left lip corner to left eye corner", "eyes", lambda p: distance(p, 48, 36)),
    "right_corner_to_eye": ("right lip corner to right eye corner", "eyes", lambda p: distance(p, 54, 45)),
    "left_eye_openness": ("left eyelid opening over eye width", "eyes", lambda p: _eye_openness(p, _LEFT_EYE)),
    "right_eye_openness": ("right eyelid opening over eye width", "eyes", lambda p: _eye_openness(p, _RIGHT_EYE)),
    "left_brow_raise": ("left brow above the left upper lid", "brows",
                        lambda p: _mean_y(p, 37, 38) - _mean_y(p, 18, 19, 20)),
    "right_brow_raise": ("right brow above the right upper lid", "brows",
                         lambda p: _mean_y(p, 43, 44) - _mean_y(p, 23, 24, 25)),
    "left_inner_brow_raise": ("left inner brow end above the inner eye corner", "brows", lambda p: p[39][1] - p[21][1]),
    "right_inner_brow_raise": ("right inner brow end above the inner eye corner", "brows",
                               lambda p: p[42][1] - p[22][1]),
    "left_outer_brow_raise": ("left outer brow end above the outer eye corner", "brows", lambda p: p[36][1] - p[17][1]),
    "right_outer_brow_raise": ("right outer brow end above the outer eye corner", "brows",
                               lambda p: p[45][1] - p[26][1]),
    "brow_gap": ("distance between the inner brow ends", "brows", lambda p: distance(p, 21, 22)),
    "left_brow_slope": ("slope of the left brow, inner end higher is positive", "brows", lambda p: _angle(p, 17, 21)),
    "right_brow_slope": ("slope of the right brow, inner end higher is positive", "brows", lambda p: _angle(p, 26, 22)),
    "nose_width": ("width of the nostrils", "nose", lambda p: distance(p, 31, 35)),
    "nose_length": ("nose root to nose base", "nose", lambda p: distance(p, 27, 33)),
    "brow_to_mouth": ("inner brows to upper lip", "brows", _brow_to_mouth),
    "face_width_at_mouth": ("jaw width at mouth level", "mouth", lambda p: distance(p, 4, 12)),
    "mouth_to_jaw_width": ("mouth width over lower face width", "mouth",
                           lambda p: distance(p, 48, 54) / (distance(p, 4, 12) + 1e-12)),
    "lip_corner_drop": ("lip corners below the lower-lip centre height", "mouth",
                        lambda p: ((p[48][1] + p[54][1]) / 2.0 - p[57][1])),
}
NAMES = tuple(FEATURES)
DESCRIPTIONS = {name: desc for name, (desc, _, _) in FEATURES.items()}


@functools.lru_cache(maxsize=None)
def columns():
    """The geometry group's columns: each measure is a readable unit of its own (its name in words)."""
    return tuple(Column(name, name.replace("_", " "), part, single=True) for name, (_, part, _) in FEATURES.items())


def geometric_features(points):
    """float32 vector of :data:`NAMES` for one face's 68 points.

    Raises DegenerateLandmarksError for points that cannot describe a face; the result is
    always finite.
    """
    return features_of_normalised(normalise_points(points))


def measures(p):
    """The :data:`NAMES` measures of normalised points (array or list of (x, y)), as a list of
    float64 numbers: unchecked and unrounded (features.action_units builds on them)."""
    pts = np.asarray(p, dtype=np.float64).tolist()
    return [measure(pts) for _, _, measure in FEATURES.values()]


def features_of_normalised(p):
    """geometric_features of points already normalised by :func:`normalise_points`."""
    return features_of_measures(measures(p))


def features_of_measures(measured):
    """geometric_features from :func:`measures` already taken (feature extraction shares them with
    the action units)."""
    values = np.array(measured, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.abs(values).max() > 1e4:
        raise DegenerateLandmarksError("geometric features are not finite")
    return values.astype(np.float32)


def landmark_features(points):
    """The 136 normalised coordinates (x0, y0, x1, y1, ...) as float32."""
    return landmarks_of_normalised(normalise_points(points))


def landmarks_of_normalised(p):
    if not np.all(np.isfinite(p)) or np.abs(p).max() > 1e4:
        raise DegenerateLandmarksError("normalised landmarks explode")
    return p.astype(np.float32).ravel()


@functools.lru_cache(maxsize=None)
def landmark_columns():
    """The landmarks group's columns: the coordinates of one face part's points make one unit, its shape."""
    return tuple(Column(f"point{i:02d}_{axis}", f"{PART_OF_POINT[i]} shape (landmark positions)", PART_OF_POINT[i])
                 for i in range(N_POINTS) for axis in "xy")


LANDMARK_NAMES = tuple(column.name for column in landmark_columns())
