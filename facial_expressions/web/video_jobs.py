"""Video jobs: one process per uploaded video, a bounded number at a time, results kept for a while.

* **Bounded**: at most ``limit`` jobs are uploading or running at once; one more is refused at
  once with :class:`.errors.Busy` (503, ``Retry-After``), before its body is read.
* **Apart from the server**: each job runs :mod:`.video_worker` in its own process (forked from
  the server's fork server, :mod:`.processes`), so the server keeps answering (photos, progress)
  while a video is analysed, and a job over its time budget is killed.
* **Private folders**: every job gets a folder named by its id (128 random bits, hex) under a
  folder of mode 0700 made when the server starts and removed when it stops. A request names a
  job only by that id, checked against ``JOB_ID`` before any path is built, and a file only by
  one of ``OUTPUTS``: no request can reach another path.
* **Cleaned up**: the upload is deleted as soon as its analysis ends; a finished job's folder
  and record go ``ttl`` seconds later (a background sweep), and beyond ``MAX_KEPT`` finished
  jobs the oldest go first.
"""

import contextlib
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field

from . import processes
from .errors import ApiError, Busy

log = logging.getLogger("facial_expressions.web")

JOB_ID = re.compile(r"[0-9a-f]{32}")
#: The files a finished job serves, with their content types.
OUTPUTS = {"annotated.mp4": "video/mp4", "timeline.png": "image/png", "timeline.csv": "text/csv; charset=utf-8",
           "summary.json": "application/json"}
#: Finished jobs kept at most (the oldest are removed first, whatever their age).
MAX_KEPT = 200
@dataclass
class Job:
    id: str
    folder: str
    name: str
    options: dict
    created: float = field(default_factory=time.time)
    status: str = "uploading"       # uploading -> running -> done | failed
    progress: float | None = 0.0
    frames: int = 0
    error: dict | None = None
    stopped: str | None = None
    summary: dict | None = None
    timeline: dict | None = None
    finished: float | None = None

    @property
    def out_dir(self):
        return os.path.join(self.folder, "out")

    def fail(self, status, message):
        self.error = {"status": status, "detail": message}
        self.finished = time.time()
        self.status = "failed"


class VideoJobs:
    def __init__(self, limit=1, time_budget=900.0, ttl=3600.0, model_path=None, catalogue_path=None, parent=None):
        self.limit, self.time_budget, self.ttl = int(limit), float(time_budget), float(ttl)
        self.model_path, self.catalogue_path = model_path, catalogue_path
        self.folder = tempfile.mkdtemp(prefix="facial-expressions-videos-", dir=parent)
        self.jobs = {}
        self.active = 0
        self.closed = False
        self._lock = threading.Lock()
        self._processes = {}
        self._context = processes.context()
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_forever, daemon=True, name="fer-video-sweep")
        self._sweeper.start()

    # ---- admission ----

    def reserve(self):
        """Take a place for one job (Busy when all ``limit`` are taken); give it back with :meth:`release`."""
        with self._lock:
            if self.closed:
                raise Busy("the server is shutting down")
            if self.active >= self.limit:
                raise Busy(f"{self.active} video analysis{'es' if self.active > 1 else ''} already running "
                           f"(this server runs {self.limit} at a time); try again when it is done", retry_after=10)
            self.active += 1

    def release(self):
        with self._lock:
            self.active -= 1

    def create(self, name, options):
        """A new job record and its private folder (status ``uploading``)."""
        job_id = secrets.token_hex(16)
        folder = os.path.join(self.folder, job_id)
        os.mkdir(folder, 0o700)
        job = Job(id=job_id, folder=folder, name=name, options=options)
        with self._lock:
            self.jobs[job_id] = job
        return job

    def drop(self, job):
        """Forget a job whose upload was refused, and its folder."""
        with self._lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.folder, ignore_errors=True)

    # ---- running ----

    def start(self, job, source, catalogue=False, mode="match", n_tracks=10):
        """Start the job's process on ``source`` (a file in the job's folder), with music from the
        server's catalogue when ``catalogue``; the place taken by :meth:`reserve` is given back when
        the job ends."""
        from .video_worker import run_job

        parent, child = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_job, name="fer-video",
            args=(child, source, job.out_dir, job.name, self.model_path, job.options,
                  self.catalogue_path if catalogue else None, mode,
                  n_tracks), daemon=True)
        try:
            process.start()
        except (EOFError, OSError) as exc:   # the fork server could not start, or went away
            parent.close()
            raise ApiError(503, f"the analysis process could not be started ({type(exc).__name__}); try again",
                           headers={"Retry-After": "10"}) from None
        finally:
            child.close()
        job.status = "running"
        with self._lock:
            self._processes[job.id] = process
        threading.Thread(target=self._watch, args=(job, process, parent, source), daemon=True,
                         name="fer-video-watch").start()

    def _watch(self, job, process, conn, source):
        """Follow one job's process: progress as it comes, then its end, published only once the
        process is gone, its upload deleted and its place free (so a client told "done" can upload
        the next video at once)."""
        deadline = time.monotonic() + self.time_budget
        outcome = (500, "the analysis ended without an answer")   # (status, message) of a failure, or a done tuple
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    process.kill()
                    outcome = (503, f"the analysis took longer than this server's time budget for a video "
                                    f"({self.time_budget:g} s): try a shorter range (start, end) or every Nth frame")
                    break
                try:
                    if not conn.poll(min(left, 0.5)):
                        if not process.is_alive() and not conn.poll(0):
                            raise EOFError
                        continue
                    message = conn.recv()
                except (EOFError, OSError):
                    if self.closed:
                        outcome = (503, "the server stopped during the analysis")
                    else:
                        log.error("video job %s: its process died (exit code %s)", job.id, process.exitcode)
                        outcome = (500, "the analysis process died on this video")
                    break
                kind = message[0]
                if kind == "progress":
                    job.progress, job.frames = message[1], message[2]
                    continue
                if kind == "done":
                    outcome = message
                elif kind == "refused":
                    outcome = (message[1], message[2])
                else:
                    log.error("video job %s failed: %s", job.id, message[1])
                    outcome = (500, "the analysis failed on this video (a bug: the server's log says more)")
                break
        finally:
            conn.close()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
            with contextlib.suppress(FileNotFoundError):
                os.remove(source)
            with self._lock:
                self._processes.pop(job.id, None)
            self.release()
            if outcome[0] == "done":
                job.summary, job.timeline, job.stopped = outcome[1], outcome[2], outcome[3]
                job.progress, job.frames = 1.0, job.summary.get("frames_analysed", job.frames)
                job.finished = time.time()
                job.status = "done"
            else:
                job.fail(*outcome)

    # ---- reading ----

    def get(self, job_id):
        """The job with this id; 404 for anything else (ids that are not 32 hex digits included)."""
        job = self.jobs.get(job_id) if isinstance(job_id, str) and JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise ApiError(404, "no such video job (its results may have expired)")
        return job

    def output(self, job_id, name):
        """(path, content type) of one of a finished job's ``OUTPUTS``; 404 otherwise."""
        job = self.get(job_id)
        if name not in OUTPUTS:
            raise ApiError(404, f"a video job has no file {name!r} (it has {', '.join(OUTPUTS)})")
        if job.status != "done":
            raise ApiError(404, f"the video job is {job.status}: it has no {name}")
        path = os.path.realpath(os.path.join(job.out_dir, name))
        if not path.startswith(os.path.realpath(self.folder) + os.sep) or not os.path.isfile(path):
            raise ApiError(404, f"this video job has no {name}")
        return path, OUTPUTS[name]

    # ---- cleaning up ----

    def sweep(self, now=None):
        """Remove finished jobs older than ``ttl`` (and beyond ``MAX_KEPT``), and stray folders."""
        now = time.time() if now is None else now
        with self._lock:
            finished = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished)
            old = [j for j in finished if now - j.finished > self.ttl]
            old += [j for j in finished[:max(0, len(finished) - MAX_KEPT)] if j not in old]
            for job in old:
                del self.jobs[job.id]
            known = set(self.jobs)
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name not in known:
                    with contextlib.suppress(FileNotFoundError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > self.ttl:
                            shutil.rmtree(entry.path, ignore_errors=True)

    def _sweep_forever(self):
        interval = max(0.5, min(60.0, self.ttl / 4))
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - never let the sweeper die
                log.exception("sweeping video jobs")

    def stats(self):
        with self._lock:
            return {"video_jobs_running": self.active, "video_jobs_limit": self.limit,
                    "video_jobs_kept": len(self.jobs)}

    def close(self):
        """Stop every running job and remove every job's folder."""
        self.closed = True
        self._stop.set()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            process.kill()
        for process in processes:
            process.join(5)
        shutil.rmtree(self.folder, ignore_errors=True)

