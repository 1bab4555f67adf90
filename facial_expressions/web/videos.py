"""The video endpoints: ``POST /api/videos``, ``GET /api/videos/{id}``, ``GET /api/videos/{id}/{file}``.

A video is uploaded as multipart ``file`` with its options in the query string; the answer
(202) is a job id at once, and the analysis runs in a process of its own
(:mod:`.video_jobs`) through :func:`facial_expressions.video.analyse_to_folder`, the same function
as ``facial-expressions video --annotate``. ``GET /api/videos/{id}`` gives the progress, then
the summary (``summary.json``), the timeline (each face's probabilities over time, thinned for
drawing) and links to ``timeline.csv``, ``timeline.png`` and ``annotated.mp4``, which the app
serves from the job's own folder only.
"""

import functools
import os
import shutil
import time
import unicodedata
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from landmarks.detect import DETECTORS

from .api import ERRORS, NO_CATALOGUE, Problem, services, uploaded_file
from .errors import ApiError
from ..video_io import HEAD, container_of
from .video_jobs import OUTPUTS

router = APIRouter(prefix="/api")
Mode = Literal["match", "lift"]
#: Bytes copied at a time from the spooled upload into the job's folder.
CHUNK = 1 << 20


class VideoOptions(BaseModel):
    """Options of ``POST /api/videos``, in the query string (``?every=3&end=20``)."""

    model_config = ConfigDict(extra="forbid")
    every: int = Field(1, ge=1, le=1000, description="Analyse every Nth frame (every frame is still drawn).")
    fps: float | None = Field(None, gt=0, le=240, description="Or analyse this many frames per second of video.")
    start: float = Field(0.0, ge=0, description="Start at this time (seconds).")
    end: float | None = Field(None, gt=0, description="Stop at this time (seconds).")
    smooth: float = Field(0.0, ge=0, le=10, description="Smooth each face's probabilities over its past frames "
                          "(exponential, this time constant in seconds); 0: off.")
    detector: Literal[DETECTORS] | None = Field(None, description="Face detector (default: the model's own).")
    recommend: Mode | None = Field(None, description="Music for each face's mood over the clip, from the server's "
                                   "catalogue: match mirrors the mood, lift moves toward pleasant.")
    tracks: int = Field(10, ge=1, le=100, description="With recommend: how many tracks per face.")
    mirror: bool = Field(True, description="Read each face together with its mirror image (as the video command "
                         "does unless --no-mirror); false: dlib's landmarks on the frame as it is, one view.")

    @model_validator(mode="after")
    def _consistent(self):
        if self.fps is not None and self.every != 1:
            raise ValueError("choose one of every and fps")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end:g} s) must come after start ({self.start:g} s)")
        return self

    def analysis(self):
        """The keyword arguments of :func:`facial_expressions.video.analyse_to_folder`."""
        return {"every": self.every, "fps": self.fps, "start": self.start, "end": self.end, "smooth": self.smooth,
                "detector": self.detector, "mirror": self.mirror}


class VideoJob(BaseModel):
    """A video job: ``status`` running (``progress`` 0..1), then done or failed."""

    id: str
    status: Literal["uploading", "running", "done", "failed"]
    name: str = Field(description="the uploaded file's name")
    progress: float | None = Field(description="share of the range analysed, 0..1 (None: unknown length)")
    frames_analysed: int
    seconds: float = Field(description="since the upload arrived")
    error: Problem | None = Field(None, description="why a failed job failed (its status as an HTTP status)")
    stopped: str | None = Field(None, description="a damaged video's rows end here; those before are kept")
    summary: dict | None = Field(None, description="summary.json: per face id, when seen, each emotion's share of "
                                 "the time, mean probability and strongest moment")
    timeline: dict | None = Field(None, description="labels, and per face id its times and probabilities (at most "
                                  "600 points per face; timeline.csv has every row)")
    main_face: str | None = Field(None, description="the face id seen longest")
    recommendation: dict | None = Field(None, description="with recommend: the music for the main face's mood")
    files: dict[str, str] | None = Field(None, description="links to timeline.csv, timeline.png, annotated.mp4, "
                                         "summary.json")
    expires_in: float | None = Field(None, description="seconds until the results are deleted")


JobId = Annotated[str, Path(description="the id POST /api/videos answered (32 hex digits)", max_length=64)]
VIDEO_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}


def display_name(filename):
    """The uploaded file's own name, made harmless to show and to put in a message (no folders, no
    control characters, at most 100 characters)."""
    name = os.path.basename((filename or "").replace("\\", "/"))
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:100] or "video"


def _copy(source, dest):
    source.seek(0)
    with open(dest, "xb") as fh:
        shutil.copyfileobj(source, fh, CHUNK)
    os.chmod(dest, 0o600)


@router.post("/videos", status_code=202, response_model=VideoJob, responses=ERRORS,
             openapi_extra={"requestBody": VIDEO_BODY}, summary="Start the analysis of a video")
async def submit_video(request: Request, options: Annotated[VideoOptions, Query()]):
    """A video file in (multipart ``file``: mp4, mov, mkv, webm, avi, ...), a job id out at once (202,
    ``Location``: the job). Refused: 413 over the size limit, 415 not a video, 503 when the server
    already runs as many video analyses as it allows (``Retry-After``)."""
    s = services(request)
    if options.recommend and s.catalogue is None:
        raise ApiError(422, f"recommend: {NO_CATALOGUE}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "multipart/form-data":
        what = kind or "a body without a Content-Type"
        raise ApiError(415, f"send the video as multipart/form-data (field 'file'), not {what}")
    jobs = s.videos
    jobs.reserve()   # 503 now, before the body is read
    job, started = None, False
    try:
        async with uploaded_file(request, "the video as file=@clip.mp4") as upload:
            name = display_name(upload.filename)
            await upload.seek(0)
            head = await upload.read(HEAD)
            if not head:
                raise ApiError(400, f"{name}: the upload is empty (0 bytes)")
            container = container_of(head)
            if container is None:
                raise ApiError(415, f"{name}: not a video file (this server takes MP4, MOV, MKV, WebM, AVI, MPEG, "
                                    "FLV, WMV, Ogg and MPEG-TS videos)")
            job = jobs.create(name, options.analysis())
            source = os.path.join(job.folder, f"input.{container}")
            await run_in_threadpool(_copy, upload.file, source)
        # in a thread: starting a process waits for the fork server (seconds, should it have to start again)
        await run_in_threadpool(functools.partial(jobs.start, job, source, catalogue=bool(options.recommend),
                                                  mode=options.recommend or "match", n_tracks=options.tracks))
        started = True
    finally:
        if not started:
            if job is not None:
                jobs.drop(job)
            jobs.release()
    url = f"/api/videos/{job.id}"
    return JSONResponse(job_view(job, jobs), status_code=202, headers={"Location": url})


def job_view(job, jobs):
    view = {"id": job.id, "status": job.status, "name": job.name, "progress": job.progress,
            "frames_analysed": job.frames, "seconds": round(time.time() - job.created, 2), "error": job.error,
            "stopped": job.stopped, "summary": None, "timeline": None, "main_face": None, "recommendation": None,
            "files": None, "expires_in": None}
    if job.finished is not None:
        view["expires_in"] = round(max(0.0, job.finished + jobs.ttl - time.time()), 1)
    if job.status == "done":
        faces = (job.summary or {}).get("faces") or {}
        main = max(faces, key=lambda k: faces[k].get("seconds_visible", 0), default=None)
        view.update(summary=job.summary, timeline=job.timeline, main_face=main,
                    recommendation=faces[main].get("recommendation") if main else None,
                    files={name: f"/api/videos/{job.id}/{name}" for name in OUTPUTS})
    return view


@router.get("/videos/{job_id}", response_model=VideoJob, responses={404: {"model": Problem}},
            summary="A video job's progress, then its results")
async def video_job(job_id: JobId, request: Request):
    """``status`` running with ``progress``; then done with the summary, the timeline and links to
    the files, or failed with ``error`` (415 not a video, 400 damaged, 503 over the time budget).
    404 for an unknown or expired id."""
    jobs = services(request).videos
    return JSONResponse(job_view(jobs.get(job_id), jobs))


@router.get("/videos/{job_id}/{name}", responses={404: {"model": Problem}},
            summary="A file of a finished video job")
async def video_file(job_id: JobId, name: Annotated[str, Path(description=", ".join(OUTPUTS), max_length=64)],
                     request: Request):
    """``annotated.mp4`` (H.264, plays in browsers; ranges supported), ``timeline.png``, ``timeline.csv``
    or ``summary.json`` of a finished job, from that job's folder only."""
    path, media_type = services(request).videos.output(job_id, name)
    return FileResponse(path, media_type=media_type, filename=name, content_disposition_type="inline")
