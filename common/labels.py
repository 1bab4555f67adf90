"""Label tables every stage shares: the canonical emotion classes, every dataset's names for
them, and the label schemes that regroup them (basic7, basic6, valence3).
"""

import numpy as np

from .errors import DatasetError

#: The canonical emotion labels (the six basic emotions, neutral, and CK+'s contempt).
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")

#: Every dataset's class name -> canonical label. The one place names are reconciled.
LABEL_ALIASES = {
    "anger": "angry", "angry": "angry", "an": "angry",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fe": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "ha": "happy",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
    "neutral": "neutral", "ne": "neutral",
    "contempt": "contempt", "co": "contempt",
}


def canonical_label(name):
    """Canonical label of a dataset class name; raises DatasetError for an unknown one."""
    key = str(name).strip().lower()
    if key not in LABEL_ALIASES:
        raise DatasetError(f"unknown class name {name!r}; known: {sorted(set(LABEL_ALIASES.values()))}")
    return LABEL_ALIASES[key]


#: Label schemes: name -> {canonical label: label in the scheme}; labels not listed are dropped.
SCHEMES = {
    "basic7": {c: c for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")},
    "basic6": {c: c for c in ("angry", "disgust", "fear", "happy", "sad", "surprise")},
    "valence3": {"angry": "negative", "disgust": "negative", "fear": "negative", "sad": "negative",
                 "neutral": "neutral", "happy": "positive", "surprise": "positive"},
}


def apply_scheme(labels, scheme):
    """Canonical labels -> (labels in ``scheme``, mask of the rows the scheme keeps)."""
    if scheme in (None, "all"):
        return np.asarray(labels), np.ones(len(labels), dtype=bool)
    if scheme not in SCHEMES:
        raise DatasetError(f"unknown label scheme {scheme!r}; choose from all, {', '.join(SCHEMES)}")
    mapping = SCHEMES[scheme]
    keep = np.isin(labels, list(mapping))
    return np.array([mapping.get(str(v), "") for v in labels]), keep
