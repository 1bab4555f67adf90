"""Feature tables as training data: ok rows only, several tables joined, subjects as CV groups."""

import collections
from dataclasses import dataclass, field

import numpy as np

from features.table import load_table
from landmarks.errors import DatasetError


@dataclass
class TrainingData:
    X: np.ndarray            # float32 (n, d), ok rows only
    y: np.ndarray            # str (n,) canonical labels
    subjects: np.ndarray     # str (n,), "" where unknown (prefixed by dataset when several tables)
    splits: np.ndarray       # str (n,)
    datasets: np.ndarray     # str (n,) dataset name of each row
    groups: dict             # feature group -> slice
    columns: np.ndarray
    config: dict             # FeatureConfig dict shared by every table
    excluded: dict = field(default_factory=dict)   # status -> rows left out (status != ok)
    dropped_labels: dict = field(default_factory=dict)  # label -> rows left out by a label filter

    def __len__(self):
        return len(self.y)

    @property
    def subjects_known(self):
        return len(self.y) > 0 and bool(np.all(self.subjects != ""))

    def cv_groups(self):
        """Group id per row for grouped CV: the subject, or a unique id where it is unknown."""
        return np.array([s if s else f"#row{i}" for i, s in enumerate(self.subjects)])

    def class_counts(self):
        return dict(sorted(collections.Counter(self.y.tolist()).items()))

    def select(self, rows):
        return TrainingData(self.X[rows], self.y[rows], self.subjects[rows], self.splits[rows], self.datasets[rows],
                            self.groups, self.columns, self.config, dict(self.excluded), dict(self.dropped_labels))


def _same_layout(a, b):
    return (a.config == b.config and len(a.columns) == len(b.columns) and bool(np.all(a.columns == b.columns))
            and {k: (s.start, s.stop) for k, s in a.groups.items()} == {k: (s.start, s.stop) for k, s in b.groups.items()})


def load_training_data(paths, labels=None):
    """Join the ok rows of the feature tables at ``paths`` (they must share one feature config).

    ``labels``: keep only these canonical labels (others are counted in ``dropped_labels``).
    Raises DatasetError for unreadable tables or tables made under different configs.
    """
    paths = [paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else list(paths)
    if not paths:
        raise DatasetError("no feature tables given")
    tables = [load_table(p) for p in paths]
    first = tables[0]
    for path, table in zip(paths[1:], tables[1:]):
        if not _same_layout(first, table):
            raise DatasetError(f"{path}: made with another feature configuration than {paths[0]} "
                               f"({table.config} vs {first.config}); re-extract with the same settings")
    several = len(tables) > 1
    parts, excluded, dropped = [], collections.Counter(), collections.Counter()
    for table in tables:
        excluded.update(table.status[~table.ok].tolist())
        keep = table.ok.copy()
        if labels is not None:
            outside = keep & ~np.isin(table.labels, list(labels))
            dropped.update(table.labels[outside].tolist())
            keep &= ~outside
        name = table.dataset or "table"
        subjects = table.subjects[keep].astype(str)
        if several:
            subjects = np.array([f"{name}:{s}" if s else "" for s in subjects])
        parts.append((table.X[keep], table.labels[keep].astype(str), subjects, table.splits[keep].astype(str),
                      np.full(int(keep.sum()), name)))
    X, y, subjects, splits, datasets = (np.concatenate(cols) for cols in zip(*parts))
    if len(y) == 0:
        raise DatasetError("no usable rows (every row failed or was filtered out)")
    return TrainingData(X.astype(np.float32, copy=False), y, subjects, splits, datasets, first.groups,
                        first.columns, first.config, dict(sorted(excluded.items())), dict(sorted(dropped.items())))
