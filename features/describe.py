"""One face -> one named feature vector, under a FeatureConfig that a model can carry and check.

Each feature group (:data:`GROUPS`) pairs how it describes a face with the declaration of its
columns (:class:`features.columns.Column`: name, readable unit, face part).
"""

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from common.errors import DegenerateLandmarksError, IncompatibleModelError
from landmarks.detect import check_upsample
from landmarks.shape import ALIGN_SIZE, UPSCALE_TO, find_faces, mirrored

from . import action_units, gabor, geometry, patches

#: Bump when a feature's definition changes: models trained on other versions are refused.
FEATURES_VERSION = 1


def _normalised(face):
    """The face's normalised points, computed once per face (several groups use them)."""
    cached = getattr(face, "_normalised", None)
    if cached is None:
        # find_faces only returns faces whose points passed landmarks.shape.check_points
        cached = geometry.normalise_points(face.points, checked=getattr(face, "checked", False))
        face._normalised = cached
    return cached


def _measured(face):
    """(normalised points as (x, y) pairs, their geometry.measures), taken once per face: the
    geometry and action-unit groups both read them."""
    cached = getattr(face, "_measured", None)
    if cached is None:
        points = _normalised(face).tolist()
        cached = face._measured = (points, geometry.measures(points))
    return cached


@dataclass(frozen=True)
class FeatureGroup:
    """A feature group: how it describes a face, and what each of its columns is."""

    name: str
    describe: Callable  # landmarks.Face -> 1-D float vector
    columns: Callable   # () -> tuple of features.columns.Column, in the order ``describe`` writes the values
    #: reads the aligned face's pixels: its columns are declared for faces aligned at ALIGN_SIZE only
    #: (patch and cell sizes scale with the face, and so would the number of values)
    pixels: bool = False


#: group name -> FeatureGroup
GROUPS = {group.name: group for group in (
    FeatureGroup("geometry", lambda f: geometry.features_of_measures(_measured(f)[1]), geometry.columns),
    FeatureGroup("landmarks", lambda f: geometry.landmarks_of_normalised(_normalised(f)), geometry.landmark_columns),
    FeatureGroup("action_units", lambda f: action_units.action_units_of_normalised(*_measured(f)),
                 action_units.columns),
    FeatureGroup("parts_hog", lambda f: patches.part_hog(f.aligned, f.aligned_points), patches.part_hog_columns,
                 pixels=True),
    FeatureGroup("parts_lbp", lambda f: patches.part_lbp(f.aligned, f.aligned_points), patches.part_lbp_columns,
                 pixels=True),
    FeatureGroup("face_hog", lambda f: patches.face_hog(f.aligned), patches.face_hog_columns, pixels=True),
    FeatureGroup("gabor", lambda f: gabor.gabor_jets(f.aligned, f.aligned_points), gabor.gabor_columns,
                 pixels=True),
    FeatureGroup("face_lbp", lambda f: patches.face_lbp(f.aligned), patches.face_lbp_columns, pixels=True),
)}
#: LBP is opt-in (--groups): 0.3 ms per face for a gain within noise. Gabor jets (0.4 ms per
#: face) are in: they gain 1-4 points on CK+48 and JAFFE (BENCHMARKS.md).
DEFAULT_GROUPS = ("geometry", "landmarks", "action_units", "parts_hog", "face_hog", "gabor")
#: The groups of an age-and-gender table (UTKFace): the default ones and the whole face's skin
#: texture (face_lbp), which lowers the age error by about a quarter of a year (BENCHMARKS.md, issue 22).
AGE_GENDER_GROUPS = DEFAULT_GROUPS + ("face_lbp",)


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides how an image becomes a feature vector."""

    detector: str = "auto"
    upsample: int = 0
    upscale_to: int = UPSCALE_TO
    align_size: int = ALIGN_SIZE
    groups: tuple = field(default=DEFAULT_GROUPS)
    version: int = FEATURES_VERSION

    def __post_init__(self):
        check_upsample(self.upsample)   # a model file's setting too: 9 steps would fill gigabytes
        unknown = set(self.groups) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; known: {list(GROUPS)}")
        object.__setattr__(self, "groups", tuple(self.groups))

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        data = dict(data)
        version = data.get("version")
        if version != FEATURES_VERSION:
            raise IncompatibleModelError(f"features were made by feature version {repr(version)[:40]}, this code "
                                         f"makes version {FEATURES_VERSION}")
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise IncompatibleModelError(f"unknown feature settings {repr(sorted(extra))[:100]}")
        try:
            return cls(**{k: tuple(v) if k == "groups" else v for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise IncompatibleModelError(f"feature configuration not reproducible: {repr(str(exc))[1:-1][:150]}") \
                from None

    def unsupported(self):
        """Why describe_face cannot write the declared columns under this configuration, or None."""
        pixels = [g for g in self.groups if GROUPS[g].pixels]
        if pixels and self.align_size != ALIGN_SIZE:
            return (f"the feature groups {pixels} are defined for faces aligned at {ALIGN_SIZE} px, "
                    f"not {self.align_size!r}")
        return None

    def declared_columns(self):
        """Every column's declaration (features.columns.Column), in the order describe_face writes them."""
        return [column for group in self.groups for column in GROUPS[group].columns()]

    def columns(self):
        """(column names, {group: slice}) in the order describe_face writes them."""
        names, slices, start = [], {}, 0
        for group in self.groups:
            declared = GROUPS[group].columns()
            names.extend(column.name for column in declared)
            slices[group] = slice(start, start + len(declared))
            start += len(declared)
        return names, slices


def describe_face(face, config):
    """float32 vector of ``config.groups`` for one landmarks.Face (raises DegenerateLandmarksError)."""
    return np.concatenate([GROUPS[g].describe(face) for g in config.groups]).astype(np.float32)


def mirror_averaged(faces, X, config):
    """The rows ``X`` of ``faces`` (described under ``config``), each averaged with the row of its
    face's mirror image (:func:`landmarks.shape.mirrored`: the aligned crop flipped, no second
    shape predictor). A face and its mirrored photo get the same row up to the landmarks'
    small differences. For a linear model (scaling, a column filter, a logistic regression),
    predicting on the mean row is averaging the two views' class scores, and its contributions
    are the two views' mean contributions; a sided column (``left_...``) then holds the mean of
    the face's left side and its mirror's, i.e. of both sides."""
    if not len(faces):
        return X
    mirrored_rows = np.vstack([describe_face(mirrored(face), config) for face in faces])
    return (X + mirrored_rows) / np.float32(2)


def describe_image(image, config, detector=None, upsample=None, max_faces=None, boxes=None, symmetric=False):
    """The one image -> features step: find, align and describe the faces of one image.

    ``image`` is a uint8 array (gray or RGB). ``detector`` and ``upsample`` override the
    configuration's. Returns ``(faces, X, found)``: the usable faces (largest first, at most
    ``max_faces`` of the largest are tried), their float32 feature rows (one per face, in
    ``config.columns()`` order) and how many faces the detector found (``boxes``: describe the
    faces at these (x, y, w, h) boxes instead of detecting them; ``symmetric``: landmarks read from
    the image and its mirror image, :func:`landmarks.shape.predict_landmarks`). A face whose
    landmarks are degenerate is left out, so ``len(faces)`` can be below ``found``.
    Extraction, evaluation and ``classifiers.api`` all describe faces through here.
    """
    upsample = config.upsample if upsample is None else upsample
    check_upsample(upsample)   # also where boxes are given and nothing is detected
    faces = find_faces(image, detector or config.detector, upsample,
                       config.upscale_to, config.align_size, boxes=boxes, symmetric=symmetric)
    found = len(faces)
    kept, rows = [], []
    for face in faces[:max_faces]:
        try:
            vector = describe_face(face, config)
        except DegenerateLandmarksError:
            continue
        if np.all(np.isfinite(vector)):
            kept.append(face)
            rows.append(vector)
    X = np.vstack(rows) if rows else np.zeros((0, len(config.columns()[0])), dtype=np.float32)
    return kept, X, found
