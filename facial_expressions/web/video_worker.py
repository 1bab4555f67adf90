"""What runs inside one video job's process: :func:`facial_expressions.video.analyse_to_folder` on the
uploaded file, with progress, the summary and a compact timeline sent back to the server.

The server (:mod:`.video_jobs`) starts one such process per job (:mod:`.processes`), so the analysis
never holds the server's event loop or its photo workers, and a job over its time budget can
simply be killed. Messages on the pipe are plain tuples:

``("progress", fraction or None, frames analysed)``   at most every ``PROGRESS_EVERY`` seconds
``("done", summary, timeline, stopped)``              outputs written; ``stopped``: why a damaged
                                                     file ended early (its rows up to there are kept)
``("refused", status, message)``                      the library refused the file (not a video: 415)
``("failed", message)``                              anything else (a bug): the server logs it
"""

import csv
import json
import os
import signal
import time

#: Seconds between progress messages.
PROGRESS_EVERY = 0.25
#: Points per face in the timeline the page draws (the CSV keeps every row).
TIMELINE_POINTS = 600


def fraction_done(frame, info, start=0.0, end=None):
    """How much of the range asked for is analysed after ``frame`` (0..1), None for an unknown length."""
    if not info.frame_count or not info.fps:
        return None
    stop = info.frame_count / info.fps
    if end is not None:
        stop = min(stop, end)
    if stop <= start:
        return None
    return max(0.0, min(1.0, (frame.time + frame.span - start) / (stop - start)))


def compact_timeline(path, labels, points=TIMELINE_POINTS):
    """timeline.csv -> {"labels", "faces": {id: {"time": [...], "probabilities": [[p per label], ...]}}},
    each face thinned to at most ``points`` rows (every k-th) for the page's chart."""
    faces = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            entry = faces.setdefault(row["face_id"], {"time": [], "probabilities": []})
            entry["time"].append(round(float(row["time_s"]), 3))
            entry["probabilities"].append([round(float(row[f"p_{c}"]), 4) for c in labels])
    for entry in faces.values():
        step = -(-len(entry["time"]) // points)
        if step > 1:
            entry["time"], entry["probabilities"] = entry["time"][::step], entry["probabilities"][::step]
    return {"labels": list(labels), "faces": faces}


def public_summary(path, name):
    """summary.json rewritten without the server's paths (the upload's name for its file, the model's
    file name only) -> its contents."""
    from common.files import atomic_path

    with open(path, encoding="utf-8") as fh:
        summary = json.load(fh)
    summary["input"] = name
    if isinstance(summary.get("source"), dict):
        summary["source"]["name"] = name
    if isinstance(summary.get("model"), dict) and summary["model"].get("path"):
        summary["model"]["path"] = os.path.basename(summary["model"]["path"])
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
        fh.write("\n")
    return summary


def _message(exc, source, name):
    from common.cli import one_line

    return one_line(exc).replace(os.fspath(source), name)


def run_job(conn, source, out_dir, name, model_path, options, catalogue_path=None, mode="match", n_tracks=10):
    """Entry point of a video job's process (see the module docstring for what it sends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C belongs to the server, which ends its jobs
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    try:
        import cv2
        from threadpoolctl import threadpool_limits

        from classifiers import load_model
        from common.errors import FacialExpressionError, NotAnImageError, VideoError
        from facial_expressions.video import VideoTruncatedError, analyse_to_folder

        cv2.setNumThreads(1)
        threadpool_limits(1)
    except Exception as exc:  # noqa: BLE001 - reported to the server
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    last = [0.0]
    counted = [0]

    def on_frame(frame, info):
        counted[0] += 1
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            conn.send(("progress", fraction_done(frame, info, options.get("start") or 0.0, options.get("end")),
                       counted[0]))

    try:
        model = load_model(model_path)
        catalogue = None
        if catalogue_path:
            from classifiers.recommend import load_catalogue

            catalogue = load_catalogue(catalogue_path)
        stopped = None
        try:
            analyse_to_folder(source, out_dir, model=model, annotate=True, catalogue=catalogue, mode=mode,
                              n_tracks=n_tracks, on_frame=on_frame, **options)
        except VideoTruncatedError as exc:   # the outputs hold the frames before the break
            stopped = _message(exc, source, name)
        summary = public_summary(os.path.join(out_dir, "summary.json"), name)
        timeline = compact_timeline(os.path.join(out_dir, "timeline.csv"), model.labels)
        conn.send(("done", summary, timeline, stopped))
    except VideoError as exc:
        unreadable = "not a video file" in str(exc)
        conn.send(("refused", 415 if unreadable else 400, _message(exc, source, name)))
    except NotAnImageError as exc:
        conn.send(("refused", 415, _message(exc, source, name)))
    except FacialExpressionError as exc:
        conn.send(("refused", 400, _message(exc, source, name)))
    except Exception as exc:  # noqa: BLE001 - a bug: the server answers with a failed job and logs it
        conn.send(("failed", f"{type(exc).__name__}: {_message(exc, source, name)}"))
