"""Faces followed through a video: stable ids, few detector runs, no id swaps at cuts.

dlib's HOG detector costs about 25 ms on a 480x480 frame (100 ms with ``upsample=1``), four
times the rest of a face's analysis, so :class:`FaceTracker` runs it only now and then:

* **Detection** on the whole frame every ``detect_every`` seconds of video (five times as
  often while no face is followed), on the first frame, after a cut, and on the frame after
  a track was lost. Each detected face is matched
  to the track whose box it overlaps most (intersection over union >= ``MATCH_IOU``); an
  unmatched face starts a new track with a new id. Ids are never reused.
* **Carrying** between detections: a track's box on the next frame is placed from the 68
  landmarks of its last frame, keeping the offset and size the detector's box had relative
  to those landmarks at its last confirmation (the shape predictor was trained on detector
  boxes, so its input keeps their framing). :func:`classifiers.recognise` then describes the
  faces at those boxes without running the detector.
* **Quality check**: every ``check_every`` seconds, and on every frame after a failed check,
  the detector looks at a small crop around each carried box (the face scaled to about
  90 pixels: ~2 ms). A confirmation re-anchors the box; ``max_misses`` failed checks in a
  row (or a box that slid off the frame) end the face's presence: the track is *lost* and
  its rows stop. A lost track is remembered for ``keep_lost`` seconds: a face detected
  where it was (overlapping its box moved on at its last speed, or within ``LOST_DISTANCE``
  box widths of it or of the detector's last box) gets its id back, so a face keeps its id
  across short detector misses (a turned head, a hand in front).
* **Cuts**: :class:`CutDetector` compares each decoded frame's gray-level histogram with the
  previous frame's (Bhattacharyya distance), skipped frames included; a jump over
  ``CUT_THRESHOLD`` is a cut: every
  track ends there, lost ones included, and faces after it get new ids instead of someone
  else's. On the test clips the threshold sits between 0.07 (largest change between
  neighbouring frames within a shot) and 0.23 (smallest change at a cut).

Ids identify a face while it is followed, not a person: someone who leaves the picture for
longer than ``keep_lost`` or reappears after a cut gets a new id.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from classifiers import recognise
from landmarks.detect import detect_faces

#: Bhattacharyya distance between consecutive analysed frames' histograms that counts as a cut.
CUT_THRESHOLD = 0.15
#: Overlap (intersection over union) for a detection to continue a track.
MATCH_IOU = 0.3
#: With no face followed, the detector runs this many times as often (a face appearing is found
#: within ``detect_every / IDLE_DIVISOR`` seconds, yet a face-less stretch does not run it on every frame).
IDLE_DIVISOR = 5
#: A lost track takes back a face detected this close (centre distance in box widths) to where it was.
LOST_DISTANCE = 0.75
#: Two tracks overlapping more than this follow the same face: the younger one is dropped.
DUPLICATE_IOU = 0.5
#: A quality check's box overlapping the carried one less than this replaces it on the same frame.
REDESCRIBE_IOU = 0.6
#: Side in pixels the face is scaled to in the crop of a quality check (dlib's HOG window is 80).
CHECK_FACE_SIDE = 90
#: Margin around the box in a quality check's crop, as a fraction of the box side.
CHECK_MARGIN = 0.5
#: A quality check's face must be this close in size to the carried box (ratio of sides) to confirm it.
CHECK_SIZE_RATIO = 1.4


def iou(a, b):
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / float(aw * ah + bw * bh - inter)


class CutDetector:
    """``is_cut(frame)`` for every decoded frame in order (BGR or gray): True where the picture
    jumps (a cut). The readers of :mod:`facial_expressions.video_io` feed it every frame, also
    those that sampling skips, because the change between neighbouring frames separates cuts
    from motion far better than the change across a sampling step."""

    def __init__(self, threshold=CUT_THRESHOLD):
        self.threshold = threshold
        self._previous = None

    def is_cut(self, frame):
        step = max(1, min(frame.shape[:2]) // 120)   # every step-th pixel: the histogram barely changes
        small = np.ascontiguousarray(frame[::step, ::step])
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        hist = cv2.calcHist([small], [0], None, [32], [0, 256])
        cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
        cut = (self._previous is not None
               and cv2.compareHist(self._previous, hist, cv2.HISTCMP_BHATTACHARYYA) >= self.threshold)
        self._previous = hist
        return bool(cut)


def _frame_of(points):
    """(centre, scale) of 68 landmarks: their mean and root-mean-square distance from it."""
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(axis=0)
    return centre, float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean())) or 1.0


def _anchor(box, points):
    """The detector box relative to the landmarks: centre offset and size in landmark scales."""
    centre, scale = _frame_of(points)
    x, y, w, h = box
    return ((x + w / 2 - centre[0]) / scale, (y + h / 2 - centre[1]) / scale, w / scale, h / scale)


def _carried_box(points, anchor, size):
    """The box for the next frame: placed from the landmarks as the detector's box was at the last
    confirmation, with that box's size (landmarks on a half-hidden face shrink; a box sized from
    them would shrink further, frame after frame)."""
    centre, scale = _frame_of(points)
    dx, dy = anchor[:2]
    w, h = size
    return (int(round(centre[0] + dx * scale - w / 2)), int(round(centre[1] + dy * scale - h / 2)),
            int(round(w)), int(round(h)))


def _centre(box):
    return np.array([box[0] + box[2] / 2.0, box[1] + box[3] / 2.0])


def _visible_share(box, shape):
    x, y, w, h = box
    if w <= 1 or h <= 1:
        return 0.0
    iw = min(x + w, shape[1]) - max(x, 0)
    ih = min(y + h, shape[0]) - max(y, 0)
    return max(iw, 0) * max(ih, 0) / float(w * h)


def _clip(box, shape):
    x, y, w, h = box
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, shape[1]), min(y + h, shape[0])
    return (x0, y0, max(x1 - x0, 2), max(y1 - y0, 2))


@dataclass
class Track:
    """One face followed from frame to frame."""

    id: int
    box: tuple            # (x, y, w, h) the face was described at on its last frame
    points: np.ndarray    # its 68 landmarks there
    anchor: tuple         # detector box relative to the landmarks at the last confirmation
    confirmed: float      # video time of the last confirmation by the detector
    confirmed_box: tuple = None  # the detector's box at the last confirmation
    misses: int = 0       # failed checks in a row
    lost_at: float = None  # video time it was lost (None while followed)
    time: float = None    # video time of its last frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2), repr=False)  # landmarks, pixels/s
    next_box: tuple = field(default=None, repr=False)

    def follow(self, prediction, time):
        points = np.asarray(prediction.landmarks, dtype=np.float64)
        if self.time is not None and time > self.time:   # the landmarks' motion, not the box's re-anchoring
            moved = (points.mean(axis=0) - self.points.mean(axis=0)) / (time - self.time)
            self.velocity = 0.5 * self.velocity + 0.5 * moved
        self.box, self.time, self.points = prediction.box, time, points

    def confirm(self, box, prediction, time):
        """The detector found the face at ``box``: re-anchor the carried box there."""
        if self.box is not None and (self.lost_at is not None
                                     or np.hypot(*(_centre(box) - _centre(self.box))) > 0.25 * box[2]):
            self.velocity, self.time = np.zeros(2), None   # the carried box was off: so was its speed
        self.follow(prediction, time)
        self.anchor = _anchor(box, self.points)
        self.confirmed, self.confirmed_box, self.misses, self.lost_at = time, box, 0, None

    def predicted(self, box, time):
        """``box`` moved on by the track's velocity to ``time`` (at most half its width)."""
        shift = self.velocity * max(time - self.time, 0.0)
        limit = 0.5 * box[2]
        shift *= min(1.0, limit / max(float(np.hypot(*shift)), 1e-9))
        return (int(round(box[0] + shift[0])), int(round(box[1] + shift[1])), box[2], box[3])

    def matches(self, box, time):
        """Does a detected ``box`` continue this track? Overlap with where it should be now; a lost
        track also takes a face whose centre is within half a box width of that place."""
        expected = self.next_box if self.lost_at is None else self.predicted(self.box, time)
        overlap = iou(box, expected)
        if self.lost_at is not None and overlap < MATCH_IOU:
            # where it was carried last, or where the detector saw it last (before an occlusion dragged it)
            for place in (expected, self.confirmed_box):
                near = np.hypot(*(_centre(box) - _centre(place))) <= LOST_DISTANCE * place[2]
                if near and 0.67 <= box[2] / max(place[2], 1) <= 1.5:
                    return MATCH_IOU
        return overlap


class FaceTracker:
    """Faces of a video's frames, in order: ``update(gray, time)`` -> {face id: FacePrediction}.

    ``model``, ``detector``, ``upsample`` and ``max_faces`` are :func:`classifiers.recognise`'s.
    ``adjust(face_id)`` may return a function for recognise's ``adjust`` (per-person
    calibration) or None. ``age_gender`` and ``mirror`` are recognise's too (apparent age and
    gender on every prediction; each face read with its mirror image). Times are in seconds of
    video; see the module docstring for the other settings.
    """

    def __init__(self, model, *, detector=None, upsample=None, max_faces=None, detect_every=0.5, check_every=0.2,
                 max_misses=3, keep_lost=1.5, adjust=None, age_gender=False, mirror=True):
        self.model, self.detector, self.upsample, self.max_faces = model, detector, upsample, max_faces
        self.age_gender, self.mirror = age_gender, mirror
        self.detect_every, self.check_every = detect_every, check_every
        self.max_misses, self.keep_lost = max_misses, keep_lost
        self.adjust = adjust
        self.tracks, self.lost = [], []
        self._next_id = 1
        self._last_detection = None
        self._detect_next = True
        self.detections = self.checks = 0   # how often the detector ran (whole frame, crops)

    def cut(self):
        """The video cut to another shot: every track ends, no id carries over."""
        self.tracks, self.lost = [], []
        self._detect_next = True

    # ---- describing faces through the public API ----

    def _describe(self, gray, boxes, ids):
        """{id: FacePrediction} for faces described at ``boxes`` (one per id, same order)."""
        if not boxes:
            return {}
        if self.adjust is not None:
            out = {}
            for box, face_id in zip(boxes, ids):
                found = recognise(gray, model=self.model, boxes=[box], adjust=self.adjust(face_id),
                                  age_gender=self.age_gender, mirror=self.mirror)
                if found:
                    out[face_id] = found[0]
            return out
        found = recognise(gray, model=self.model, boxes=list(boxes), age_gender=self.age_gender, mirror=self.mirror)
        # faces with degenerate landmarks are left out: pair the rest with their boxes in order
        out, k = {}, 0
        for box, face_id in zip(boxes, ids):
            if k < len(found) and max(abs(a - b) for a, b in zip(found[k].box, box)) <= 2:
                out[face_id] = found[k]
                k += 1
        return out

    def _check(self, gray, box):
        """The detector's box of a face in a crop around ``box``, in frame coordinates, or None."""
        self.checks += 1
        x, y, w, h = box
        side = max(w, h)
        margin = int(round(CHECK_MARGIN * side))
        x0, y0 = max(x - margin, 0), max(y - margin, 0)
        x1, y1 = min(x + w + margin, gray.shape[1]), min(y + h + margin, gray.shape[0])
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        scale = CHECK_FACE_SIDE / float(side)
        crop = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale,
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        expected = ((x - x0) * scale, (y - y0) * scale, w * scale, h * scale)
        cx, cy = expected[0] + expected[2] / 2, expected[1] + expected[3] / 2
        best = max(detect_faces(crop, "hog", 0), key=lambda b: iou(b, expected), default=None)
        # the face is there if the detector's box overlaps the carried one, or holds its centre
        # (a box that drifted or shrank: the detector's box then corrects it)
        if best is None or (iou(best, expected) < MATCH_IOU
                            and not (best[0] <= cx <= best[0] + best[2] and best[1] <= cy <= best[1] + best[3])):
            return None
        if not 1 / CHECK_SIZE_RATIO <= best[2] / expected[2] <= CHECK_SIZE_RATIO:
            return None   # a face of another size: part of this one, or someone else
        bx, by, bw, bh = best
        return (int(round(bx / scale + x0)), int(round(by / scale + y0)), int(round(bw / scale)),
                int(round(bh / scale)))

    # ---- one frame ----

    def _new_track(self, box, prediction, time):
        track = Track(id=self._next_id, box=None, points=None, anchor=None, confirmed=time)
        self._next_id += 1
        track.confirm(box, prediction, time)
        self.tracks.append(track)
        return track

    def _lose(self, track, time):
        track.lost_at = time
        self.tracks.remove(track)
        self.lost.append(track)
        self._detect_next = True

    def update(self, gray, time):
        """Follow the faces into this frame (uint8 gray); returns {face id: FacePrediction}, ids ascending."""
        self.lost = [t for t in self.lost if time - t.lost_at <= self.keep_lost]
        for track in list(self.tracks):
            box = track.predicted(_carried_box(track.points, track.anchor, track.confirmed_box[2:]), time)
            if _visible_share(box, gray.shape) < 0.5:
                self._lose(track, time)
            else:
                track.next_box = _clip(box, gray.shape)
        every = self.detect_every if self.tracks else self.detect_every / IDLE_DIVISOR
        detect = self._detect_next or self._last_detection is None or time - self._last_detection >= every
        results = self._detect(gray, time) if detect else self._carry(gray, time)
        self._drop_duplicates(results)
        return {t.id: results[t.id] for t in sorted(self.tracks, key=lambda t: t.id) if t.id in results}

    def _detect(self, gray, time):
        self.detections += 1
        self._last_detection, self._detect_next = time, False
        # with a calibration the faces found are described again below (age and gender then too)
        found = recognise(gray, model=self.model, detector=self.detector, upsample=self.upsample,
                          max_faces=self.max_faces, age_gender=self.age_gender and self.adjust is None,
                          mirror=self.mirror and self.adjust is None)
        pairs = sorted(((t.matches(p.box, time), i, t) for i, p in enumerate(found) for t in self.tracks + self.lost),
                       key=lambda item: (-item[0], item[1], item[2].id))
        used_faces, used_tracks, results = set(), set(), {}
        for overlap, i, track in pairs:
            if overlap < MATCH_IOU:
                break
            if i in used_faces or track.id in used_tracks:
                continue
            used_faces.add(i)
            used_tracks.add(track.id)
            if track.lost_at is not None:
                self.lost.remove(track)
                self.tracks.append(track)
            track.confirm(found[i].box, found[i], time)
            results[track.id] = found[i]
        for i, prediction in enumerate(found):
            if i not in used_faces:
                track = self._new_track(prediction.box, prediction, time)
                results[track.id] = prediction
        if self.adjust is not None and results:   # describe again with each person's calibration
            ids = list(results)
            results = self._describe(gray, [results[i].box for i in ids], ids)
        missed = [t for t in self.tracks if t.id not in used_tracks and t.id not in results]
        results.update(self._describe(gray, [t.next_box for t in missed], [t.id for t in missed]))
        for track in missed:
            self._missed(track, results, time)
        return results

    def _carry(self, gray, time):
        results = self._describe(gray, [t.next_box for t in self.tracks], [t.id for t in self.tracks])
        for track in list(self.tracks):
            if track.id not in results:
                self._lose(track, time)
                continue
            track.follow(results[track.id], time)
            if track.misses or time - track.confirmed >= self.check_every:
                box = self._check(gray, track.box)
                if box is None:
                    self._missed(track, results, time)
                    continue
                if iou(box, track.box) < REDESCRIBE_IOU:   # the carried box had drifted: describe it again
                    results.update(self._describe(gray, [box], [track.id]))
                track.confirm(box, results[track.id], time)
        return results

    def _missed(self, track, results, time):
        track.misses += 1
        if track.id in results:
            track.follow(results[track.id], time)
        if track.misses >= self.max_misses or track.id not in results:
            results.pop(track.id, None)
            self._lose(track, time)

    def _drop_duplicates(self, results):
        """Two tracks that drifted onto the same face: the younger one ends."""
        for older in sorted(self.tracks, key=lambda t: t.id):
            for younger in [t for t in self.tracks if t.id > older.id]:
                if older in self.tracks and iou(older.box, younger.box) > DUPLICATE_IOU:
                    self.tracks.remove(younger)
                    results.pop(younger.id, None)
