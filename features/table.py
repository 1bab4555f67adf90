"""The feature table: one file per dataset, written whole or not at all, read without pickle."""

import json
import zipfile
from dataclasses import dataclass

import numpy as np

from common.errors import DatasetError
from common.files import atomic_path

TABLE_FORMAT = 1


@dataclass
class FeatureTable:
    X: np.ndarray            # float32 (n, d); rows of failed images are zeros
    columns: np.ndarray      # str (d,)
    groups: dict             # group -> slice of columns
    labels: np.ndarray       # str (n,) canonical labels
    subjects: np.ndarray     # str (n,), "" where unknown
    sources: np.ndarray      # str (n,) file path or csv#row
    splits: np.ndarray       # str (n,) e.g. Training/PublicTest/PrivateTest, "" if none
    status: np.ndarray       # str (n,) ok, no_face, degenerate_landmarks, or an image error reason
    n_faces: np.ndarray      # int (n,) faces found in the image
    config: dict             # FeatureConfig.to_dict()
    dataset: str = ""
    preset: str = ""
    augmented: np.ndarray = None  # bool (n,): mirrored copies (extract --flip); never test rows
    #: float32 (n,): a numeric target beside the labels (UTKFace: age in years, labels the gender),
    #: NaN where unknown; tables written before it existed read as all NaN
    targets: np.ndarray = None
    target_name: str = ""         # what ``targets`` holds ("age"), "" for none

    def __post_init__(self):
        if self.augmented is None:
            self.augmented = np.zeros(len(self.labels), dtype=bool)
        if self.targets is None:
            self.targets = np.full(len(self.labels), np.nan, dtype=np.float32)

    @property
    def ok(self):
        return self.status == "ok"

    def __len__(self):
        return len(self.labels)

    def select(self, rows):
        """A new table with only ``rows`` (mask or indices)."""
        return FeatureTable(self.X[rows], self.columns, self.groups, self.labels[rows], self.subjects[rows],
                            self.sources[rows], self.splits[rows], self.status[rows], self.n_faces[rows],
                            self.config, self.dataset, self.preset, self.augmented[rows], self.targets[rows],
                            self.target_name)

    def group_columns(self, groups):
        """Column indices of the named groups, in table order."""
        missing = [g for g in groups if g not in self.groups]
        if missing:
            raise DatasetError(f"feature groups {missing} are not in this table (it has {list(self.groups)})")
        return np.concatenate([np.arange(self.groups[g].start, self.groups[g].stop) for g in groups])

    def save(self, path):
        meta = {"format": TABLE_FORMAT, "config": self.config, "dataset": self.dataset, "preset": self.preset,
                "groups": {g: [s.start, s.stop] for g, s in self.groups.items()}}
        extra = {}
        if self.target_name:  # a table without a numeric target is written as before
            meta["target_name"] = self.target_name
            extra["targets"] = self.targets.astype(np.float32)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, X=self.X, columns=self.columns.astype(str), labels=self.labels.astype(str),
                     subjects=self.subjects.astype(str), sources=self.sources.astype(str),
                     splits=self.splits.astype(str), status=self.status.astype(str),
                     n_faces=self.n_faces.astype(np.int32), augmented=self.augmented.astype(bool),
                     meta=np.array(json.dumps(meta)), **extra)


def load_table(path):
    """Read a feature table written by ``features.extract`` (no pickle involved)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != TABLE_FORMAT:
                raise DatasetError(f"{path}: feature table format {meta.get('format')} (expected {TABLE_FORMAT})")
            return FeatureTable(
                X=data["X"], columns=data["columns"], labels=data["labels"], subjects=data["subjects"],
                sources=data["sources"], splits=data["splits"], status=data["status"], n_faces=data["n_faces"],
                groups={g: slice(a, b) for g, (a, b) in meta["groups"].items()}, config=meta["config"],
                dataset=meta.get("dataset", ""), preset=meta.get("preset", ""),
                augmented=data["augmented"] if "augmented" in data.files else None,
                targets=data["targets"] if "targets" in data.files else None,
                target_name=str(meta.get("target_name", "")) if "targets" in data.files else "")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such feature table (run `make features` first)") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a feature table ({str(exc)[:100]})") from None
