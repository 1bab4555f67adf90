"""Specific exceptions of the pipeline.

Library code raises these; command-line entry points turn them into one-line messages
and non-zero exit codes. Every image problem is an ``ImageError`` with a short ``reason``
(recorded per image by ``features.extract``).
"""


class FacialExpressionError(Exception):
    """Base class of every error this project raises on purpose."""


class ImageError(FacialExpressionError):
    """An image file could not be turned into pixels."""

    reason = "unreadable"

    def __init__(self, path, detail=""):
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {self.describe()}" + (f" ({detail})" if detail else ""))

    def describe(self):
        return self.reason.replace("_", " ")


class ImageNotFoundError(ImageError, FileNotFoundError):
    reason = "missing"

    def describe(self):
        return "no such file"


class NotAFileError(ImageError):
    reason = "not_a_file"

    def describe(self):
        return "not a regular file (a directory?)"


class ImagePermissionError(ImageError, PermissionError):
    reason = "permission_denied"


class EmptyImageError(ImageError):
    reason = "empty_file"

    def describe(self):
        return "empty file (0 bytes)"


class NotAnImageError(ImageError):
    reason = "not_an_image"

    def describe(self):
        return "not an image file (unknown format)"


class CorruptImageError(ImageError):
    reason = "corrupt"

    def describe(self):
        return "corrupt or truncated image data"


class ImageTooLargeError(ImageError):
    reason = "too_large"

    def describe(self):
        return "image declares too many pixels (possible decompression bomb)"


class ImageTooSmallError(ImageError):
    reason = "too_small"

    def describe(self):
        return "image too small to hold a face"


class NoFaceError(FacialExpressionError):
    """No face was found where one was required."""

    reason = "no_face"


class DegenerateLandmarksError(FacialExpressionError):
    """Landmarks that cannot describe a face (collapsed, collinear or not finite)."""

    reason = "degenerate_landmarks"


class ModelFileError(FacialExpressionError):
    """A model file is missing, truncated, foreign or not loadable safely."""


class IncompatibleModelError(ModelFileError):
    """A model whose feature configuration this code cannot reproduce."""


class DatasetError(FacialExpressionError):
    """A dataset folder or file that does not have the expected layout."""


class OutputLockedError(FacialExpressionError):
    """Another process is writing the same output file."""


class AffectError(FacialExpressionError, ValueError):
    """Class probabilities that cannot be placed in valence-arousal space (unknown class, bad numbers)."""


class CatalogueError(FacialExpressionError):
    """A music catalogue file that is missing, too large, or lacks usable columns or rows."""


class RecommendationError(FacialExpressionError, ValueError):
    """A recommendation request that cannot be served (unknown mode, n < 1, a point off the scale)."""


class VideoError(FacialExpressionError):
    """A video file, camera or stream that cannot be opened or read (missing, not a video, truncated, unreachable)."""
