"""Where a face sits in valence-arousal space (Russell's circumplex model of affect).

Russell (1980, "A circumplex model of affect", Journal of Personality and Social Psychology
39(6), 1161-1178) showed that emotion words arrange themselves in a circle around two bipolar
axes: valence (unpleasant -> pleasant) and arousal (calm/sleepy -> aroused). A classifier
gives a probability per emotion class; this module turns them into one point of that plane,
the probability-weighted mean of the classes' points, so that a face that is 60% sad and
40% neutral lands between the two instead of jumping from one class to the other.

Where the numbers come from
---------------------------
Each class's point is the mean pleasure and arousal rating of the matching emotion term in

    Russell, J. A. & Mehrabian, A. (1977). Evidence for a three-factor theory of emotions.
    Journal of Research in Personality, 11(3), 273-294.

in which subjects rated 151 emotion terms on semantic-differential scales of pleasure,
arousal and dominance; each term's mean score is given on a scale from -1 to +1 (pleasure
is the valence axis; dominance, the third factor, is not used here). The terms, as the
values are commonly reproduced (e.g. anger and fear in Gebhard 2005, "ALMA - a layered model
of affect", AAMAS), with (pleasure, arousal):

    angry     (-0.51, +0.59)      happy     (+0.81, +0.51)
    disgust   (-0.60, +0.35)      sad       (-0.63, -0.27)
    fearful   (-0.64, +0.60)      surprised (+0.40, +0.67)

Two classes are not rated terms, and are placed by this project:

* ``neutral`` is the origin (0, 0): the midpoint of both scales, by definition.
* ``contempt`` (CK+ only) has no rating among the values above that we could check. It takes
  the point of ``disgust``, its closest neighbour among the basic emotions (both are emotions
  of rejection). This is a placement by this project, not a measurement.

Three-class valence models
--------------------------
A model trained with the ``valence3`` label scheme (:data:`common.labels.SCHEMES`) predicts
``negative``, ``neutral`` and ``positive``. Such labels say nothing about arousal, so they
get arousal 0 and, as valence, the mean valence of the classes the scheme groups under them
(negative: angry, disgust, fear, sad -> -0.595; positive: happy, surprise -> +0.605). A
three-class model therefore moves a face along the valence axis only.

Scale: both axes of every point and of :func:`valence_arousal` lie in -1..+1.
"""

import math
from collections.abc import Mapping

import numpy as np

from common.errors import AffectError
from common.labels import LABEL_ALIASES, SCHEMES

#: Emotion class -> (valence, arousal), Russell & Mehrabian (1977) ratings on -1..+1 (see above).
CIRCUMPLEX = {
    "angry": (-0.51, 0.59),
    "disgust": (-0.60, 0.35),
    "fear": (-0.64, 0.60),
    "happy": (0.81, 0.51),
    "sad": (-0.63, -0.27),
    "surprise": (0.40, 0.67),
    "neutral": (0.0, 0.0),
}
CIRCUMPLEX["contempt"] = CIRCUMPLEX["disgust"]  # placed, not rated: see the module docstring


def _valence_classes():
    """negative/neutral/positive -> (mean valence of the classes the valence3 scheme groups, 0)."""
    members = {}
    for emotion, group in SCHEMES["valence3"].items():
        members.setdefault(group, []).append(CIRCUMPLEX[emotion][0])
    return {group: (round(float(np.mean(values)), 4), 0.0) for group, values in members.items()}


#: Every label this module places: the emotion classes and the valence3 scheme's labels.
POINTS = {**_valence_classes(), **CIRCUMPLEX}


def point_of(label):
    """(valence, arousal) of one class label (canonical name, a dataset alias, or a valence3 label)."""
    key = str(label).strip().lower()
    key = key if key in POINTS else LABEL_ALIASES.get(key, key)
    if key not in POINTS:
        raise AffectError(f"no valence-arousal point for class {label!r}; known: {', '.join(sorted(POINTS))}")
    return POINTS[key]


def valence_arousal(probabilities: Mapping[str, float]) -> tuple[float, float]:
    """The probability-weighted mean (valence, arousal) of the classes in ``probabilities``.

    ``probabilities`` maps class label -> probability (e.g. ``dict(zip(model.labels, proba))``).
    Labels are canonical emotion names, dataset aliases (``anger``, ``happiness``, ...) or the
    valence3 labels; an unknown label raises :class:`AffectError`, and so do negative or
    non-finite probabilities or a total of zero. The probabilities are renormalised to sum to
    1, so a model over a subset of the classes, or rounded numbers, still give a proper mean.
    """
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise AffectError("valence_arousal needs a non-empty mapping of class label -> probability")
    total, valence, arousal = 0.0, 0.0, 0.0
    for label, p in probabilities.items():
        try:
            p = float(p)
        except (TypeError, ValueError):
            raise AffectError(f"probability of {label!r} is not a number: {p!r}") from None
        if not math.isfinite(p) or p < 0:
            raise AffectError(f"probability of {label!r} must be a finite number >= 0, not {p!r}")
        v, a = point_of(label)
        total += p
        valence += p * v
        arousal += p * a
    if total <= 0:
        raise AffectError("the probabilities sum to 0: no class to place the face at")
    return valence / total, arousal / total
