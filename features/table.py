"""The feature table: one file per dataset, written whole or not at all, read without pickle."""

import json
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from common.errors import DatasetError
from common.files import atomic_path
from common.limits import loads_bounded, npy_header

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


#: The arrays of a table file: name -> (numpy dtype kinds it may have, its dimensions), "n" rows
#: and "d" columns.
ARRAYS = {"X": ("f", ("n", "d")), "columns": ("U", ("d",)), "labels": ("U", ("n",)), "subjects": ("U", ("n",)),
          "sources": ("U", ("n",)), "splits": ("U", ("n",)), "status": ("U", ("n",)), "n_faces": ("iu", ("n",)),
          "augmented": ("b", ("n",)), "targets": ("f", ("n",))}
OPTIONAL = ("augmented", "targets")
#: A table's description (meta.npy): a few hundred bytes of JSON, nested 3 levels.
META_BYTES, META_DEPTH = 1_000_000, 16
#: np.savez stores tables uncompressed; a compressed member may unpack to at most this many times
#: its size (zeros of failed rows compress well; a zip bomb, thousands of times).
MAX_RATIO = 50


def _available_memory():
    import psutil

    return psutil.virtual_memory().available


def _read_array(zf, name, path):
    """One array of the table's zip, its header checked before anything is allocated: its data must
    be what the member holds, and a compressed member must not unpack to far more than it takes."""
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_RATIO * max(info.compress_size, 1 << 20):
        raise DatasetError(f"{path}: {name} unpacks to {info.file_size:,} bytes from {info.compress_size:,} "
                           f"(not a feature table)")
    with zf.open(info) as fh:
        shape, dtype = npy_header(fh, name)
        data_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if dtype.hasobject or data_bytes > info.file_size:
            raise DatasetError(f"{path}: {name} declares {data_bytes:,} bytes of {dtype} data in a "
                               f"{info.file_size:,}-byte member (not a feature table)")
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _check_table(path, arrays, meta):
    """The arrays and description of a table fit together: X is 2-D, every per-row array has its rows,
    the columns its columns, groups are column ranges inside them."""
    X = arrays["X"]
    if X.ndim != 2:
        raise DatasetError(f"{path}: X has shape {X.shape}, not (rows, columns)")
    sizes = {"n": X.shape[0], "d": X.shape[1]}
    for name, array in arrays.items():
        kinds, dims = ARRAYS[name]
        if array.dtype.kind not in kinds or array.shape != tuple(sizes[k] for k in dims):
            raise DatasetError(f"{path}: {name} has shape {array.shape} and type {array.dtype}, the table has "
                               f"{sizes['n']} rows of {sizes['d']} columns")
    groups = meta.get("groups")
    if not isinstance(groups, dict) or not isinstance(meta.get("config"), dict):
        raise DatasetError(f"{path}: the table's description has no feature groups or configuration")
    for group, bounds in groups.items():
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(type(b) is int for b in bounds)
                and 0 <= bounds[0] < bounds[1] <= sizes["d"]):
            raise DatasetError(f"{path}: feature group {str(group)[:40]!r} spans {str(bounds)[:40]}, the table "
                               f"has {sizes['d']} columns")
    for key in ("dataset", "preset", "target_name"):
        if not isinstance(meta.get(key, ""), str):
            raise DatasetError(f"{path}: the table's {key} is not a name")


def load_table(path):
    """Read a feature table written by ``features.extract`` (no pickle involved).

    Untrusted files are read within bounds: every array's header is checked against the bytes
    its member holds before anything is allocated, compressed members may not unpack to more than
    MAX_RATIO times their size, all of it must fit in the memory available, the description is
    bounded JSON, and the arrays must fit together (:func:`_check_table`). Raises DatasetError.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            present = {name[:-4] for name in zf.namelist() if name.endswith(".npy")}
            missing = sorted(set(ARRAYS) - set(OPTIONAL) - present) + ([] if "meta" in present else ["meta"])
            if missing:
                raise DatasetError(f"{path}: not a feature table (no {', '.join(missing[:3])})")
            names = [name for name in ARRAYS if name in present]
            total = sum(zf.getinfo(f"{name}.npy").file_size for name in names)
            if total > _available_memory():
                raise DatasetError(f"{path}: the table unpacks to {total / 1e9:.1f} GB, more than the "
                                   f"{_available_memory() / 1e9:.1f} GB of memory available")
            if zf.getinfo("meta.npy").file_size > META_BYTES:
                raise DatasetError(f"{path}: the table's description is larger than {META_BYTES:,} bytes")
            description = _read_array(zf, "meta", path)
            if description.shape != () or description.dtype.kind != "U":
                raise DatasetError(f"{path}: the table's description is not text")
            meta = loads_bounded(str(description), META_BYTES, META_DEPTH, "the table's description")
            if not isinstance(meta, dict) or meta.get("format") != TABLE_FORMAT:
                found = meta.get("format") if isinstance(meta, dict) else None
                raise DatasetError(f"{path}: feature table format {str(found)[:20]} (expected {TABLE_FORMAT})")
            arrays = {name: _read_array(zf, name, path) for name in names}
        _check_table(path, arrays, meta)
        return FeatureTable(
            X=arrays["X"], columns=arrays["columns"], labels=arrays["labels"], subjects=arrays["subjects"],
            sources=arrays["sources"], splits=arrays["splits"], status=arrays["status"], n_faces=arrays["n_faces"],
            groups={g: slice(a, b) for g, (a, b) in meta["groups"].items()}, config=meta["config"],
            dataset=meta.get("dataset", ""), preset=meta.get("preset", ""), augmented=arrays.get("augmented"),
            targets=arrays.get("targets"), target_name=meta.get("target_name", "") if "targets" in arrays else "")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such feature table (run `make features` first)") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: a folder, not a feature table") from None
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, zipfile.BadZipFile, zipfile.LargeZipFile,
            NotImplementedError, zlib.error) as exc:
        text = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"{path}: not a feature table ({text})") from None
