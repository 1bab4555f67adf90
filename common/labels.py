"""Label tables every stage shares: the canonical emotion classes, every dataset's names for
them, and the label schemes that regroup them (basic7, basic6, valence3); the apparent-gender
labels and the age groups of age and gender estimates (UTKFace).
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


#: FER+ (ferplus.csv) vote columns, in the file's order; the first eight are emotions.
FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                 "unknown", "NF")
#: FER+ emotion column -> canonical label.
FERPLUS_LABELS = {name: canonical_label(name) for name in FERPLUS_VOTES[:8]}


def ferplus_majority(votes):
    """FER+ majority label of one image's 10 vote counts (FERPLUS_VOTES order), or None when the
    winner is unknown or not-a-face, or when two columns tie for the most votes (the common
    majority protocol drops those images)."""
    votes = np.asarray(votes)
    best = int(np.argmax(votes))
    if votes[best] <= 0 or int(np.sum(votes == votes[best])) > 1 or best >= 8:
        return None
    return FERPLUS_LABELS[FERPLUS_VOTES[best]]


def ferplus_distribution(votes):
    """{canonical label: share of the emotion votes} of one image (unknown and NF left out)."""
    votes = np.asarray(votes, dtype=np.float64)[:8]
    total = votes.sum()
    return {FERPLUS_LABELS[n]: v / total for n, v in zip(FERPLUS_VOTES, votes) if v > 0} if total else {}


#: What a model learns from a feature table (``--target``): its class labels (emotions), the apparent
#: gender (labels female/male, UTKFace tables) or the age in years (the table's numeric target:
#: a regression).
TARGETS = ("label", "gender", "age")

#: Apparent binary gender as UTKFace labels it (file name field 2: 0 male, 1 female).
GENDERS = ("female", "male")
UTKFACE_GENDER_CODES = {"0": "male", "1": "female"}

#: Age groups in which age and gender figures are reported: (name, first year, last year).
AGE_GROUPS = (("0-12", 0, 12), ("13-19", 13, 19), ("20-39", 20, 39), ("40-59", 40, 59), ("60+", 60, float("inf")))
AGE_GROUP_NAMES = tuple(name for name, _, _ in AGE_GROUPS)


def age_group(ages):
    """The :data:`AGE_GROUPS` name of each age in years (a year is whole: 12.6 falls in 0-12);
    "" where the age is unknown (NaN)."""
    ages = np.asarray(ages, dtype=np.float64)
    out = np.full(ages.shape, "", dtype=object)
    years = np.floor(ages)
    for name, low, high in AGE_GROUPS:
        out[(years >= low) & (years <= high)] = name
    out[years < 0] = AGE_GROUP_NAMES[0]
    return out.astype(str)
