"""A plausible range around an age estimate, from how far the model's estimates fall from the truth.

The age model file records, per age group of the *estimate* (common.labels.AGE_GROUPS), the
10th and 90th percentiles of (true age - estimate) over out-of-fold estimates of its training
faces (each face estimated by a model fitted without it). A new face's range is its estimate
plus those two offsets, so about 80% of faces like the training faces have their labelled age
inside it; the errors grow with age, and so do the ranges. ``train --holdout`` measures the
coverage on faces the model never saw.
"""

import numpy as np

from common.labels import AGE_GROUP_NAMES, age_group

#: Share of faces whose labelled age should fall inside the range.
COVERAGE = 0.8
#: A group of estimates with fewer out-of-fold residuals than this borrows the offsets of all of them.
MIN_RESIDUALS = 30


def range_table(estimates, ages, coverage=COVERAGE):
    """{"coverage", "offsets": {age group: [low, high]}, "n": {age group: residuals}}: the offsets
    (years) that hold ``coverage`` of (age - estimate) in each group of estimates."""
    estimates, ages = np.asarray(estimates, dtype=np.float64), np.asarray(ages, dtype=np.float64)
    residual = ages - estimates
    tails = [100 * (1 - coverage) / 2, 100 * (1 + coverage) / 2]
    overall = np.percentile(residual, tails)
    groups = age_group(estimates)
    offsets, counts = {}, {}
    for name in AGE_GROUP_NAMES:
        rows = groups == name
        counts[name] = int(rows.sum())
        low, high = np.percentile(residual[rows], tails) if counts[name] >= MIN_RESIDUALS else overall
        offsets[name] = [round(float(low), 2), round(float(high), 2)]
    return {"coverage": coverage, "offsets": offsets, "n": counts}


def age_ranges(estimates, table):
    """(n, 2) plausible (low, high) ages around ``estimates`` from a :func:`range_table`; never below 0
    and always holding the estimate."""
    estimates = np.atleast_1d(np.asarray(estimates, dtype=np.float64))
    offsets = np.array([table["offsets"][g] for g in age_group(estimates)], dtype=np.float64).reshape(-1, 2)
    low = np.clip(estimates + np.minimum(offsets[:, 0], 0.0), 0.0, None)
    high = estimates + np.maximum(offsets[:, 1], 0.0)
    return np.column_stack([low, high])


def coverage(estimates, ages, table):
    """Share of ``ages`` inside the ranges :func:`age_ranges` gives their ``estimates``."""
    ranges = age_ranges(estimates, table)
    ages = np.asarray(ages, dtype=np.float64)
    return float(np.mean((ages >= ranges[:, 0]) & (ages <= ranges[:, 1])))
