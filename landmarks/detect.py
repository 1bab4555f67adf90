"""Face boxes: dlib HOG, dlib CNN (MMOD), or the whole image for pre-cropped faces."""

import numpy as np

from . import models

DETECTORS = ("auto", "hog", "cnn", "whole")
#: ``auto`` treats images whose longer side is at most this as tight face crops.
AUTO_WHOLE_MAX_SIDE = 128
#: For ``whole``: fraction of the crop trimmed from each side so the box resembles a
#: dlib detector box (brows to chin) rather than the full crop.
WHOLE_MARGIN = 0.0


def resolve_detector(method, shape):
    if method not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, not {method!r}")
    if method == "auto":
        return "whole" if max(shape[:2]) <= AUTO_WHOLE_MAX_SIDE else "hog"
    return method


def whole_box(shape, margin=WHOLE_MARGIN):
    h, w = shape[:2]
    dx, dy = int(round(w * margin)), int(round(h * margin))
    return (dx, dy, w - 2 * dx, h - 2 * dy)


def _to_box(rect, shape):
    h, w = shape[:2]
    left, top = max(rect.left(), 0), max(rect.top(), 0)
    right, bottom = min(rect.right(), w - 1), min(rect.bottom(), h - 1)
    return (int(left), int(top), int(right - left + 1), int(bottom - top + 1))


def detect_faces(image, method="auto", upsample=0):
    """Face boxes ``(x, y, w, h)`` in ``image`` (uint8 gray or RGB), largest first.

    ``upsample`` asks dlib to enlarge the image that many times (finds smaller faces,
    costs about 4x per step).
    """
    image = np.ascontiguousarray(image)
    method = resolve_detector(method, image.shape)
    if method == "whole":
        return [whole_box(image.shape)]
    if method == "hog":
        rects = models.hog_detector()(image, int(upsample))
    else:
        rects = [d.rect for d in models.cnn_detector()(image, int(upsample))]
    boxes = [b for b in (_to_box(r, image.shape) for r in rects) if b[2] > 1 and b[3] > 1]
    return sorted(boxes, key=lambda b: -b[2] * b[3])
