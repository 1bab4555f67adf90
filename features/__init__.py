"""Stage 2: what the face is doing, as numbers with names.

Geometry (scale-free distances, angles, ratios), part patches (HOG/LBP), the whole face,
and the 'pixelize' drawing. Pure functions; files and flags live in ``features.extract``.
"""

from .describe import DEFAULT_GROUPS, FEATURES_VERSION, GROUPS, FeatureConfig, describe_face
from .geometry import DESCRIPTIONS, NAMES as GEOMETRY_NAMES, geometric_features, normalise_points
from .pixelize import pixelize
from .table import FeatureTable, load_table

__all__ = ["DEFAULT_GROUPS", "FEATURES_VERSION", "GROUPS", "FeatureConfig", "describe_face", "DESCRIPTIONS",
           "GEOMETRY_NAMES", "geometric_features", "normalise_points", "pixelize", "FeatureTable", "load_table"]
