"""Facial expressions through a video file, a webcam or a stream: a per-face emotion timeline.

    facial-expressions video INPUT -o OUT_DIR [--every N | --fps F] [--start S] [--end S]
        [--format csv|jsonl|parquet] [--landmarks] [--annotate] [--smooth SECONDS] [--calibrate]
        [--age-gender] [--recommend CATALOGUE] [--realtime] [--model FILE] [--detector D] [--upsample N] [--jobs N]

INPUT is a video file (mp4, avi, mov, mkv, webm, ...), a folder of them, a camera index (``0``)
or a stream URL (``rtsp://...``, ``http://...``). From Python, :func:`analyse_video` yields one
:class:`VideoFrame` per analysed frame as soon as it is ready (a live stream can be consumed
as it comes); :func:`analyse_to_folder` writes the outputs:

* ``timeline.csv`` (``--format jsonl|parquet``): one row per face per analysed frame:
  ``frame, time_s, face_id, x, y, w, h, label, p_<class>..., valence, arousal`` (+ ``age, gender,
  p_female`` with ``--age-gender``; + ``x0, y0, ..., x67, y67`` with ``--landmarks``);
* ``summary.json``: per face id, first and last time seen, seconds visible, per emotion its
  share of the time, mean probability and strongest moment (with ``--age-gender`` the median
  apparent age over the clip and each apparent gender's share of the time; with
  ``--recommend`` music for the face's mood over the clip);
* ``timeline.png``: one panel per face, each emotion's probability over time;
* ``annotated.mp4`` with ``--annotate``: the video with boxes, face ids and labels (H.264).

Everything goes through the public API: :func:`classifiers.recognise` detects faces, or
describes them at boxes carried from the previous frame (:mod:`facial_expressions.tracking`
keeps ids stable and the detector off most frames). Outputs are written to hidden temporary
names and renamed when the run ends: a killed run leaves complete files or none. Ctrl-C ends
a live run normally (everything up to that moment is written); on a file it writes what was
analysed, says where it stopped, and exits 130.

Options that change the probabilities
-------------------------------------
``--smooth SECONDS``: each face's probabilities become an exponential moving average over its
past frames with that time constant (the same on files and live): noise between frames drops,
but an expression lasting ``d`` seconds reaches only ``1 - exp(-d / SECONDS)`` of its height
(63% when it lasts as long as the constant, 18% for 0.1 s at 0.5 s), and about SECONDS later.

``--calibrate``: each face's features are taken relative to that person's own running
baseline: the mean of the face's frames so far (this one included; plus
``CALIBRATION_PRIOR_SECONDS`` worth of frames of the model's mean training face, so that the
first frames are not flattened) is moved onto the model's mean training face, so what
remains is how this person's face differs from their own average. Like the benchmark's
``--calibrate subject`` it assumes a person shows a mix of expressions: someone neutral all
along has their neutral face moved to the average face. Needs a model that standardises its
features (the shipped one does). On JAFFE, leave-one-subject-out, each held-out person's
faces fed one by one in random orders, it lifts a fixed logistic regression from 76.1% to
90.5% (offline calibration on all of the person's faces: 93.0%; ``benchmarks/video_calibration.py``,
on table rows, i.e. without mirror averaging).
"""

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

import click
import numpy as np

from classifiers import load_model
from classifiers.affect import valence_arousal
from classifiers.artifact import DEFAULT_MODEL
from common.cli import (EXIT_INTERRUPTED, age_gender_option, backend_options, check_recommend_options, command, detector_options, jobs_option,
                        mirror_option, one_line, quiet_option, recommend_options, utf8_safe_output)
from common.errors import AffectError, FacialExpressionError, VideoError
from common.files import output_lock
from landmarks.detect import DETECTORS

from .tracking import CutDetector, FaceTracker
from .video_io import STREAM_TIMEOUT, VIDEO_EXTENSIONS, AnnotatedVideo, FileFrames, LiveFrames, draw_faces, open_source, to_gray
from .video_outputs import (FORMATS, FaceStats, Series, TimelineWriter, existing_outputs, output_names,
                            parquet_module, plot_timeline, write_json)

EXIT_OK, EXIT_ERROR, EXIT_NO_FACE = 0, 1, 3
#: Over its first this-many seconds, a person's calibration baseline leans on the model's mean face.
CALIBRATION_PRIOR_SECONDS = 1.0
#: Per-face state (smoothing, calibration) of a face not seen for this long is forgotten.
FORGET_AFTER = 5.0


class VideoTruncatedError(VideoError):
    """The video's data ends before its declared length: results up to there are valid."""

    def __init__(self, message, stopped_at):
        super().__init__(message)
        self.stopped_at = stopped_at


@dataclass(frozen=True)
class VideoFrame:
    """One frame's result.

    ``index`` counts frames from the source's start (for cameras and streams, every frame
    delivered, dropped ones included); ``time`` is in seconds (a file's own clock; for cameras
    and streams, since the first frame); ``faces`` maps face id -> :class:`classifiers.FacePrediction`;
    ``span`` is the seconds this analysed frame stands for (the step between analysed frames).
    Live sources add ``latency`` (seconds from the frame's arrival to this result) and
    ``dropped`` (frames dropped so far because the analysis was behind). ``analysed`` is False
    only for frames passed along for drawing (``images=True`` with sampling); they carry the
    last analysed frame's faces. ``image`` is the BGR frame with ``images=True``.
    """

    index: int
    time: float
    faces: dict
    span: float
    analysed: bool = True
    cut: bool = False
    latency: float = None
    dropped: int = 0
    image: np.ndarray = dataclasses.field(default=None, repr=False, compare=False)


# ---- per-face filters: smoothing and calibration ----

def _with_probabilities(prediction, vector, labels):
    probabilities = {c: float(v) for c, v in zip(labels, vector)}
    try:
        valence, arousal = valence_arousal(probabilities)
    except AffectError:
        valence = arousal = None
    return dataclasses.replace(prediction, probabilities=probabilities, label=labels[int(np.argmax(vector))],
                               valence=valence, arousal=arousal)


class Smoother:
    """Exponential moving average of each face's probabilities over its past frames (time constant ``seconds``)."""

    def __init__(self, seconds, labels):
        self.seconds, self.labels = seconds, list(labels)
        self.state = {}   # face id -> (time, vector)

    def __call__(self, faces, time):
        out = {}
        for face_id, p in faces.items():
            vector = np.array([p.probabilities[c] for c in self.labels])
            if face_id in self.state:
                before, previous = self.state[face_id]
                weight = 1.0 - math.exp(-max(time - before, 0.0) / self.seconds)
                vector = previous + weight * (vector - previous)
            self.state[face_id] = (time, vector)
            out[face_id] = _with_probabilities(p, vector, self.labels)
        self.state = {k: v for k, v in self.state.items() if time - v[0] <= FORGET_AFTER}
        return out


def training_mean(model):
    """The mean feature vector of the model's training faces, from its pipeline's StandardScaler
    (placed through a column selector before it, if any). VideoError for a model without one."""
    steps = [step for _, step in getattr(model.pipeline, "steps", [])]
    n = len(model.config.columns()[0])
    columns = np.arange(n)
    for step in steps:
        if hasattr(step, "columns_"):
            columns = step.columns_
        elif hasattr(step, "mean_") and len(step.mean_) == len(columns):
            mean = np.zeros(n, dtype=np.float32)
            mean[columns] = step.mean_
            return mean
        else:
            break
    raise VideoError("--calibrate needs a model whose pipeline standardises its features (a StandardScaler, "
                     "as in logistic regression and SVM models, and the shipped model)")


class Calibration:
    """Per-person running baselines: ``adjuster(face_id)`` gives recognise's ``adjust`` for that face.

    A face's rows become ``x - baseline + reference``, where ``reference`` is the model's mean
    training face and ``baseline`` the mean of the face's frames so far, this one included,
    blended with ``prior`` frames' worth of ``reference`` (so its first frames are not
    flattened onto the reference).
    """

    def __init__(self, model, prior=15.0):
        self.reference = training_mean(model).astype(np.float64)
        self.prior = float(prior)
        self.sums = {}   # face id -> [sum of rows, count]
        self.seen = {}

    def adjuster(self, face_id):
        def adjust(X):
            X = np.asarray(X, dtype=np.float64)
            total = self.sums.setdefault(face_id, [np.zeros_like(self.reference), 0])
            total[0] += X.sum(axis=0)
            total[1] += len(X)
            baseline = (total[0] + self.prior * self.reference) / (total[1] + self.prior)
            return (X - baseline + self.reference).astype(np.float32)
        return adjust

    def forget(self, faces, time):
        for face_id in faces:
            self.seen[face_id] = time
        for face_id in [k for k, t in self.seen.items() if time - t > FORGET_AFTER]:
            self.sums.pop(face_id, None)
            del self.seen[face_id]


# ---- the frames of a source ----

def _sampling(fps, every, rate):
    """Seconds between analysed frames: ``every`` frames, or ``rate`` frames per second."""
    if rate:
        return 1.0 / rate
    return every / fps if fps else None


def _file_plan(info, start, end, every, rate):
    """(first, stop, wanted(index), span) for a file."""
    fps = info.fps or 25.0
    count = info.frame_count
    first = int(math.ceil(start * fps - 1e-6)) if start else 0
    stop = int(math.ceil(end * fps - 1e-6)) if end is not None else (count if count else 2 ** 62)
    if count:
        stop = min(stop, count)
        if first >= count:
            raise VideoError(f"{info.name}: --start {start:g} s is past the end of the video "
                             f"({count / fps:.1f} s)")
    if rate:
        step = fps / rate

        def wanted(index):
            # frame i is analysed when it is the first at or after the next sample time
            k = index - first
            return math.floor(k / step + 1e-9) != math.floor((k - 1) / step + 1e-9) or k == 0
        span = 1.0 / rate if rate < fps else 1.0 / fps
    else:
        def wanted(index):
            return (index - first) % every == 0
        span = every / fps
    return first, stop, wanted, span


def analyse_video(source, *, model=None, every=1, fps=None, start=0.0, end=None, detector=None, upsample=None,
                  max_faces=None, smooth=0.0, calibrate=False, realtime=False, images=False, detect_every=0.5,
                  info=None, timeout=STREAM_TIMEOUT, age_gender=False, mirror=True):
    """Yield a :class:`VideoFrame` per analysed frame of ``source`` (file path, camera index or URL).

    ``every=N`` analyses every Nth frame, ``fps=F`` F frames per second of video; ``start`` and
    ``end`` (seconds) bound the range (for cameras and streams, ``end`` is how long to run).
    ``detector``, ``upsample``, ``max_faces``, ``age_gender`` (apparent age and gender on
    every face, per frame, never smoothed or calibrated) and ``mirror`` are
    :func:`classifiers.recognise`'s; ``smooth`` (seconds) and ``calibrate`` are described in the
    module docstring. ``realtime=True``
    reads a file at its own frame rate as if it were a camera (frames are dropped when the
    analysis falls behind). ``images=True`` puts each frame's BGR pixels on its VideoFrame and,
    with sampling, also yields the frames in between (``analysed=False``) for drawing.
    ``info`` receives the source's :class:`facial_expressions.video_io.SourceInfo` (a list to
    append to), before the first frame. ``timeout``: seconds a stream may take to connect or to
    deliver a frame.

    Raises VideoError when the source cannot be opened or yields no frame at all, and
    :class:`VideoTruncatedError` after the last good frame of a file whose data ends early.
    """
    if every < 1:
        raise VideoError("--every must be at least 1")
    if fps is not None and fps <= 0:
        raise VideoError("--fps must be above 0")
    if end is not None and end <= start:
        raise VideoError(f"--end ({end:g} s) must come after --start ({start:g} s)")
    model = model if hasattr(model, "predict_proba") else load_model(model or DEFAULT_MODEL)
    calibration = Calibration(model, prior=1.0) if calibrate else None   # prior set below, once fps is known
    cap, source_info = open_source(source, timeout)
    if info is not None:
        info.append(source_info)
    nominal = source_info.fps or 30.0
    if calibration is not None:
        calibration.prior = CALIBRATION_PRIOR_SECONDS / (_sampling(nominal, every, fps) or 1.0 / nominal)
    tracker = FaceTracker(model, detector=detector, upsample=upsample, max_faces=max_faces,
                          detect_every=detect_every, adjust=calibration.adjuster if calibration else None,
                          age_gender=age_gender, mirror=mirror)
    smoother = Smoother(smooth, model.labels) if smooth else None
    if source_info.live or realtime:
        _warm_up(cap, model, detector, upsample, age_gender)

    def analyse(gray, t, cut):
        if cut:
            tracker.cut()
        faces = tracker.update(gray, t)
        if smoother is not None:
            faces = smoother(faces, t)
        if calibration is not None:
            calibration.forget(faces, t)
        return faces

    if source_info.live or realtime:
        yield from _live(cap, source_info, analyse, start, end, every, fps, images, realtime, timeout)
    else:
        yield from _file(cap, source_info, analyse, start, end, every, fps, images)


def _warm_up(cap, model, detector, upsample, age_gender=False):
    """Run the analysis once on the source's first frame, untimed, so that loading dlib's models and
    the first use of every feature step (about a second) do not fall on a live run's first result.
    (A file played in real time is rewound by :class:`LiveFrames`; a camera's frame is just skipped.)"""
    from classifiers import recognise

    ok, frame = cap.read()
    if not ok:
        return
    gray = to_gray(frame)
    h, w = gray.shape[:2]
    recognise(gray, model=model, detector=detector, upsample=upsample, age_gender=age_gender)
    recognise(gray, model=model, boxes=[(w // 4, h // 4, w // 2, h // 2)], age_gender=age_gender)


def _file(cap, info, analyse, start, end, every, rate, images):
    try:
        first, stop, wanted, span = _file_plan(info, start, end, every, rate)
    except VideoError:
        cap.release()
        raise
    fps = info.fps or 25.0
    frames = FileFrames(cap, first, stop, wanted, CutDetector(), images=images)
    faces, analysed, last, cut = {}, 0, None, False
    for index, bgr, gray, cut_here in frames:
        t = index / fps
        cut = cut or cut_here   # a cut on a frame drawn but not analysed counts on the next analysed one
        if gray is not None:
            faces = analyse(gray, t, cut)
            analysed += 1
            last = index
            yield VideoFrame(index=index, time=t, faces=faces, span=span, cut=cut, image=bgr)
            cut = False
        elif images:   # drawn with the last analysed frame's faces, none after a cut
            yield VideoFrame(index=index, time=t, faces={} if cut else faces, span=span, analysed=False, image=bgr)
    if frames.stopped_at is not None and (info.frame_count or 0) > frames.stopped_at:
        if analysed == 0:
            raise VideoError(f"{info.name}: no frame could be decoded (from frame {frames.stopped_at} of "
                             f"{info.frame_count}: damaged or truncated video)")
        raise VideoTruncatedError(f"{info.name}: the video data stops at frame {frames.stopped_at} of "
                                  f"{info.frame_count} (truncated or damaged); results up to frame {last} "
                                  "are kept", frames.stopped_at)
    if analysed == 0:
        raise VideoError(f"{info.name}: the video holds no frames" + (" in the range asked for" if start or end
                                                                        else ""))


def _live(cap, info, analyse, start, end, every, rate, images, realtime, timeout):
    pace = (info.fps or 30.0) if realtime and not info.live else None
    first = int(round(start * info.fps)) if pace and start else 0
    frames = LiveFrames(cap, CutDetector(), pace=pace, first=first, timeout=timeout)
    step = _sampling(info.fps or 30.0, every, rate) if (rate or every > 1) else 0.0
    t0, due, previous, analysed, cut = None, None, None, 0, False
    try:
        while True:
            got = frames.next()
            if got is None:
                break
            index, arrival, bgr, dropped, cut_here = got
            cut = cut or cut_here
            if t0 is None:
                t0 = arrival
            t = index / info.fps if pace else arrival - t0
            if end is not None and t >= end:
                break
            if t < start or (due is not None and t < due - 1e-9):
                continue
            due = t + step if step else None
            faces = analyse(to_gray(bgr), t, cut)
            span = (t - previous) if previous is not None else (step or 1.0 / (info.fps or 30.0))
            previous = t
            analysed += 1
            yield VideoFrame(index=index, time=t, faces=faces, span=min(span, 1.0), cut=cut,
                             latency=time.monotonic() - arrival, dropped=dropped, image=bgr if images else None)
            cut = False
    finally:
        frames.close()
    if analysed == 0:
        what = f"camera {info.name}" if info.kind == "camera" else info.name
        raise VideoError(f"{what}: no frame arrived within {frames.timeout:g} s" if frames.read == 0 else
                         f"{what}: no frame in the range asked for")


# ---- one run -> its output folder ----

@dataclass
class RunResult:
    """What :func:`analyse_to_folder` did: counts, timing and how it ended (``stopped``: None or why)."""

    folder: str
    source: str
    frames: int = 0
    rows: int = 0
    faces: int = 0
    seconds: float = 0.0
    stopped: str = None
    interrupted: bool = False
    live: bool = False
    dropped: int = 0
    latency: "LatencyStats" = None
    stale: tuple = ()    # outputs of an earlier run in the folder that this run did not rewrite

    @property
    def frames_per_second(self):
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self):
        speed = f"{self.frames} frames analysed in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)"
        text = f"{self.folder}: {speed}, {self.faces} face id{'s' if self.faces != 1 else ''}, {self.rows} rows"
        if self.live:
            text += f", {self.dropped} frames dropped"
            if self.latency and self.latency.count:
                text += f", latency median {self.latency.percentile(50):.0f} ms"
        if self.stale:
            text += f"; left from an earlier run, not rewritten: {', '.join(self.stale)}"
        return text


class LatencyStats:
    """Latencies in a histogram of 1 ms bins (constant memory however long a live run lasts)."""

    def __init__(self, limit_ms=5000):
        self.counts = np.zeros(limit_ms + 1, dtype=np.int64)
        self.count, self.max_ms = 0, 0.0

    def add(self, seconds):
        ms = 1000.0 * seconds
        self.counts[min(int(ms), len(self.counts) - 1)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q):
        """The ``q``th percentile in ms (to the upper edge of its 1 ms bin)."""
        return float(np.searchsorted(np.cumsum(self.counts), q / 100.0 * self.count) + 1)

    def to_dict(self):
        if not self.count:
            return None
        return {"frames": self.count, "median": self.percentile(50), "p95": self.percentile(95),
                "max": round(self.max_ms, 1)}


def _status(frame):
    return " ".join(f"{i}:{p.label} {p.confidence:.0%}" for i, p in frame.faces.items()) or "no face"


def analyse_to_folder(source, out_dir, *, model=None, fmt="csv", landmarks=False, annotate=False, catalogue=None,
                      mode="match", n_tracks=10, progress=False, on_frame=None, **options):
    """Analyse ``source`` (see :func:`analyse_video`, which takes ``options``) into ``out_dir``.

    ``on_frame(frame, info)``, when given, is called after each analysed :class:`VideoFrame` with the
    source's :class:`facial_expressions.video_io.SourceInfo` (for a progress display elsewhere than
    the terminal, such as the web app's).

    Returns a :class:`RunResult`. Every output is streamed or built in a hidden temporary file
    and renamed at the end; Ctrl-C and a truncated file still write what was analysed
    (``RunResult.stopped`` says where it stopped), then re-raise VideoTruncatedError or
    KeyboardInterrupt for a file (a live run ends normally on Ctrl-C).
    """
    if fmt == "parquet":
        parquet_module()   # say so before any work
    model = model if hasattr(model, "predict_proba") else load_model(model or DEFAULT_MODEL)
    out_dir = os.fspath(out_dir)
    names = output_names(fmt)
    path = {k: os.path.join(out_dir, v) for k, v in names.items()}
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    writes = {names["timeline"], names["summary"], names["plot"]} | ({names["annotated"]} if annotate else set())
    stale = tuple(n for n in existing_outputs(out_dir) if n not in writes)  # kept, but named in the result
    try:
        with output_lock(path["summary"], "video analysis"):
            result = _run(source, out_dir, path, model, fmt, landmarks, annotate, catalogue, mode, n_tracks,
                          progress, options, on_frame)
            result.stale = stale
            return result
    except FacialExpressionError:
        if created:   # nothing was written: leave no empty folder behind
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
        raise


def _run(source, out_dir, path, model, fmt, landmarks, annotate, catalogue, mode, n_tracks, progress, options,
         on_frame=None):
    labels = list(model.labels)
    info = []
    frames = analyse_video(source, model=model, images=annotate, info=info, **options)
    result = RunResult(folder=out_dir, source=str(source), latency=LatencyStats())
    stats, series, cuts = {}, {}, []
    age_gender = bool(options.get("age_gender"))
    timeline = TimelineWriter(path["timeline"], labels, fmt, landmarks, age_gender)
    video, bar, failure = None, None, None
    started = time.perf_counter()
    try:
        try:
            for frame in frames:
                source_info = info[0]
                result.live = source_info.live or bool(options.get("realtime"))
                if bar is None and progress:
                    bar = _progress_bar(source_info, options)
                if annotate and video is None:
                    from common.files import atomic_path

                    video_file = atomic_path(path["annotated"])
                    video = (video_file, AnnotatedVideo(video_file.__enter__(), source_info.width,
                                                         source_info.height, source_info.fps or 30.0))
                if video is not None and frame.image is not None:
                    _write_annotated(video[1], frame)
                if not frame.analysed:
                    continue
                result.frames += 1
                if frame.cut:
                    cuts.append(round(frame.time, 3))
                timeline.add(frame)
                for face_id, p in frame.faces.items():
                    if face_id not in stats:
                        stats[face_id], series[face_id] = FaceStats(labels, age_gender), Series()
                    stats[face_id].add(frame.time, frame.span, p)
                    series[face_id].add(frame.time, [p.probabilities[c] for c in labels])
                if frame.latency is not None:
                    result.latency.add(frame.latency)
                    result.dropped = frame.dropped
                if bar is not None:
                    bar.update(1 if result.live else max(0, frame.index + 1 - bar.first - bar.n))
                    if result.live:
                        bar.set_postfix_str(_status(frame), refresh=False)
                if on_frame is not None:
                    on_frame(frame, source_info)
        except VideoTruncatedError as exc:
            result.stopped, failure = one_line(exc), exc
        except KeyboardInterrupt as exc:
            last = f" after frame {frame.index}" if result.frames else ""
            result.stopped, result.interrupted = f"interrupted (Ctrl-C){last}", True
            failure = exc
        finally:
            frames.close()
        if bar is not None:
            bar.close()
        result.seconds = time.perf_counter() - started
        result.rows, result.faces = timeline.rows, len(stats)
        summary = _summary(info[0] if info else None, result, stats, cuts, model, options, catalogue, mode, n_tracks)
        if video is not None:
            video[1].close()
            video[0].__exit__(None, None, None)
            video = None
        timeline.commit()
        write_json(path["summary"], summary)
        plot_timeline(series, stats, labels, path["plot"], f"{os.path.basename(str(source))}: emotion "
                      "probabilities per face")
    except BaseException:
        timeline.discard()
        if video is not None:
            video[1].abort()
            video[0].__exit__(RuntimeError, RuntimeError("aborted"), None)
        raise
    if failure is not None and not (result.interrupted and result.live):
        raise failure
    return result


def _progress_bar(info, options):
    from tqdm import tqdm

    if info.live or options.get("realtime"):
        bar = tqdm(unit="frame", desc=f"video {os.path.basename(info.name)}", file=sys.stderr, leave=False,
                   dynamic_ncols=True)
        bar.first = 0
        return bar
    fps = info.fps or 25.0
    first = int(math.ceil((options.get("start") or 0) * fps - 1e-6))
    end = options.get("end")
    stop = min(info.frame_count or 0, int(math.ceil(end * fps))) if end is not None else info.frame_count
    bar = tqdm(total=(stop - first) if stop else None, unit="frame", file=sys.stderr, leave=False,
               desc=f"video {os.path.basename(info.name)}", dynamic_ncols=True)
    bar.first = first
    return bar


def _write_annotated(video, frame):
    """Draw one frame; for a live source, repeat it over the frames dropped before it so the
    annotated video keeps the source's clock."""
    image = draw_faces(frame.image.copy(), frame.faces)
    repeat = 1
    if frame.latency is not None:
        if video.next_index is not None:
            repeat = max(1, frame.index + 1 - video.next_index)
        video.next_index = frame.index + 1
    for _ in range(min(repeat, 300)):
        video.write(image)


def _summary(info, result, stats, cuts, model, options, catalogue, mode, n_tracks):
    faces = {}
    for face_id in sorted(stats):
        entry = stats[face_id].to_dict()
        if catalogue is not None and "mean_valence" in entry:
            from classifiers.recommend import recommend

            mood = {"label": entry["dominant"], "valence": entry["mean_valence"], "arousal": entry["mean_arousal"],
                    "probabilities": stats[face_id].mean_probabilities()}
            entry["recommendation"] = recommend(mood, catalogue, n=n_tracks, mode=mode).to_dict()
        faces[str(face_id)] = entry
    out = {
        "input": result.source,
        "source": dataclasses.asdict(info) if info else None,
        "model": {"path": model.path, "labels": list(model.labels)},
        **({"age_gender_models": _age_gender_description()} if options.get("age_gender") else {}),
        "options": {k: v for k, v in options.items()},
        "frames_analysed": result.frames,
        "stopped": result.stopped,
        "seconds": round(result.seconds, 3),
        "frames_per_second": round(result.frames_per_second, 2),
        "cuts_s": cuts,
        "faces": faces,
    }
    if result.live:
        out["live"] = {"frames_dropped": result.dropped, "latency_ms": result.latency.to_dict()}
    return out


def _age_gender_description():
    """Which age and gender models gave the summary's apparent ages and genders, and their terms."""
    from classifiers.api import age_gender_models

    return {m.target: {"path": m.path, "terms": m.meta.get("training_data", {}).get("terms")}
            for m in age_gender_models()}


# ---- many videos ----

def list_videos(folder):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(VIDEO_EXTENSIONS) and not n.startswith("."))
    if not names:
        raise VideoError(f"{folder}: the folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
    stems = [os.path.splitext(n)[0] for n in names]
    return [(os.path.join(folder, n), s if stems.count(s) == 1 else n) for n, s in zip(names, stems)]


def _one_video(path, out_dir, model_path, options):
    """Worker side of a folder run: (path, RunResult line or None, error line or None, exit code)."""
    import cv2

    cv2.setNumThreads(1)
    try:
        result = analyse_to_folder(path, out_dir, model=load_model(model_path), **options)
    except VideoTruncatedError as exc:
        return path, None, one_line(exc), EXIT_ERROR
    except FacialExpressionError as exc:
        return path, None, one_line(exc), EXIT_ERROR
    except OSError as exc:
        return path, None, f"{path}: {exc.strerror or one_line(exc)}", EXIT_ERROR
    return path, result.line(), None, EXIT_OK if result.faces else EXIT_NO_FACE


def analyse_folder(folder, out_dir, *, model=None, jobs=-1, backend="local", scheduler=None, **options):
    """Every video directly in ``folder`` -> ``out_dir/<name>/``, one process per video (``jobs``), on this
    machine or on a Dask cluster (``backend="dask"``, see :mod:`common.parallel`). Yields
    ``(path, summary line or None, error line or None, exit code)`` as videos finish."""
    from joblib import Parallel, delayed

    from common.parallel import compute_backend

    videos = list_videos(folder)
    model_path = (model if hasattr(model, "predict_proba") else load_model(model or DEFAULT_MODEL)).path
    with compute_backend(backend, scheduler):
        if backend == "dask":
            n_jobs = -1
            videos = [(os.path.abspath(p), name) for p, name in videos]
            out_dir = os.path.abspath(out_dir)
        else:
            n_jobs = min(jobs if jobs > 0 else os.cpu_count() or 1, len(videos))
        tasks = (delayed(_one_video)(p, os.path.join(out_dir, name), model_path, options) for p, name in videos)
        if n_jobs == 1:
            yield from (fn(*a, **k) for fn, a, k in tasks)
        else:
            yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(tasks)


# ---- command line ----

def _seconds(ctx, param, value):
    if value is None:
        return None
    text = str(value).strip()
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time: give seconds (12.5) or minutes:seconds (1:30)") from None
    # every field a finite number >= 0, and seconds (and minutes after hours) under 60: 1:70 is not a time
    if (len(parts) > 3 or not all(math.isfinite(p) and p >= 0 for p in parts)
            or any(p >= 60 for p in parts[1:])):
        raise click.BadParameter(f"{text!r} is not a time: give seconds (12.5) or minutes:seconds (1:30)")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def _time_option(name, help):
    return click.option(name, type=str, default=None, callback=_seconds, metavar="TIME",
                        help=f"{help} Seconds (12.5) or minutes:seconds (1:30).")


@command("video")
@click.argument("source", metavar="INPUT")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (for a folder INPUT: one sub-folder per video).")
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Model file (default: the shipped model).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Analyse every Nth frame.")
@click.option("--fps", "rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Analyse this many frames per second of video instead (e.g. 5).")
@_time_option("--start", "Start at this time.")
@_time_option("--end", "Stop at this time; for a camera or stream: how long to run.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
              help="Timeline file format (parquet needs pyarrow).")
@click.option("--landmarks", is_flag=True, help="Add the 68 landmarks to the timeline (x0, y0, ..., x67, y67).")
@click.option("--annotate", is_flag=True,
              help="Write annotated.mp4: the video with boxes, face ids and labels (H.264, plays in browsers).")
@click.option("--smooth", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Smooth each face's probabilities over its past frames (exponential, this time constant); "
                   "0: off. A shorter expression shows weaker and later.")
@click.option("--calibrate", is_flag=True,
              help="Read each face relative to that person's own running baseline (past frames only).")
@click.option("--detect-every", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="SECONDS",
              help="Run the face detector on the whole frame this often (faces are tracked in between).")
@mirror_option
@age_gender_option("Adds the columns age, gender and p_female to the timeline and, per face in summary.json, the "
                   "median apparent age over the clip and each apparent gender's share of the time.")
@click.option("--realtime", is_flag=True,
              help="Read a file at its own frame rate as if it were a camera (frames are dropped when the "
                   "analysis falls behind; latency is reported).")
@recommend_options("per face, tracks for its mood over the clip (its mean probabilities), in summary.json.")
@detector_options(DETECTORS)
@jobs_option(help="For a folder INPUT: videos analysed at once, one process each (-1: every core).")
@backend_options(help="For a folder INPUT: run the videos on this machine's cores or on a Dask cluster.")
@quiet_option
def main(source, out_dir, model_path, every, rate, start, end, fmt, landmarks, annotate, smooth, calibrate,
         detect_every, mirror, age_gender, realtime, catalogue_path, mode, n_tracks, detector, upsample, jobs, backend, scheduler, quiet):
    """Per-face emotion timeline of a video file, a folder of videos, a camera or a stream.

    INPUT is a video file (mp4, avi, mov, mkv, webm, ...), a folder of them, a camera index
    (0) or a stream URL (rtsp://..., http://...). OUT_DIR receives timeline.csv (one row per
    face per analysed frame), summary.json (per face: when seen, for how long, each emotion's
    share of time, mean probability and strongest moment; with --age-gender its median
    apparent age and apparent gender), timeline.png and, with
    --annotate, annotated.mp4. Faces keep their id while they stay in view; after a cut they
    get new ones. Ctrl-C ends a camera or stream run and writes everything up to then.

    \b
    Exit codes:
      0  done
      3  no face in any analysed frame (the outputs are still written)
      1  the input could not be opened or read (one line on stderr; a video that
         stops early keeps the rows up to where it stopped)
    \b
    Examples:
      facial-expressions video clip.mp4 -o out/clip --annotate
      facial-expressions video clip.mp4 -o out/clip --fps 5 --start 1:00 --end 2:00
      facial-expressions video clip.mp4 -o out/clip --age-gender
      facial-expressions video 0 -o out/webcam --smooth 0.5       (Ctrl-C to stop)
      facial-expressions video videos/ -o out/all --jobs 2
    """
    utf8_safe_output()
    if rate is not None and every != 1:
        raise click.UsageError("choose one of --every and --fps")
    if end is not None and end <= (start or 0.0):
        raise click.UsageError(f"--end ({end:g} s) must come after --start ({start or 0.0:g} s)")
    check_recommend_options(catalogue_path)
    if fmt == "parquet":
        parquet_module()
    model = load_model(model_path or DEFAULT_MODEL)
    catalogue = None
    if catalogue_path:
        from classifiers.recommend import load_catalogue

        catalogue = load_catalogue(catalogue_path)
    if calibrate:
        training_mean(model)
    if age_gender:   # a missing or damaged age or gender model is one error line before any work
        from classifiers.api import age_gender_models

        age_gender_models()
    options = dict(every=every, fps=rate, start=start or 0.0, end=end, detector=detector, upsample=upsample,
                   smooth=smooth, calibrate=calibrate, realtime=realtime, detect_every=detect_every,
                   age_gender=age_gender, mirror=mirror)
    outputs = dict(fmt=fmt, landmarks=landmarks, annotate=annotate, catalogue=catalogue, mode=mode,
                   n_tracks=n_tracks)
    if os.path.isdir(source):
        sys.exit(_main_folder(source, out_dir, model, jobs, backend, scheduler, quiet, {**options, **outputs}))
    try:
        result = analyse_to_folder(source, out_dir, model=model, progress=not quiet, **outputs, **options)
    except VideoTruncatedError as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo(f"interrupted: the outputs in {out_dir} cover the frames analysed until then", err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(result.line())
    sys.exit(EXIT_OK if result.faces else EXIT_NO_FACE)


def _main_folder(folder, out_dir, model, jobs, backend, scheduler, quiet, options):
    from tqdm import tqdm

    videos = list_videos(folder)
    worst = EXIT_OK
    bar = tqdm(total=len(videos), unit="video", desc="video", file=sys.stderr, disable=quiet, leave=False)
    for path, line, error, code in analyse_folder(folder, out_dir, model=model, jobs=jobs, backend=backend,
                                                  scheduler=scheduler, **options):
        bar.update()
        if error:
            click.echo(f"error: {error}", err=True)
        else:
            click.echo(line)
        worst = max(worst, code, key=lambda c: (c == EXIT_ERROR, c))
    bar.close()
    return worst


if __name__ == "__main__":
    # run the imported module's main, so worker processes find its functions by name
    from facial_expressions.video import main as _main

    _main()
