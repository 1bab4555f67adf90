"""What a video run leaves in its output folder, each file written whole or not at all.

* ``timeline.csv`` (or ``.jsonl`` / ``.parquet``): one row per face per analysed frame, streamed
  to a hidden temporary file as results come and renamed when the run ends.
* ``summary.json``: per face id, when it was seen, for how long, and its emotions over the clip.
* ``timeline.png``: per face, each emotion's probability over time.
* ``annotated.mp4``: written by :class:`facial_expressions.video_io.AnnotatedVideo`.

Memory stays flat with the length of the video: rows go to disk as they come, the summary
keeps running sums per face, and the plot keeps at most ``PLOT_POINTS`` points per face
(neighbouring points are averaged in pairs whenever a face's series fills up).
"""

import csv
import json
import math
import os

import numpy as np

from common.errors import VideoError
from common.files import atomic_path

FORMATS = ("csv", "jsonl", "parquet")
#: Points kept per face for timeline.png, whatever the length of the video.
PLOT_POINTS = 2000
#: Faces drawn in timeline.png at most (the longest seen); the others are in the timeline file.
PLOT_FACES = 16
#: Rows per parquet row group.
PARQUET_ROWS = 4096


class _Atomic:
    """An atomic_path entered now and finished later (``commit``) or thrown away (``discard``)."""

    def __init__(self, dest):
        self._context = atomic_path(dest)
        self.tmp = self._context.__enter__()

    def commit(self):
        self._context.__exit__(None, None, None)

    def discard(self):
        self._context.__exit__(RuntimeError, RuntimeError("discarded"), None)


#: The timeline's columns of ``--age-gender``.
AGE_GENDER_COLUMNS = ("age", "gender", "p_female")
#: summary.json's median apparent age is read from a histogram of this bin width (years), so a
#: face's summary stays constant in memory however long the video.
AGE_BIN = 0.5
AGE_BINS = int(130 / AGE_BIN)


def timeline_columns(labels, landmarks=False, age_gender=False):
    """The timeline's columns: frame, time_s, face_id, x, y, w, h, label, p_<class>..., valence,
    arousal, then with ``age_gender`` age, gender, p_female, then with ``landmarks`` x0, y0, ...,
    x67, y67."""
    columns = ["frame", "time_s", "face_id", "x", "y", "w", "h", "label"] + [f"p_{c}" for c in labels]
    columns += ["valence", "arousal"]
    if age_gender:
        columns += list(AGE_GENDER_COLUMNS)
    if landmarks:
        columns += [f"{axis}{i}" for i in range(68) for axis in ("x", "y")]
    return columns


def parquet_module():
    """pyarrow.parquet, or a VideoError saying how to get it."""
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise VideoError("--format parquet needs pyarrow, an optional part: pip install 'facial-expressions[parquet]' "
                         "(or use --format csv or jsonl)") from None
    return pyarrow, pq


def _round(value, digits):
    return None if value is None else round(float(value), digits)


class TimelineWriter:
    """Rows of one face per analysed frame, written to a temporary file as they come."""

    def __init__(self, path, labels, fmt="csv", landmarks=False, age_gender=False):
        if fmt not in FORMATS:
            raise VideoError(f"unknown timeline format {fmt!r}; choose from {', '.join(FORMATS)}")
        self.path, self.labels, self.format, self.landmarks = path, list(labels), fmt, landmarks
        self.age_gender = age_gender
        self.columns = timeline_columns(self.labels, landmarks, age_gender)
        self.rows = 0
        if fmt == "parquet":
            self._pa, self._pq = parquet_module()
        self._file = _Atomic(path)
        self._buffer = []
        if fmt == "parquet":
            self._writer = self._pq.ParquetWriter(self._file.tmp, self._schema())
        else:
            self._fh = open(self._file.tmp, "w", newline="", encoding="utf-8")
            if fmt == "csv":
                self._csv = csv.writer(self._fh, lineterminator="\n")
                self._csv.writerow(self.columns)

    def _schema(self):
        pa = self._pa
        types = {"frame": pa.int64(), "time_s": pa.float64(), "face_id": pa.int64(), "label": pa.string(),
                 "gender": pa.string()}
        return pa.schema([(c, types.get(c, pa.int32() if c in "xywh" else pa.float32())) for c in self.columns])

    def _values(self, frame, face_id, p):
        values = [frame.index, round(frame.time, 4), face_id, *(int(v) for v in p.box), p.label]
        values += [round(p.probabilities[c], 4) for c in self.labels]
        values += [_round(p.valence, 4), _round(p.arousal, 4)]
        if self.age_gender:
            values += [_round(p.age, 1), p.gender, _round(p.p_female, 4)]
        if self.landmarks:
            values += [round(float(v), 1) for point in p.landmarks for v in point]
        return values

    def add(self, frame):
        """Write the rows of one analysed :class:`facial_expressions.video.VideoFrame`."""
        for face_id, p in frame.faces.items():
            values = self._values(frame, face_id, p)
            if self.format == "csv":
                self._csv.writerow(["" if v is None else v for v in values])
            elif self.format == "jsonl":
                self._fh.write(json.dumps(dict(zip(self.columns, values))) + "\n")
            else:
                self._buffer.append(values)
                if len(self._buffer) >= PARQUET_ROWS:
                    self._flush_parquet()
            self.rows += 1

    def _flush_parquet(self):
        if self._buffer:
            columns = list(zip(*self._buffer))
            self._writer.write_table(self._pa.table(
                {name: self._pa.array(col, type=self._writer.schema.field(name).type)
                 for name, col in zip(self.columns, columns)}, schema=self._writer.schema))
            self._buffer = []

    def _close(self):
        if self.format == "parquet":
            self._flush_parquet()
            self._writer.close()
        else:
            self._fh.close()

    def commit(self):
        self._close()
        self._file.commit()

    def discard(self):
        try:
            self._close()
        finally:
            self._file.discard()


class FaceStats:
    """Running sums for one face id: enough for its summary, in constant memory."""

    def __init__(self, labels, age_gender=False):
        self.labels = labels
        self.age_gender = age_gender
        self.age_seconds = np.zeros(AGE_BINS)     # seconds seen at each apparent age (AGE_BIN years)
        self.female_seconds = self.p_female_seconds = 0.0
        self.first = self.last = None
        self.seconds = 0.0
        self.frames = 0
        self.label_seconds = np.zeros(len(labels))
        self.probability_seconds = np.zeros(len(labels))
        self.strongest = [(-1.0, None)] * len(labels)
        self.affect_seconds = np.zeros(2)
        self.affect_known = True

    def add(self, time, span, prediction):
        if self.first is None:
            self.first = time
        self.last = time
        self.frames += 1
        self.seconds += span
        p = np.array([prediction.probabilities[c] for c in self.labels])
        self.probability_seconds += span * p
        self.label_seconds[self.labels.index(prediction.label)] += span
        for i, value in enumerate(p):
            if value > self.strongest[i][0]:
                self.strongest[i] = (float(value), time)
        if self.age_gender and prediction.age is not None:
            self.age_seconds[min(int(prediction.age / AGE_BIN), AGE_BINS - 1)] += span
            self.female_seconds += span * (prediction.gender == "female")
            self.p_female_seconds += span * prediction.p_female
        if prediction.valence is None:
            self.affect_known = False
        else:
            self.affect_seconds += span * np.array([prediction.valence, prediction.arousal])

    def median_age(self):
        """The apparent age the face showed for at least half of its time, to AGE_BIN years (None if never estimated)."""
        total = self.age_seconds.sum()
        if total <= 0:
            return None
        k = int(np.searchsorted(np.cumsum(self.age_seconds), total / 2))
        return (k + 0.5) * AGE_BIN

    def age_gender_summary(self):
        """median_age (years), gender (the apparent gender for most of the time), female_share and
        male_share (of the time), mean_p_female."""
        total = self.age_seconds.sum()
        if total <= 0:
            return {"median_age": None, "gender": None, "female_share": None, "male_share": None,
                    "mean_p_female": None}
        female = float(self.female_seconds / total)
        return {"median_age": round(self.median_age(), 1), "gender": "female" if female > 0.5 else "male",
                "female_share": round(female, 4), "male_share": round(1 - female, 4),
                "mean_p_female": round(float(self.p_female_seconds / total), 4)}

    def mean_probabilities(self):
        return {c: float(v) for c, v in zip(self.labels, self.probability_seconds / max(self.seconds, 1e-12))}

    def to_dict(self):
        mean = self.mean_probabilities()
        dominant = max(mean, key=mean.get)
        out = {
            "first_seen_s": round(self.first, 3), "last_seen_s": round(self.last, 3),
            "seconds_visible": round(self.seconds, 3), "frames": self.frames, "dominant": dominant,
            "emotions": {c: {"share_of_time": round(float(self.label_seconds[i] / max(self.seconds, 1e-12)), 4),
                             "mean_probability": round(mean[c], 4),
                             "strongest": {"time_s": round(self.strongest[i][1], 3),
                                           "probability": round(self.strongest[i][0], 4)}}
                         for i, c in enumerate(self.labels)},
        }
        if self.affect_known:
            valence, arousal = self.affect_seconds / max(self.seconds, 1e-12)
            out["mean_valence"], out["mean_arousal"] = round(float(valence), 4), round(float(arousal), 4)
        if self.age_gender:
            out["apparent"] = self.age_gender_summary()
        return out


class Series:
    """One face's (time, probabilities) for the plot, at most ``PLOT_POINTS`` points: when full,
    neighbouring points are averaged in pairs and later points are taken in pairs too."""

    def __init__(self, limit=PLOT_POINTS):
        self.limit = limit
        self.points = []          # [time, p_0, ..., p_k]
        self._group, self._pending = 1, []

    def add(self, time, probabilities):
        self._pending.append([time, *probabilities])
        if len(self._pending) == self._group:
            self.points.append(np.mean(self._pending, axis=0).tolist())
            self._pending = []
        if len(self.points) >= self.limit:
            pairs = np.asarray(self.points[: len(self.points) // 2 * 2])
            self.points = ((pairs[0::2] + pairs[1::2]) / 2).tolist() + self.points[len(pairs):]
            self._group *= 2

    def array(self):
        rows = self.points + ([np.mean(self._pending, axis=0).tolist()] if self._pending else [])
        return np.asarray(rows, dtype=np.float64).reshape(-1, 1 + (len(rows[0]) - 1 if rows else 0))


def _with_gaps(data):
    """Rows of NaN where a face was out of sight (a gap over 3 steps and 0.5 s), so no line bridges it."""
    if len(data) < 3:
        return data
    steps = np.diff(data[:, 0])
    gaps = np.flatnonzero(steps > max(3 * float(np.median(steps)), 0.5))
    return np.insert(data, gaps + 1, np.nan, axis=0) if len(gaps) else data


def plot_timeline(series, stats, labels, path, title):
    """timeline.png: one panel per face id (the ``PLOT_FACES`` longest seen), each emotion's
    probability over time in seconds, one colour per emotion throughout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted(stats, key=lambda i: -stats[i].seconds)[:PLOT_FACES]
    ids.sort()
    left_out = len(stats) - len(ids)
    panels = max(len(ids), 1)
    fig, axes = plt.subplots(panels, 1, figsize=(10, 1.3 + 1.8 * panels), sharex=True, squeeze=False,
                             layout="constrained")
    colours = plt.get_cmap("tab10")
    for ax, face_id in zip(axes[:, 0], ids):
        data = _with_gaps(series[face_id].array())
        s = stats[face_id]
        for j, label in enumerate(labels):
            ax.plot(data[:, 0], data[:, 1 + j], color=colours(j % 10), lw=1.3, label=label,
                    marker="." if len(data) < 3 else None)
        share = s.label_seconds / max(s.seconds, 1e-12)
        top = int(np.argmax(share))
        apparent = ""
        if s.age_gender and s.median_age() is not None:
            a = s.age_gender_summary()
            apparent = f"; apparent age {a['median_age']:.0f}, {a['gender']} ({a[a['gender'] + '_share']:.0%})"
        ax.set_title(f"face {face_id}: seen {s.first:.1f}-{s.last:.1f} s ({s.seconds:.1f} s), "
                     f"mostly {labels[top]} ({share[top]:.0%} of its time){apparent}", fontsize=9, loc="left")
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability", fontsize=8)
        ax.grid(alpha=0.3)
    if not ids:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
        axes[0, 0].set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(labels), 8), fontsize=9, frameon=False)
    note = f" ({left_out} more faces, seen more briefly, are in the timeline file)" if left_out else ""
    fig.suptitle(title + note, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_json(path, data):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, allow_nan=False, default=_json_default)
        fh.write("\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if not math.isfinite(value) else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def output_names(fmt):
    """The output files of one run, by role."""
    return {"timeline": f"timeline.{fmt}", "summary": "summary.json", "plot": "timeline.png",
            "annotated": "annotated.mp4"}


def existing_outputs(folder):
    return [n for n in ("timeline.csv", "timeline.jsonl", "timeline.parquet", "summary.json", "timeline.png",
                        "annotated.mp4") if os.path.exists(os.path.join(folder, n))]
