"""Action-unit-like features: scale-free facial actions measured against a neutral face.

Each measure is named after the FACS action unit it approximates (AU1 inner brow raiser,
AU12 lip corner puller, ...). It is computed on landmarks normalised by
:func:`features.geometry.normalise_points` (eyes level, inter-ocular distance 1), mostly from
the geometry features' own measures (averaged over both sides of the face), and
reported as the difference from the same measure on a neutral reference shape, the mean
normalised neutral face learned from the data (``neutral_reference.json``, rebuilt with
``python -m features.reference data/fer2013.npz``). It is learned from FER-2013's Training
part only: that part is never a test set, whereas any JAFFE or CK+48 face is a test subject in
some fold of their subject-independent benchmarks. Positive values mean
"more of this action than a neutral face", in inter-ocular distances x 10 (or ratios x 10),
so 1.0 is a tenth of the distance between the eyes. Opposed actions (lid raise / tighten,
lip-corner pull / depress) are split into two rectified features.
"""

import dataclasses
import functools
import json
import os

import numpy as np

from common.errors import DatasetError

from . import geometry
from .columns import Column

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_FILE = os.path.join(HERE, "neutral_reference.json")
SCALE = 10.0


def _from_geometry(*names):
    """(face part, function) of a raw measure that is a geometry measure, or the mean of the same
    measure on both sides of the face."""
    at = [geometry.NAMES.index(name) for name in names]
    return geometry.FEATURES[names[0]][1], lambda g, p: sum(g[i] for i in at) / len(at)


# raw measure name -> (face part, function of (geometry.measures, normalised points as (x, y) pairs));
# bigger = more of the action
RAW = {
    "inner_brow": _from_geometry("left_inner_brow_raise", "right_inner_brow_raise"),
    "outer_brow": _from_geometry("left_outer_brow_raise", "right_outer_brow_raise"),
    "brow_height": _from_geometry("left_brow_raise", "right_brow_raise"),
    "brow_gap": _from_geometry("brow_gap"),
    "eye_openness": _from_geometry("left_eye_openness", "right_eye_openness"),
    "nose_to_lip": _from_geometry("upper_lip_to_nose"),
    "nose_length": _from_geometry("nose_length"),
    "corner_height": _from_geometry("left_lip_corner_raise", "right_lip_corner_raise"),
    "mouth_width": _from_geometry("mouth_width"),
    # geometry measures the lips' outer height and the gap between them, not their thickness
    "lip_thickness": ("mouth", lambda g, p: geometry.distance(p, 51, 62) + geometry.distance(p, 66, 57)),
    "lips_gap": _from_geometry("mouth_opening"),
    "chin_drop": _from_geometry("jaw_drop"),
    "lip_to_chin": _from_geometry("lower_lip_to_chin"),
}

# action-unit feature -> (FACS name, words for explanations, raw measure, sign, rectified)
ACTION_UNITS = {
    "au01_inner_brow_raise": ("AU1 inner brow raiser", "inner brows raised", "inner_brow", +1, False),
    "au02_outer_brow_raise": ("AU2 outer brow raiser", "outer brows raised", "outer_brow", +1, False),
    "au04_brow_lowerer": ("AU4 brow lowerer", "brows lowered", "brow_height", -1, False),
    "au04_brows_drawn_together": ("AU4 brow lowerer (knit)", "brows drawn together", "brow_gap", -1, False),
    "au05_upper_lid_raise": ("AU5 upper lid raiser", "eyes widened", "eye_openness", +1, True),
    "au07_lid_tighten": ("AU7 lid tightener", "eyes narrowed", "eye_openness", -1, True),
    "au09_nose_wrinkle": ("AU9 nose wrinkler", "nose wrinkled (shortened)", "nose_length", -1, False),
    "au10_upper_lip_raise": ("AU10 upper lip raiser", "upper lip raised", "nose_to_lip", -1, False),
    "au12_lip_corner_pull": ("AU12 lip corner puller", "lip corners pulled up", "corner_height", +1, True),
    "au15_lip_corner_depress": ("AU15 lip corner depressor", "lip corners pulled down", "corner_height", -1, True),
    "au20_lip_stretch": ("AU20 lip stretcher", "lips stretched wide", "mouth_width", +1, False),
    "au23_lip_tighten": ("AU23/24 lip tightener/pressor", "lips pressed thin", "lip_thickness", -1, False),
    "au25_lips_part": ("AU25 lips part", "lips parted", "lips_gap", +1, False),
    "au26_jaw_drop": ("AU26 jaw drop", "jaw dropped", "chin_drop", +1, False),
    "au17_chin_raise": ("AU17 chin raiser", "chin raised", "lip_to_chin", -1, False),
}
NAMES = tuple(ACTION_UNITS)


@functools.lru_cache(maxsize=None)
def columns():
    """The action_units group's columns: each action is a readable unit of its own (its words), in the
    face part of the measure it moves."""
    return tuple(Column(name, words, RAW[measure][0], single=True)
                 for name, (_, words, measure, _, _) in ACTION_UNITS.items())


def raw_measures(p, measured=None):
    """The RAW measures of normalised points (array or list of (x, y)); ``measured``: their
    geometry.measures, if already taken."""
    pts = p if isinstance(p, list) else np.asarray(p, dtype=np.float64).tolist()
    measured = geometry.measures(pts) if measured is None else measured
    return np.array([fn(measured, pts) for _, fn in RAW.values()], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def neutral_reference():
    """The raw measures of the neutral reference shape (from neutral_reference.json)."""
    with open(REFERENCE_FILE) as fh:
        data = json.load(fh)
    points = np.asarray(data["points"], dtype=np.float64).reshape(68, 2)
    return raw_measures(points)


#: (index of its raw measure in RAW, sign, rectified) of each action unit, in NAMES order
_ACTIONS = tuple((list(RAW).index(measure), sign, rectified)
                 for _, _, measure, sign, rectified in ACTION_UNITS.values())


def action_units_of_normalised(p, measured=None, reference=None):
    """Action-unit vector (float32, :data:`NAMES` order) of normalised points (``measured``: their
    geometry.measures, if already taken)."""
    # Python floats: the same double arithmetic as on numpy scalars, several times faster
    raw = raw_measures(p, measured).tolist()
    ref = (neutral_reference() if reference is None else np.asarray(reference, dtype=np.float64)).tolist()
    out = []
    for i, sign, rectified in _ACTIONS:
        delta = sign * (raw[i] - ref[i]) * SCALE
        out.append(max(delta, 0.0) if rectified else delta)
    return np.array(out, dtype=np.float32)


def learn_reference(tables):
    """Mean normalised neutral shape of the ``neutral`` rows of feature tables with a ``landmarks`` group.

    Only original faces of a table's Training part count (tables without splits: every original
    face); mirrored copies and test parts never do.
    """
    shapes = []
    for table in tables:
        if "landmarks" not in table.groups:
            raise DatasetError(f"{table.dataset or 'table'}: no landmarks columns to learn a neutral shape from")
        rows = table.ok & (table.labels == "neutral") & ~table.augmented
        if np.any(table.splits != ""):
            rows &= table.splits == "Training"  # never learn from a test part
        shapes.append(table.X[rows][:, table.groups["landmarks"]])
    shapes = np.concatenate(shapes)
    if len(shapes) == 0:
        names = ", ".join(t.dataset or "table" for t in tables)
        raise DatasetError(f"no neutral training faces to learn a neutral shape from in: {names}")
    return shapes.mean(axis=0).reshape(68, 2), len(shapes)


def with_reference(table, points):
    """A copy of ``table`` whose action units are measured against the neutral shape ``points``.

    The table's own action units were measured against the shipped reference when it was
    extracted; this re-measures them from its ``landmarks`` columns (the normalised points), e.g.
    against a reference learned only from the training datasets of a cross-dataset run.
    """
    missing = [g for g in ("landmarks", "action_units") if g not in table.groups]
    if missing:
        raise DatasetError(f"{table.dataset or 'table'}: no {' or '.join(missing)} columns to re-measure "
                           "action units from")
    reference = raw_measures(np.asarray(points, dtype=np.float64).reshape(68, 2))
    X = table.X.copy()
    rows = np.flatnonzero(table.ok)
    if rows.size:
        X[rows, table.groups["action_units"]] = [action_units_of_normalised(p.reshape(68, 2), reference=reference)
                                                   for p in X[rows][:, table.groups["landmarks"]]]
    return dataclasses.replace(table, X=X)

