"""Feature tables as training data: ok rows only, several tables joined, subjects as CV groups."""

import collections
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from features.table import FeatureTable, load_table
from common.errors import DatasetError
from common.labels import AGE_GROUP_NAMES, GENDERS, TARGETS, age_group, apply_scheme


@dataclass
class TrainingData:
    X: np.ndarray            # float32 (n, d), ok rows only
    y: np.ndarray            # str (n,) canonical labels; float (n,) years for the target "age"
    subjects: np.ndarray     # str (n,), "" where unknown (prefixed by dataset when several tables)
    splits: np.ndarray       # str (n,)
    datasets: np.ndarray     # str (n,) dataset name of each row
    groups: dict             # feature group -> slice
    columns: np.ndarray
    config: dict             # FeatureConfig dict shared by every table
    excluded: dict = field(default_factory=dict)   # status -> rows left out (status != ok)
    dropped_labels: dict = field(default_factory=dict)  # label -> rows left out by a label filter
    sources: np.ndarray = None    # str (n,) image path or csv#row ("#flip" appended for mirrored copies)
    augmented: np.ndarray = None  # bool (n,) mirrored copies (training only, never tested)
    ages: np.ndarray = None       # float (n,) age in years where the table has it (UTKFace), else NaN
    target: str = "label"         # what y is (common.labels.TARGETS): class labels, gender, or age in years
    weights: np.ndarray = None    # float (n,) sample weights for fitting (None: every row weighs 1)

    def __post_init__(self):
        if self.sources is None:
            self.sources = np.array([f"#row{i}" for i in range(len(self.y))])
        if self.augmented is None:
            self.augmented = np.zeros(len(self.y), dtype=bool)
        if self.ages is None:
            self.ages = np.full(len(self.y), np.nan)

    def __len__(self):
        return len(self.y)

    @property
    def regression(self):
        """True when y is a number to estimate (age), False when it holds class labels."""
        return self.target == "age"

    def age_groups(self):
        """str (n,): the age group (common.labels.AGE_GROUPS) of each row, "" where the age is unknown."""
        return age_group(self.ages)

    @property
    def subjects_known(self):
        return len(self.y) > 0 and bool(np.all(self.subjects != ""))

    def cv_groups(self):
        """Group id per row for grouped CV: the subject, or else the source image (so a mirrored
        copy always falls in the same fold as its original)."""
        return np.array([s if s else self.original_source(i) for i, s in enumerate(self.subjects)])

    def original_source(self, i):
        source = str(self.sources[i])
        return source[:-len("#flip")] if source.endswith("#flip") else source

    def class_counts(self):
        """{class: rows}; for the target age, {age group: rows} in the groups' order."""
        if self.regression:
            counts = collections.Counter(self.age_groups().tolist())
            return {g: counts[g] for g in AGE_GROUP_NAMES if counts[g]}
        return dict(sorted(collections.Counter(self.y.tolist()).items()))

    def select(self, rows):
        return TrainingData(self.X[rows], self.y[rows], self.subjects[rows], self.splits[rows], self.datasets[rows],
                            self.groups, self.columns, self.config, dict(self.excluded), dict(self.dropped_labels),
                            self.sources[rows], self.augmented[rows], self.ages[rows], self.target,
                            None if self.weights is None else self.weights[rows])

    def fit_params(self, rows=None, step="model"):
        """``fit`` keyword arguments of a Pipeline whose last step is ``step``: its sample weights."""
        if self.weights is None:
            return {}
        return {f"{step}__sample_weight": self.weights if rows is None else self.weights[rows]}


def centre_by_subject(data):
    """Per-person calibration: every row minus the mean of its subject's rows.

    Mirrored copies are centred on the mean of the subject's mirrored copies. No label is
    used, but the faces of a held-out subject set that subject's baseline, so a figure under
    this calibration is transductive: it assumes several faces of each person, showing a mix
    of expressions, are available at prediction time. Raises DatasetError without subjects.
    """
    if not data.subjects_known:
        raise DatasetError("per-subject calibration needs a subject for every row (this table has none)")
    X = data.X.copy()
    keys = np.char.add(data.subjects.astype(str), np.where(data.augmented, "#flip", ""))
    for key in np.unique(keys):
        rows = keys == key
        X[rows] -= X[rows].mean(axis=0)
    return dataclasses.replace(data, X=X)


def _same_layout(a, b):
    return (a.config == b.config and len(a.columns) == len(b.columns) and bool(np.all(a.columns == b.columns))
            and {k: (s.start, s.stop) for k, s in a.groups.items()} == {k: (s.start, s.stop) for k, s in b.groups.items()})


def _non_finite_rows(X, rows, chunk=4096):
    """How many of the ``rows`` (mask) of ``X`` hold NaN or infinity, a few thousand rows at a time."""
    found = 0
    for start in range(0, len(X), chunk):
        part = rows[start:start + chunk]
        if part.any():
            found += int((~np.isfinite(X[start:start + chunk][part])).any(axis=1).sum())
    return found


#: dropped_labels key of FER-2013 rows that FER+ drops (no row, or no majority emotion).
NO_FERPLUS_MAJORITY = "no FER+ majority"


def ferplus_relabel(table, votes, weights=False):
    """(labels, splits, keep, row weights) of ``table`` with FER+ labels: FER-2013 rows (found
    in ``votes``, :func:`landmarks.datasets.load_ferplus_votes`) take their FER+ majority label
    and FER+ usage; those without one are not kept. Tables with no FER-2013 row are unchanged.
    ``weights``: a row weighs its majority's share of the emotion votes (0.3-1, median 0.8), else 1.
    """
    from common.labels import ferplus_distribution, ferplus_majority
    from landmarks.datasets import ferplus_key

    labels, splits = table.labels.astype(object).copy(), table.splits.astype(object).copy()
    keep, row_weights = np.ones(len(labels), dtype=bool), np.ones(len(labels))
    keys = [ferplus_key(str(s)[:-len("#flip")] if str(s).endswith("#flip") else str(s)) for s in table.sources]
    is_fer = np.array([k in votes or k.split("/")[-1].startswith(("Training_", "PublicTest_", "PrivateTest_"))
                       for k in keys])
    if not is_fer.any():
        return table.labels, table.splits, keep, row_weights
    for i in np.flatnonzero(is_fer):
        usage, counts = votes.get(keys[i], (None, None))
        label = ferplus_majority(counts) if counts is not None else None
        if label is None:
            keep[i] = False
            continue
        labels[i], splits[i] = label, usage
        if weights:
            row_weights[i] = ferplus_distribution(counts)[label]
    return labels.astype(str), splits.astype(str), keep, row_weights


def _check_target(target, path, table, scheme):
    """DatasetError unless ``table`` has what ``target`` (common.labels.TARGETS) learns from."""
    if target not in TARGETS:
        raise DatasetError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if target != "label" and scheme not in (None, "all"):
        raise DatasetError(f"a label scheme regroups emotions; --target {target} takes none")
    if target == "age" and table.target_name != "age":
        raise DatasetError(f"{path}: the table holds no ages (--target age needs a table extracted with "
                           f"--preset utkface)")
    if target == "gender" and not set(table.labels[table.ok].tolist()) <= set(GENDERS):
        raise DatasetError(f"{path}: the labels are not {' and '.join(GENDERS)} (--target gender needs a table "
                           f"extracted with --preset utkface)")


def load_training_data(paths, labels=None, scheme=None, ferplus=None, ferplus_weights=False, target="label"):
    """Join the ok rows of the feature tables at ``paths`` (they must share one feature config).

    ``paths`` may also hold already loaded :class:`~features.table.FeatureTable` objects.

    ``labels``: keep only these canonical labels (others are counted in ``dropped_labels``).
    ``scheme``: map labels through a label scheme of :data:`common.labels.SCHEMES` (7 basic emotions,
    6 without neutral, 3-class valence); rows outside it are dropped and counted.
    ``ferplus``: a ferplus.csv path: FER-2013 rows take their FER+ majority label and usage
    (:func:`ferplus_relabel`), before ``labels`` and ``scheme``; ``ferplus_weights`` also
    weighs every row by its majority's share of the votes (``TrainingData.weights``).
    ``target`` (:data:`common.labels.TARGETS`): ``label`` learns the class labels; ``gender`` the
    labels of a UTKFace table (female, male); ``age`` its numeric target, the age in years, as a
    float ``y`` (rows without an age are dropped and counted under "no age"). Tables with ages
    also fill ``ages``, so gender figures can be given per age group.
    Raises DatasetError for unreadable tables, tables made under different configs, or tables
    that lack what ``target`` learns from.
    """
    single = isinstance(paths, (str, bytes, FeatureTable)) or hasattr(paths, "__fspath__")
    paths = [paths] if single else list(paths)
    if not paths:
        raise DatasetError("no feature tables given")
    tables = [p if isinstance(p, FeatureTable) else load_table(p) for p in paths]
    paths = [(p.dataset or "table") if isinstance(p, FeatureTable) else p for p in paths]
    first = tables[0]
    for path, table in zip(paths[1:], tables[1:]):
        if not _same_layout(first, table):
            raise DatasetError(f"{path}: made with another feature configuration than {paths[0]} "
                               f"({table.config} vs {first.config}); re-extract with the same settings")
    for path, table in zip(paths, tables):
        _check_target(target, path, table, scheme)
    several = len(tables) > 1
    votes = None
    if ferplus is not None:
        from landmarks.datasets import load_ferplus_votes

        votes = load_ferplus_votes(ferplus)
    parts, excluded, dropped = [], collections.Counter(), collections.Counter()
    for path, table in zip(paths, tables):
        excluded.update(table.status[~table.ok].tolist())
        keep = table.ok.copy()
        bad = _non_finite_rows(table.X, keep)
        if bad:
            raise DatasetError(f"{path}: {bad} usable rows hold NaN or infinity (extraction never writes them: "
                               f"a damaged or foreign table)")
        table_labels, table_splits, row_weights = table.labels, table.splits, np.ones(len(table.labels))
        if votes is not None:
            table_labels, table_splits, majority, row_weights = ferplus_relabel(table, votes, ferplus_weights)
            dropped[NO_FERPLUS_MAJORITY] += int((keep & ~majority).sum())
            keep &= majority
        if target == "age":
            unknown = keep & ~np.isfinite(table.targets)
            dropped.update({"no age": int(unknown.sum())} if unknown.any() else {})
            keep &= ~unknown
        if labels is not None:
            outside = keep & ~np.isin(table_labels, list(labels))
            dropped.update(table_labels[outside].tolist())
            keep &= ~outside
        mapped, in_scheme = apply_scheme(table_labels, scheme)
        dropped.update(table_labels[keep & ~in_scheme].tolist())
        keep &= in_scheme
        name = table.dataset or "table"
        subjects = table.subjects[keep].astype(str)
        if several:
            subjects = np.array([f"{name}:{s}" if s else "" for s in subjects])
        ages = table.targets[keep].astype(np.float64) if table.target_name == "age" else np.full(int(keep.sum()), np.nan)
        parts.append((table.X[keep], mapped[keep].astype(str), subjects, table_splits[keep].astype(str),
                      np.full(int(keep.sum()), name), table.sources[keep].astype(str), table.augmented[keep],
                      row_weights[keep], ages))
    X, y, subjects, splits, datasets, sources, augmented, weights, ages = (np.concatenate(cols) for cols in zip(*parts))
    if not dropped.get(NO_FERPLUS_MAJORITY, 1):
        del dropped[NO_FERPLUS_MAJORITY]
    if len(y) == 0:
        raise DatasetError("no usable rows (every row failed or was filtered out)")
    return TrainingData(X.astype(np.float32, copy=False), ages if target == "age" else y, subjects, splits, datasets,
                        first.groups, first.columns, first.config, dict(sorted(excluded.items())),
                        dict(sorted(dropped.items())), sources, augmented.astype(bool), ages, target,
                        weights if ferplus_weights else None)
