"""Stage 1: where is the face, and where are its 68 points.

Pure functions over numpy arrays; heavy dlib models load lazily, once per process.
"""

from .datasets import (EMOTIONS, LABEL_ALIASES, PRESETS, Sample, canonical_label, load_class_folders,
                       load_dataset, load_fer2013_csv, load_fer2013_folders)
from .detect import DETECTORS, detect_faces
from .errors import (CorruptImageError, DatasetError, DegenerateLandmarksError, EmptyImageError,
                     FacialExpressionError, ImageError, ImageNotFoundError, ImageTooLargeError,
                     ImageTooSmallError, IncompatibleModelError, ModelFileError, NoFaceError,
                     NotAFileError, NotAnImageError)
from .io import atomic_path, read_image
from .shape import MIRROR, PARTS, Face, align_face, find_faces, predict_landmarks

__all__ = [
    "EMOTIONS", "LABEL_ALIASES", "PRESETS", "Sample", "canonical_label", "load_class_folders",
    "load_dataset", "load_fer2013_csv", "load_fer2013_folders", "DETECTORS", "detect_faces",
    "CorruptImageError", "DatasetError", "DegenerateLandmarksError", "EmptyImageError",
    "FacialExpressionError", "ImageError", "ImageNotFoundError", "ImageTooLargeError",
    "ImageTooSmallError", "IncompatibleModelError", "ModelFileError", "NoFaceError", "NotAFileError",
    "NotAnImageError", "atomic_path", "read_image", "MIRROR", "PARTS", "Face", "align_face",
    "find_faces", "predict_landmarks",
]
