"""Which faces train and which test: the evaluation protocol a feature table calls for.

:func:`choose_protocol` picks the cross-validation scheme from the table (official FER-2013
split, leave-one-subject-out, subject-grouped folds, or seeded stratified folds) and keeps
mirrored copies in the training parts only; :meth:`Protocol.inner_cv` is the inner split the
grid search tunes on. :func:`apply_calibration` is the optional per-subject calibration of the features.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from common.errors import FacialExpressionError

from .data import centre_by_subject

#: Datasets with at most this many subjects are evaluated leave-one-subject-out.
LOSO_MAX_SUBJECTS = 12
#: Outer folds of the age and gender benchmarks (UTKFace has no subject ids: seeded folds).
AGE_GENDER_FOLDS = 5
FER_TEST_SPLITS = ("PublicTest", "PrivateTest")
#: --calibrate choices: none, or subject (see :func:`apply_calibration`).
CALIBRATIONS = ("none", "subject")
CALIBRATION_NOTE = ("; PER-SUBJECT CALIBRATION: each face's features centred on the mean of its person's "
                    "faces, test persons included (labels unused; transductive, not a per-image figure)")


@dataclass
class Protocol:
    """Outer folds (the same for every model) and how the inner grid search splits a training part."""

    name: str                         # fer2013_split, loso, subject_kfold or stratified_kfold
    description: str                  # the protocol in words, for the reports
    folds: list                       # [(train indices, test indices)]
    groups: np.ndarray = None         # CV groups (subjects) or None
    inner_splits: int = 3
    seed: int = 0
    subsets: dict = field(default_factory=dict)   # extra report name -> boolean mask over rows
    inner_holdout: bool = False       # tune on one held-out fifth of the training part (big tables)
    strata: np.ndarray = None         # what folds stratify on instead of y (age targets: the age group)

    def inner_cv(self, y_train, groups_train=None, train=None):
        """The inner CV splitter for a training part (grouped by subject where known).

        With ``inner_holdout`` it is one split: a stratified fifth of the training part
        (grouped, so mirrored copies stay with their originals) validates every candidate.
        With ``strata`` (give the training rows ``train``) the inner folds stratify on them, as
        a list of (train, test) index pairs.
        """
        if self.strata is not None and train is not None:
            return stratified_splits(self.strata[train], groups_train, self.inner_splits, self.seed)
        if self.inner_holdout:
            placeholder = np.zeros(len(y_train))
            if groups_train is not None:
                splitter = StratifiedGroupKFold(5, shuffle=True, random_state=self.seed)
                return [next(splitter.split(placeholder, y_train, groups_train))]
            return [next(StratifiedKFold(5, shuffle=True, random_state=self.seed).split(placeholder, y_train))]
        if groups_train is not None:
            n = max(2, min(self.inner_splits, len(np.unique(groups_train))))
            return StratifiedGroupKFold(n, shuffle=True, random_state=self.seed)
        n = max(2, min(self.inner_splits, int(np.min(np.unique(y_train, return_counts=True)[1]))))
        return StratifiedKFold(n, shuffle=True, random_state=self.seed)

    def tested_rows(self):
        """Every tested row, fold after fold; each row is tested at most once."""
        tested = np.concatenate([test for _, test in self.folds])
        if len(np.unique(tested)) != len(tested):
            raise FacialExpressionError("internal error: outer folds overlap")
        return tested


def stratified_splits(strata, groups=None, n_splits=5, seed=0):
    """``n_splits`` seeded (train, test) index pairs stratified on ``strata`` (e.g. age groups),
    grouped by ``groups`` where given (a mirrored copy stays with its original); fewer splits
    when a stratum or the groups are too few."""
    strata = np.asarray(strata)
    placeholder = np.zeros(len(strata))
    if groups is not None:
        n = max(2, min(n_splits, len(np.unique(groups))))
        return list(StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(placeholder, strata, groups))
    n = max(2, min(n_splits, int(np.min(np.unique(strata, return_counts=True)[1]))))
    return list(StratifiedKFold(n, shuffle=True, random_state=seed).split(placeholder, strata))


def _file_digest(path):
    try:
        with open(path, "rb") as fh:
            return hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        return None


def cross_split_duplicates(data, train, test):
    """Test rows whose image file is byte-identical to some training image (FER-2013 has 531 such groups)."""
    digests = {}
    for i in np.concatenate([train, test]):
        digests[i] = _file_digest(data.sources[i]) if not data.augmented[i] else None
    in_train = {digests[i] for i in train if digests[i]}
    return np.array([i for i in test if digests[i] and digests[i] in in_train], dtype=int)


def _add_mirrors(data, folds):
    """Put every mirrored copy (augmented row) in the training part of the fold that trains on
    its original; mirrored copies are never tested."""
    if not np.any(data.augmented):
        return folds
    original = {data.sources[i]: i for i in np.flatnonzero(~data.augmented)}
    twins = np.flatnonzero(data.augmented)
    twin_of = np.array([original.get(data.original_source(i), -1) for i in twins])
    out = []
    for train, test in folds:
        in_train = np.isin(twin_of, train)
        out.append((np.sort(np.concatenate([train, twins[in_train]])), test))
    return out


def choose_protocol(data, quick=False, seed=0, check_duplicates=True):
    """The :class:`Protocol` of ``data`` (see :func:`_choose_protocol`), chosen on its original
    faces; mirrored copies join the training part of the fold that trains on their original."""
    protocol = _choose_protocol(data.select(~data.augmented), quick, seed, check_duplicates)
    if protocol.strata is not None:
        protocol.strata = data.age_groups()  # a mirrored copy has its original's age
    if not np.any(data.augmented):
        return protocol
    # map the folds back onto all rows and add the mirrored copies to the training parts
    base = np.flatnonzero(~data.augmented)
    protocol.folds = _add_mirrors(data, [(base[train], base[test]) for train, test in protocol.folds])
    protocol.groups = data.cv_groups()  # a mirrored copy shares its original's group in the inner CV
    protocol.subsets = {name: _expand(mask, base, len(data.y)) for name, mask in protocol.subsets.items()}
    protocol.description += f"; training parts add {int(data.augmented.sum())} mirrored faces, never tested"
    return protocol


def holdout_split(data, fraction=0.2, seed=0):
    """(training rows, held-out rows) of ``data``: a seeded ``fraction`` of its original faces held
    out, stratified as the benchmark's folds are (by age group for the age and gender targets,
    else by label) or, where subjects are known, whole subjects held out. A mirrored copy trains
    with its original and is never held out."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if not 0 < fraction < 1:
        raise FacialExpressionError(f"the held-out share must lie between 0 and 1, not {fraction}")
    base = np.flatnonzero(~data.augmented)
    if data.subjects_known:
        splitter = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
        train, test = next(splitter.split(base, groups=data.subjects[base]))
        train, test = base[train], base[test]
    else:
        strata = data.age_groups() if data.target in ("age", "gender") else data.y
        train, test = train_test_split(base, test_size=fraction, stratify=strata[base], random_state=seed)
    return _add_mirrors(data, [(np.sort(train), np.sort(test))])[0]


def _expand(mask, base, n):
    full = np.zeros(n, dtype=bool)
    full[base[mask]] = True
    return full


def _choose_protocol(data, quick=False, seed=0, check_duplicates=True):
    """The evaluation protocol of ``data`` (a classifiers.data.TrainingData).

    * FER-2013 (splits hold Training): train on Training, test on PublicTest+PrivateTest
      (PrivateTest also reported alone);
    * subjects known, at most 12: leave-one-subject-out (quick: 5 subject-grouped folds);
    * subjects known, more: StratifiedGroupKFold(10) by subject (quick: 5);
    * age or gender (UTKFace, no subjects): 5 seeded folds stratified by age group, the same for
      both targets;
    * otherwise StratifiedKFold(10) (quick: 5), which is NOT subject-independent.
    """
    y = data.y
    n_outer = 5 if quick else 10
    inner = 3 if quick else 5
    if data.target in ("age", "gender"):
        strata = data.age_groups()
        folds = stratified_splits(strata, None, AGE_GENDER_FOLDS, seed)
        text = (f"{len(folds)}-fold cross-validation stratified by age group (seed {seed}); no subject ids, so a "
                f"person photographed more than once may fall in both parts; inner 3-fold CV (stratified by age "
                f"group) on each training part for hyperparameters")
        return Protocol("seeded_kfold", text, folds, None, 3, seed, strata=strata)
    if np.any(data.splits == "Training"):
        train = np.flatnonzero(data.splits == "Training")
        test_mask = np.isin(data.splits, FER_TEST_SPLITS)
        test = np.flatnonzero(test_mask)
        if len(test) == 0:
            raise FacialExpressionError("the table has a Training split but no PublicTest/PrivateTest rows")
        subsets = {}
        if np.any(data.splits == "PrivateTest"):
            subsets["PrivateTest"] = data.splits == "PrivateTest"
        duplicates = cross_split_duplicates(data, train, test) if check_duplicates else np.zeros(0, dtype=int)
        if len(duplicates):
            clean = test_mask.copy()
            clean[duplicates] = False
            subsets["test_without_train_duplicates"] = clean
        return Protocol("fer2013_split",
                        f"official FER-2013 split: trained on Training ({len(train)} faces), tested on "
                        f"PublicTest+PrivateTest ({len(test)} faces); hyperparameters chosen on a stratified "
                        f"fifth of Training held out (test images never used for tuning)",
                        [(train, test)], None, inner, seed, subsets, inner_holdout=True)
    if data.subjects_known:
        groups = data.subjects
        n_subjects = len(np.unique(groups))
        if n_subjects <= LOSO_MAX_SUBJECTS and not quick:
            folds = list(LeaveOneGroupOut().split(data.X, y, groups))
            text = (f"subject-independent leave-one-subject-out ({n_subjects} subjects, {len(folds)} folds); "
                    f"inner {inner}-fold subject-grouped CV for hyperparameters")
            return Protocol("loso", text, folds, groups, inner, seed)
        n = min(n_outer, n_subjects)
        splitter = StratifiedGroupKFold(n, shuffle=True, random_state=seed)
        folds = list(splitter.split(data.X, y, groups))
        text = (f"subject-independent {n}-fold StratifiedGroupKFold by subject ({n_subjects} subjects, seed {seed})"
                + ("; quick run: the full protocol is leave-one-subject-out" if n_subjects <= LOSO_MAX_SUBJECTS else "")
                + f"; inner {inner}-fold subject-grouped CV for hyperparameters")
        return Protocol("subject_kfold", text, folds, groups, inner, seed)
    n = max(2, min(n_outer, int(np.min(np.unique(y, return_counts=True)[1]))))
    folds = list(StratifiedKFold(n, shuffle=True, random_state=seed).split(data.X, y))
    text = (f"{n}-fold StratifiedKFold (seed {seed}); subjects unknown, so the folds are NOT subject-independent "
            f"and figures may be optimistic; inner {inner}-fold stratified CV for hyperparameters")
    return Protocol("stratified_kfold", text, folds, None, inner, seed)


def apply_calibration(data, how="none"):
    """``data`` as the benchmark evaluates it under ``--calibrate how`` (one of CALIBRATIONS):
    ``subject`` centres every face's features on its person's mean (test persons included)."""
    return centre_by_subject(data) if how == "subject" else data


def calibration_note(how="none"):
    """What the protocol description adds under ``--calibrate how``."""
    return CALIBRATION_NOTE if how == "subject" else ""
