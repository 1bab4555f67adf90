"""Face boxes: dlib HOG, dlib CNN (MMOD), the whole image for pre-cropped faces, or ``auto``.

``auto`` decides from what it finds, not from the image size alone:

1. dlib's HOG detector, at the caller's ``upsample`` and then one more upsampling step at a
   time while nothing is found and the enlarged image's longer side stays within
   :data:`AUTO_MAX_SIDE`, at most :data:`AUTO_MAX_STEPS` steps (HOG finds faces of about
   80 px, 40 px after one step, 20 px after two: small photos get the steps they need, large
   ones cost no more than ``hog``). A box near the detector's smallest size at its step
   (:data:`REFINE_BELOW`) is a coarse, weak response and is looked at again one step finer,
   in a region around it only.
2. A face that covers most of the image (IoU with the whole image at least
   :data:`TIGHT_CROP_IOU`) means the image is a tight face crop: the box is the whole image,
   as for the ``whole`` detector (CK+48 and FER-2013 are trained that way).
3. Nothing found: the whole image is the face only if it looks like a tight crop: it is
   crop-sized (longer side at most :data:`CROP_MAX_SIDE`, sides within :data:`CROP_MAX_ASPECT`
   of each other; FER-2013's hardest faces, which no detector step finds, are such crops), or,
   scaled to :data:`CROP_CHECK_SIDE` px and framed by a replicated border, it gives a HOG
   response at the lowered threshold :data:`CROP_CHECK_THRESHOLD` that covers most of it.
   Otherwise no face.
"""

import cv2
import numpy as np

from common.limits import check_whole_number

from . import models

DETECTORS = ("auto", "hog", "cnn", "whole")
#: ``auto`` adds upsampling steps only while the enlarged image's longer side is at most this,
#: and at most AUTO_MAX_STEPS of them beyond the caller's ``upsample``.
AUTO_MAX_SIDE = 1200
AUTO_MAX_STEPS = 3
#: dlib's HOG window is 80x80: a level whose image is smaller than this cannot hold a face.
HOG_MIN_SIDE = 80
#: ``auto``: a box smaller than this at its upsampling step (in the enlarged image's pixels)
#: is looked at again one step finer (JAFFE's faces, 125-180 px at step 0, never are).
REFINE_BELOW = 100
#: ``auto``: a detection whose IoU with the whole image is at least this marks a tight crop.
TIGHT_CROP_IOU = 0.5
#: ``auto``'s tight-crop check when nothing is found: the image's longer side is scaled to this,
#: framed by a replicated border of a third of it, and HOG runs with this (lowered) threshold;
#: a response whose IoU with the image is at least CROP_CHECK_IOU makes it a face crop.
CROP_CHECK_SIDE = 192
CROP_CHECK_THRESHOLD = -1.0
CROP_CHECK_IOU = 0.4
#: ``auto``: an image this small (longer side) and this close to square, in which no detector
#: step finds a face, is taken as a tight face crop.
CROP_MAX_SIDE = 128
CROP_MAX_ASPECT = 1.5
#: For ``whole``: fraction of the crop trimmed from each side so the box resembles a
#: dlib detector box (brows to chin) rather than the full crop.
WHOLE_MARGIN = 0.0


def resolve_detector(method, shape=None):
    """Check ``method``; ``auto`` stays ``auto`` (it decides per image, from what it finds)."""
    if method not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, not {method!r}")
    return method


def whole_box(shape, margin=WHOLE_MARGIN):
    h, w = shape[:2]
    dx, dy = int(round(w * margin)), int(round(h * margin))
    return (dx, dy, w - 2 * dx, h - 2 * dy)


def iou(a, b):
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    union = float(aw * ah + bw * bh - w * h)
    return w * h / union if union > 0 else 0.0


def _to_box(rect, shape):
    h, w = shape[:2]
    left, top = max(rect.left(), 0), max(rect.top(), 0)
    right, bottom = min(rect.right(), w - 1), min(rect.bottom(), h - 1)
    return (int(left), int(top), int(right - left + 1), int(bottom - top + 1))


def _sorted_boxes(rects, shape):
    boxes = [b for b in (_to_box(r, shape) for r in rects) if b[2] > 1 and b[3] > 1]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def auto_levels(shape, upsample=0):
    """The upsampling steps ``auto`` may try on an image of ``shape``, in order."""
    side, first = max(shape[:2]), int(upsample)
    levels = [first]
    while levels[-1] < first + AUTO_MAX_STEPS and side * 2 ** (levels[-1] + 1) <= AUTO_MAX_SIDE:
        levels.append(levels[-1] + 1)
    useful = [level for level in levels if min(shape[:2]) * 2 ** level >= HOG_MIN_SIDE]
    return useful or levels[-1:]


def _refine(image, box, level):
    """A box near the detector's smallest size at its step is coarse (a weak response to a face
    smaller than the window, up to 1.6 times its size): look again one step finer, around it only."""
    if min(box[2], box[3]) * 2 ** level >= REFINE_BELOW:
        return box
    x, y, w, h = box
    x0, y0 = max(x - w // 2, 0), max(y - h // 2, 0)
    x1, y1 = min(x + w + w // 2, image.shape[1]), min(y + h + h // 2, image.shape[0])
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    rects, scores, _ = models.hog_detector().run(region, level + 1, 0.0)
    found = [(score, (b[0] + x0, b[1] + y0, b[2], b[3]))
             for score, b in zip(scores, (_to_box(r, region.shape) for r in rects))]
    found = [(score, b) for score, b in found if iou(b, box) >= 0.2]
    return max(found)[1] if found else box


def looks_like_tight_crop(image):
    """True when the whole ``image`` is (nearly) one face: see the module docstring, step 3."""
    h, w = image.shape[:2]
    factor = CROP_CHECK_SIDE / max(h, w)
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    pad = CROP_CHECK_SIDE // 3
    framed = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    rects, _, _ = models.hog_detector().run(np.ascontiguousarray(framed), 0, CROP_CHECK_THRESHOLD)
    crop = (pad, pad, size[0], size[1])
    return any(iou((r.left(), r.top(), r.width(), r.height()), crop) >= CROP_CHECK_IOU for r in rects)


def detect_auto(image, upsample=0):
    """``auto``'s boxes for ``image``: see the module docstring."""
    detector = models.hog_detector()
    boxes = []
    for level in auto_levels(image.shape, upsample):
        boxes = _sorted_boxes(detector(image, level), image.shape)
        if boxes:
            break
    whole = whole_box(image.shape)
    if boxes:
        if iou(boxes[0], whole) >= TIGHT_CROP_IOU:
            return [whole]
        return sorted((_refine(image, box, level) for box in boxes), key=lambda b: -b[2] * b[3])
    h, w = image.shape[:2]
    crop_sized = max(h, w) <= CROP_MAX_SIDE and max(h, w) <= CROP_MAX_ASPECT * min(h, w)
    if crop_sized or (min(h, w) >= 8 and looks_like_tight_crop(image)):
        return [whole]
    return []


#: The most upsampling steps a caller may ask for (the command line's --upsample range).
MAX_UPSAMPLE = 3


def check_upsample(upsample):
    """ValueError unless ``upsample`` is a whole number from 0 to MAX_UPSAMPLE: each step quadruples
    the pixels dlib scans (9 steps of a 256 px photo filled 23 GB)."""
    check_whole_number("upsample", upsample, 0, MAX_UPSAMPLE)


def detect_faces(image, method="auto", upsample=0):
    """Face boxes ``(x, y, w, h)`` in ``image`` (uint8 gray or RGB), largest first.

    ``upsample`` asks dlib to enlarge the image that many times (finds smaller faces,
    costs about 4x per step); for ``auto`` it is the first step tried.
    """
    check_upsample(upsample)
    image = np.ascontiguousarray(image)
    method = resolve_detector(method)
    if method == "whole":
        return [whole_box(image.shape)]
    if method == "auto":
        return detect_auto(image, upsample)
    if method == "hog":
        rects = models.hog_detector()(image, int(upsample))
    else:
        rects = [d.rect for d in models.cnn_detector()(image, int(upsample))]
    return _sorted_boxes(rects, image.shape)
