"""From emotion to music: tracks for a face's mood, in valence-arousal space.

A face's class probabilities give it a point on Russell's circumplex (valence: unpleasant ->
pleasant, arousal: calm -> energetic; :mod:`classifiers.affect`, both axes -1..+1). A music
catalogue gives every track a point on the same two axes (e.g. the Deezer mood detection
dataset, Delbouys et al., ISMIR 2018). This module finds tracks near a face's point::

    catalogue = load_catalogue("deezer_mood.csv")            # once: parse, standardise, index
    rec = recommend(faces, catalogue, n=10, mode="lift")      # well under 1 ms
    rec.reason   # "you look sad (valence -0.63, arousal -0.27): calm tracks, starting sombre ..."
    rec.tracks   # Track(artist, title, valence, arousal, url, distance), ...

The catalogue
-------------
A CSV file (UTF-8; comma, semicolon or tab separated) with the columns ``artist``, ``title``,
``valence``, ``arousal`` and, optionally, ``url``; other columns are ignored. A file whose
columns are named differently is read with an explicit mapping, e.g.
``load_catalogue(path, columns={"valence": "v_score", "arousal": "energy"})``; nothing is
guessed. Rows without an artist, a title, or a valence/arousal value (empty, ``nan``, ``NA``)
are left out and counted; a value that is not a number is an error. Each axis is standardised
on load (z-score), so distances are in standard deviations of the catalogue's own tracks and
any scale works. Every problem is one :class:`common.errors.CatalogueError` line.

From a face's point to the catalogue
------------------------------------
The two scales come from different instruments: mean ratings of emotion words on -1..+1 for
faces, whatever scores the catalogue gives its songs for tracks. No published calibration links them, so this
module assumes only that their orders agree, axis by axis: a face at ``u`` on -1..+1 is aimed
at the ``(u + 1) / 2`` quantile of the catalogue's tracks on that axis. A neutral face (0, 0)
aims at the median track on both axes; a happy face (+0.81, +0.51) at the 90.5th percentile of
valence and the 75.5th of arousal; the ends of the scale at the catalogue's extreme tracks.
This is read off the catalogue itself, so it holds for any catalogue, skewed or not, whatever
its scale. It is a convention, not a measurement: "a sad face deserves music as sad as the
18.5th percentile of this catalogue" is a product choice that no study has validated.

Modes
-----
``match``   tracks near the face's point (mood congruence): n tracks drawn at random, one per
            artist, among the ``VARIETY * n`` nearest artists (each by its nearest track), listed
            nearest first.
``lift``    the iso principle of music therapy and mood regulation: start near the listener's
            mood and move gradually toward a pleasant one. The target's valence climbs in
            equal steps along the list from the face's point to the valence of ``happy``
            (:data:`LIFT_VALENCE`; it never goes down), arousal stays the face's; each place
            takes one of the ``VARIETY`` nearest tracks of artists not yet in the list.

No artist appears twice in a list (artists compared case- and space-insensitively), and the
same seed gives the same list; another seed usually gives another. Each track links to its
``url`` if the catalogue has one, else to a web search for "artist title".
"""

import csv
import math
import numbers
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from classifiers.affect import POINTS, valence_arousal
from common.errors import CatalogueError, NoFaceError, RecommendationError

MODES = ("match", "lift")
FIELDS = ("artist", "title", "valence", "arousal", "url")
REQUIRED = FIELDS[:4]
#: Cells read as "no value" (the row is left out), compared in lower case.
MISSING = {"", "nan", "na", "n/a", "null", "none"}
#: Larger files are refused before reading (a catalogue of a million tracks is about 100 MB).
MAX_CATALOGUE_BYTES = 512 * 1024 * 1024
#: Link of a track without a url: a web search for "artist title".
SEARCH_URL = "https://duckduckgo.com/?q="
#: match draws n among the VARIETY * n nearest artists; lift each place among the VARIETY nearest.
VARIETY = 3
#: Circumplex valence where a lift ends: that of a happy face.
LIFT_VALENCE = POINTS["happy"][0]
#: |value| below this on the circumplex counts as the middle of the axis in reasons.
MIDDLE = 0.15

MOOD_WORDS = {"angry": "angry", "disgust": "disgusted", "fear": "afraid", "happy": "happy", "sad": "sad",
              "surprise": "surprised", "neutral": "neutral", "contempt": "contemptuous",
              "negative": "in a negative mood", "positive": "in a positive mood"}


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Tracks with a point in valence-arousal space, standardised and indexed for nearest-track queries.

    ``values`` holds the catalogue's own (valence, arousal) per track, ``points`` the same
    standardised per axis (``(values - mean) / std``), ``tree`` a k-d tree over ``points``.
    """

    path: str
    artists: np.ndarray      # str (n,)
    titles: np.ndarray       # str (n,)
    urls: np.ndarray         # str (n,), "" where the file has none
    values: np.ndarray       # float (n, 2): valence, arousal as in the file
    points: np.ndarray       # float (n, 2): standardised
    mean: np.ndarray         # (2,)
    std: np.ndarray          # (2,)
    artist_ids: np.ndarray   # int (n,): same number = same artist
    tree: cKDTree
    sorted_points: np.ndarray  # float (2, n): each axis's standardised values, ascending
    skipped: int = 0         # rows left out (no artist, title or value)

    def __len__(self):
        return len(self.titles)

    def standard_point(self, valence, arousal):
        """A circumplex point (-1..+1 per axis) -> the catalogue's standardised space, by quantiles.

        The ``(u + 1) / 2`` quantile of each axis, interpolated linearly between tracks
        (numpy's default quantile method).
        """
        last = len(self) - 1
        out = np.empty(2)
        for axis, u in enumerate((valence, arousal)):
            position = min(max((u + 1.0) / 2.0, 0.0), 1.0) * last
            low = int(position)
            high = min(low + 1, last)
            values = self.sorted_points[axis]
            out[axis] = values[low] + (position - low) * (values[high] - values[low])
        return out


@dataclass(frozen=True)
class Track:
    artist: str
    title: str
    valence: float   # as in the catalogue
    arousal: float   # as in the catalogue
    url: str
    distance: float  # to its target point, in standard deviations of the catalogue


@dataclass(frozen=True)
class Recommendation:
    """A list of tracks for one mood, and why."""

    tracks: tuple
    reason: str
    target: tuple    # (valence, arousal) of the face or point, on the circumplex scale -1..+1
    mode: str
    label: str = None
    seed: int = 0

    def to_dict(self):
        """JSON-ready: plain dicts, lists, strings and numbers."""
        return {"mode": self.mode, "reason": self.reason, "label": self.label, "seed": self.seed,
                "target": {"valence": self.target[0], "arousal": self.target[1]},
                "tracks": [asdict(t) for t in self.tracks]}


# --- the catalogue ----------------------------------------------------------------------------

def parse_column_mapping(text):
    """``"valence=v_score,arousal=energy"`` -> ``{"valence": "v_score", "arousal": "energy"}`` (for command lines)."""
    mapping = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise CatalogueError(f"column mapping {part!r}: expected FIELD=COLUMN, e.g. valence=v_score")
        mapping[field.strip()] = column.strip()
    return mapping


def _column_names(columns):
    names = {field: field for field in FIELDS}
    unknown = sorted(set(columns or {}) - set(FIELDS))
    if unknown:
        raise CatalogueError(f"column mapping names unknown field(s) {', '.join(unknown)}; fields: {', '.join(FIELDS)}")
    names.update(columns or {})
    return names


def _number(cell, where, field):
    """float of a cell, None for a missing value; CatalogueError for anything else."""
    if cell.strip().lower() in MISSING:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise CatalogueError(f"{where}: {field} {cell.strip()[:40]!r} is not a number") from None
    if math.isnan(value):
        return None
    if not math.isfinite(value):
        raise CatalogueError(f"{where}: {field} {cell.strip()!r} is not a finite number")
    return value


def _read_rows(path, names):
    """Header check and row parsing -> (artists, titles, urls, values, skipped)."""
    artists, titles, urls, values, skipped = [], [], [], [], 0
    with open(path, newline="", encoding="utf-8-sig") as fh:
        first = fh.readline()
        if not first.strip():
            raise CatalogueError(f"{path}: no header line (the first line is empty)")
        delimiter = max(",;\t", key=first.count)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delimiter)
        header = [h.strip() for h in next(reader)]
        missing = [f"{names[f]!r}" + ("" if names[f] == f else f" (for {f})") for f in REQUIRED
                   if names[f] not in header]
        if missing:
            raise CatalogueError(f"{path}: missing column(s) {', '.join(missing)}; found: {', '.join(header)[:200]}"
                                 f" (name yours with columns={{'valence': 'YOUR_COLUMN', ...}})")
        col = {f: header.index(names[f]) for f in FIELDS if names[f] in header}
        width = max(col.values()) + 1
        try:
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                where = f"{path} line {reader.line_num}"
                if len(row) < width:
                    raise CatalogueError(f"{where}: {len(row)} fields, too few for the header's {len(header)}")
                valence = _number(row[col["valence"]], where, names["valence"])
                arousal = _number(row[col["arousal"]], where, names["arousal"])
                artist, title = row[col["artist"]].strip(), row[col["title"]].strip()
                if valence is None or arousal is None or not artist or not title:
                    skipped += 1
                    continue
                artists.append(artist)
                titles.append(title)
                urls.append(row[col["url"]].strip() if "url" in col else "")
                values.append((valence, arousal))
        except csv.Error as exc:
            raise CatalogueError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    return artists, titles, urls, values, skipped


def load_catalogue(path, columns=None, max_bytes=MAX_CATALOGUE_BYTES) -> Catalogue:
    """Read, standardise and index a music catalogue (see the module docstring for the format).

    ``columns`` maps this module's field names (artist, title, valence, arousal, url) to the
    file's column names where they differ. Raises :class:`CatalogueError` (one line) for a
    missing, empty, over-large (``max_bytes``), non-UTF-8 or malformed file, missing columns,
    a non-numeric value, no usable row, or an axis on which all tracks are equal.
    """
    path = os.fspath(path)
    names = _column_names(columns)
    if not os.path.exists(path):
        raise CatalogueError(f"{path}: no such catalogue file")
    if not os.path.isfile(path):
        raise CatalogueError(f"{path}: not a regular file (a directory?)")
    size = os.path.getsize(path)
    if size == 0:
        raise CatalogueError(f"{path}: empty file (0 bytes)")
    if size > max_bytes:
        raise CatalogueError(f"{path}: {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB a catalogue may have")
    try:
        artists, titles, urls, values, skipped = _read_rows(path, names)
    except UnicodeDecodeError:
        raise CatalogueError(f"{path}: not UTF-8 text (is it a CSV file?)") from None
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not values:
        raise CatalogueError(f"{path}: no track with an artist, a title, valence and arousal"
                             + (f" ({skipped} rows, each missing one)" if skipped else " (header only)"))
    values = np.asarray(values, dtype=float)
    mean, std = values.mean(axis=0), values.std(axis=0)
    for axis, field in enumerate(("valence", "arousal")):
        if not std[axis] > 0:
            raise CatalogueError(f"{path}: every track has the same {field} ({values[0, axis]:g}): "
                                 "nothing to choose by")
    points = (values - mean) / std
    keys = [" ".join(a.casefold().split()) for a in artists]
    _, artist_ids = np.unique(keys, return_inverse=True)
    return Catalogue(path=path, artists=np.array(artists), titles=np.array(titles), urls=np.array(urls),
                     values=values, points=points, mean=mean, std=std, artist_ids=artist_ids,
                     tree=cKDTree(points), sorted_points=np.sort(points.T, axis=1), skipped=skipped)


# --- recommendation ---------------------------------------------------------------------------

def _field(face, name):
    return face.get(name) if isinstance(face, Mapping) else getattr(face, name, None)


def _is_point(value):
    return (isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, Mapping)) and len(value) == 2
            and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in value))


def mood_of(faces_or_point):
    """(valence, arousal, label or None) of a (valence, arousal) pair or of the first face of a list.

    A face is an object or a dict with ``valence``, ``arousal``, ``label`` and
    ``probabilities``; a face without valence/arousal is placed from its probabilities.
    """
    if _is_point(faces_or_point):
        valence, arousal, label = float(faces_or_point[0]), float(faces_or_point[1]), None
    else:
        faces = [faces_or_point] if isinstance(faces_or_point, Mapping) else faces_or_point
        if faces is None or len(faces) == 0:
            raise NoFaceError("no face to recommend music for")
        face = faces[0]  # faces come largest first: the largest face sets the mood
        valence, arousal, label = _field(face, "valence"), _field(face, "arousal"), _field(face, "label")
        if valence is None or arousal is None:
            probabilities = _field(face, "probabilities")
            if not probabilities:
                raise RecommendationError("a face needs valence and arousal, or class probabilities, to set a mood")
            valence, arousal = valence_arousal(probabilities)
        valence, arousal = float(valence), float(arousal)
    for name, value in (("valence", valence), ("arousal", arousal)):
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise RecommendationError(f"{name} {value:g} is off the circumplex scale -1..1 (a face's point, "
                                      "not a catalogue score)")
    return valence, arousal, (str(label) if label is not None else None)


def _nearest_artists(catalogue, point, m, used):
    """Indices of the nearest track of each of the ``m`` artists nearest ``point``, artists in ``used`` excluded."""
    n = len(catalogue)
    k = min(n, 2 * m + len(used) + 8)
    while True:
        _, idx = catalogue.tree.query(point, k=k)
        picked, seen = [], set(used)
        for i in np.atleast_1d(idx):
            artist = catalogue.artist_ids[i]
            if artist not in seen:
                seen.add(artist)
                picked.append(int(i))
                if len(picked) == m:
                    return picked
        if k >= n:
            return picked
        k = min(n, 4 * k)


def _words(value, low, middle, high):
    return low if value <= -MIDDLE else high if value >= MIDDLE else middle


def _reason(valence, arousal, label, mode):
    if label is None:
        who = "your mood point"
    else:
        who = f"you look {MOOD_WORDS.get(label.lower(), label)}"
    energy = _words(arousal, "calm", "mid-energy", "energetic")
    tone = _words(valence, "sombre", "mellow", "bright")
    head = f"{who} (valence {valence:+.2f}, arousal {arousal:+.2f}): "
    if mode == "match":
        return head + f"{energy}, {tone} tracks to match that mood"
    if valence >= LIFT_VALENCE:
        return head + f"{energy}, bright tracks: the mood is already pleasant, so the list stays there"
    return head + f"{energy} tracks, starting {tone} and gradually brighter"


def _link(catalogue, i):
    if catalogue.urls[i]:
        return str(catalogue.urls[i])
    return SEARCH_URL + urllib.parse.quote_plus(f"{catalogue.artists[i]} {catalogue.titles[i]}")


def recommend(faces_or_point, catalogue, n=10, mode="match", seed=0) -> Recommendation:
    """Up to ``n`` tracks of ``catalogue`` for a mood, one per artist (see the module docstring).

    ``faces_or_point``: a (valence, arousal) pair on the circumplex scale -1..+1, or a list of
    face results (largest first; the first sets the mood). Fewer than ``n`` tracks come back
    only when the catalogue has fewer than ``n`` artists. Raises :class:`NoFaceError` for an
    empty list and :class:`RecommendationError` for an unknown mode, ``n < 1`` or a point
    off the scale.
    """
    if mode not in MODES:
        raise RecommendationError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise RecommendationError(f"n must be a whole number >= 1, not {n!r}")
    valence, arousal, label = mood_of(faces_or_point)
    rng = np.random.default_rng(seed)
    start = catalogue.standard_point(valence, arousal)
    if mode == "match":
        pool = _nearest_artists(catalogue, start, VARIETY * n, ())
        chosen = rng.choice(pool, size=min(n, len(pool)), replace=False)
        distances = np.linalg.norm(catalogue.points[chosen] - start, axis=1)
        order = np.lexsort((chosen, distances))
        picks = [(int(chosen[j]), float(distances[j])) for j in order]
    else:
        end = catalogue.standard_point(max(valence, LIFT_VALENCE), arousal)
        picks, used = [], []
        for step in np.linspace(0.0, 1.0, n):
            target = start + step * (end - start)
            pool = _nearest_artists(catalogue, target, VARIETY, used)
            if not pool:
                break
            i = int(rng.choice(pool))
            used.append(catalogue.artist_ids[i])
            picks.append((i, float(np.linalg.norm(catalogue.points[i] - target))))
    tracks = tuple(Track(artist=str(catalogue.artists[i]), title=str(catalogue.titles[i]),
                         valence=float(catalogue.values[i, 0]), arousal=float(catalogue.values[i, 1]),
                         url=_link(catalogue, i), distance=round(d, 4)) for i, d in picks)
    return Recommendation(tracks=tracks, reason=_reason(valence, arousal, label, mode),
                          target=(valence, arousal), mode=mode, label=label, seed=seed)
