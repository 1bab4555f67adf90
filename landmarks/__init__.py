"""Stage 1: where is the face, and where are its 68 points.

Pure functions over numpy arrays; heavy dlib models load lazily, once per process.
Errors live in :mod:`common.errors`, label tables in :mod:`common.labels`.
"""

from .datasets import PRESETS, Sample, load_class_folders, load_dataset, load_fer2013_csv, load_fer2013_folders
from .detect import DETECTORS, detect_faces
from .io import read_image
from .parts import FACE_PARTS, PARTS
from .shape import MIRROR, Face, align_face, find_faces, predict_landmarks

__all__ = [
    "PRESETS", "Sample", "load_class_folders", "load_dataset", "load_fer2013_csv", "load_fer2013_folders",
    "DETECTORS", "detect_faces", "read_image", "MIRROR", "FACE_PARTS", "PARTS", "Face", "align_face", "find_faces",
    "predict_landmarks",
]
