"""The JSON endpoints: ``/api/analyze``, ``/api/recommend``, ``/api/model``, ``/api/health`` (videos: :mod:`.videos`).

``POST /api/analyze`` takes one image, as multipart ``file`` or as JSON ``{"image": "<base64>"}``
(a ``data:`` URL is fine), with its options in the query string, and answers with the faces as
``predict --json`` gives them (:meth:`classifiers.FacePrediction.to_dict`, largest first).
The image is written to the server's private upload folder, decoded by an analysis worker
through :mod:`landmarks.io`'s checks, and deleted as soon as the answer is known.
"""

import base64
import binascii
import contextlib
import json
import os
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from landmarks.detect import DETECTORS

from .errors import ApiError
from .worker import hex_colour

router = APIRouter(prefix="/api")

NO_CATALOGUE = "this server has no music catalogue: start it with --catalogue FILE to get recommendations"
Detector = Literal[DETECTORS]
Mode = Literal["match", "lift"]


class AnalyzeOptions(BaseModel):
    """Options of ``/api/analyze``, in the query string (``?explain=3&recommend=match``)."""

    model_config = ConfigDict(extra="forbid")
    explain: int = Field(0, ge=0, le=20, description="Add the N features that pushed most toward each face's "
                         "label and against it, and the contribution of each face part.")
    detector: Detector | None = Field(None, description="Face detector (default: the model's own): hog for photos, "
                                      "cnn for more poses (slower), whole when the image is the face.")
    preview: bool = Field(False, description="Also send the decoded photo back as a JPEG data URL (at most 1280 px), "
                          "for pages that cannot show the uploaded format (TIFF).")
    recommend: Mode | None = Field(None, description="Music for the mood of the largest face, from the catalogue the "
                                   "server was started with: match mirrors the mood, lift moves toward pleasant.")
    tracks: int = Field(10, ge=1, le=100, description="With recommend: how many tracks.")
    age_gender: bool = Field(False, description="Also estimate each face's apparent age (with a plausible range) and "
                             "apparent binary gender as labelled in UTKFace (research-only data; an estimate from "
                             "appearance, not identity). Not explained here: an age or gender explanation takes "
                             "seconds (predict --age-gender --explain gives it).")
    mirror: bool = Field(True, description="Read each face together with its mirror image (landmarks from both views, "
                         "the average of the two views' features: steadier labels, up to a third slower); false "
                         "reads the face as it is.")


class Reason(BaseModel):
    feature: str
    value: float | None
    contribution: float


class Face(BaseModel):
    """One face, exactly as one face of ``facial-expressions predict --json``."""

    box: list[int] = Field(description="x, y, width, height in pixels of the image")
    label: str
    probabilities: dict[str, float] = Field(description="every class the model knows")
    landmarks: list[list[float]] = Field(description="dlib's 68 points, (x, y) in pixels")
    valence: float | None = None
    arousal: float | None = None
    explanation: list[Reason] | None = Field(None, description="with explain: reasons toward the label (> 0), then "
                                             "against it (< 0)")
    explanation_kind: str | None = None
    age: float | None = Field(None, description="with age_gender: apparent age in years")
    age_range: list[float] | None = Field(None, description="with age_gender: (low, high) years holding the "
                                          "labelled age of about 80% of such faces")
    gender: str | None = Field(None, description="with age_gender: apparent gender, female or male")
    p_female: float | None = Field(None, description="with age_gender: probability of female")


class Track(BaseModel):
    artist: str
    title: str
    valence: float
    arousal: float
    url: str
    distance: float


class Recommendation(BaseModel):
    mode: Mode
    reason: str
    label: str | None
    seed: int
    target: dict[str, float]
    tracks: list[Track]


class ImageSize(BaseModel):
    width: int
    height: int


class Analysis(BaseModel):
    faces: list[Face] = Field(description="largest first; empty when no face was found")
    image: ImageSize
    parts: list[dict[str, float] | None] | None = Field(None, description="with explain: per face, the summed "
                                                        "contribution of brows, eyes, nose, mouth and jaw")
    part_colours: list[dict[str, str] | None] | None = Field(None, description="with explain: per face, the colour "
                                                             "predict --annotate --explain gives each drawn part")
    preview: str | None = None
    recommendation: Recommendation | None = None
    mirror_averaged: bool = Field(description="whether each face was read together with its mirror image "
                                  "(the option mirror, as predict --json records it)")
    seconds: float = Field(description="time the server spent on the analysis, waiting for a worker included")


class Mood(BaseModel):
    """A point on Russell's circumplex (e.g. the average of a webcam minute) to recommend music for."""

    model_config = ConfigDict(extra="forbid")
    valence: float = Field(ge=-1, le=1)
    arousal: float = Field(ge=-1, le=1)
    label: str | None = Field(None, max_length=40, description="the mood's emotion, for the reason in words")
    mode: Mode = "match"
    tracks: int = Field(10, ge=1, le=100)
    seed: int = Field(0, ge=0)


class Problem(BaseModel):
    detail: str = Field(description="what went wrong, in one line")
    status: int


ERRORS = {400: {"model": Problem, "description": "unreadable image or malformed request"},
          401: {"model": Problem, "description": "missing or wrong access token"},
          408: {"model": Problem, "description": "the upload arrived too slowly"},
          413: {"model": Problem, "description": "upload over the size limit, or an image declaring too many pixels"},
          415: {"model": Problem, "description": "not an image (or video), or a body neither multipart nor JSON"},
          422: {"model": Problem, "description": "a bad option"},
          503: {"model": Problem, "description": "busy (see Retry-After) or over the time budget"}}

IMAGE_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/json": {"schema": {"type": "object", "required": ["image"], "additionalProperties": False,
                                    "properties": {"image": {"type": "string", "description": "the image file, "
                                                             "base64-encoded (a data: URL is fine)"}}}}}}


def services(request):
    return request.app.state.services


@contextlib.asynccontextmanager
async def uploaded_file(request, example):
    """The multipart body's field 'file' (an UploadFile), the form closed afterwards; ApiError 400 for
    a malformed body or one without that field (``example``: how to send it, e.g. file=@photo.jpg)."""
    try:
        form = await request.form(max_files=1, max_fields=8)
    except MultiPartException as exc:
        raise ApiError(400, f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, f"the multipart body has no file field 'file' (send {example})")
        yield upload
    finally:
        await form.close()


async def receive_image(request, store):
    """The uploaded image, written to the private upload folder -> its path (the caller discards it)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        async with uploaded_file(request, "the image as file=@photo.jpg") as upload:
            return await run_in_threadpool(store.save_file, upload.file)
    if kind == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("image"), str):
            raise ApiError(400, 'the JSON body needs "image": the image file, base64-encoded')
        extra = sorted(set(data) - {"image"})
        if extra:
            raise ApiError(422, f"unknown field(s) {', '.join(map(repr, extra))} in the JSON body: options go in the "
                                "query string (/api/analyze?explain=3)")
        text = data["image"]
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, '"image" is not valid base64') from None
        return await run_in_threadpool(store.save_bytes, raw)
    raise ApiError(415, f"send the image as multipart/form-data (field 'file') or as application/json "
                        f'{{"image": "<base64>"}}, not {kind or "a body without a Content-Type"}')


def _recommend(faces_or_point, catalogue, **options):
    from classifiers.recommend import recommend

    return recommend(faces_or_point, catalogue, **options).to_dict()


@router.post("/analyze", response_model=Analysis, responses=ERRORS, openapi_extra={"requestBody": IMAGE_BODY},
             summary="The expression of every face in one image")
async def analyze(request: Request, options: Annotated[AnalyzeOptions, Query()]):
    """One image in (multipart ``file``, or JSON ``{"image": "<base64>"}``), every face out: box, label,
    the probability of every class, the 68 landmarks, valence and arousal, with ``explain`` the
    reasons, with ``age_gender`` apparent age and gender. No face: ``faces`` is empty (200)."""
    s = services(request)
    if options.recommend and s.catalogue is None:
        raise ApiError(422, f"recommend: {NO_CATALOGUE}")
    path = await receive_image(request, s.store)
    started = time.perf_counter()
    try:
        result = await s.pool.run({"path": path, "explain": options.explain, "detector": options.detector,
                                   "preview": options.preview, "age_gender": options.age_gender,
                                   "mirror": options.mirror})
    finally:
        s.store.discard(path)
    if options.recommend:
        faces = result["faces"]
        result["recommendation"] = (_recommend(faces, s.catalogue, n=options.tracks, mode=options.recommend)
                                    if faces and faces[0].get("valence") is not None else None)
    result["mirror_averaged"] = options.mirror
    result["seconds"] = round(time.perf_counter() - started, 4)
    return JSONResponse(result)


@router.post("/recommend", response_model=Recommendation, responses={404: {"model": Problem}, 422: ERRORS[422]},
             summary="Music for a mood")
async def recommend_for_mood(mood: Mood, request: Request):
    """Tracks of the server's catalogue near a valence-arousal point (the page sends the average of a
    webcam minute). 404 when the server has no catalogue."""
    s = services(request)
    if s.catalogue is None:
        raise ApiError(404, NO_CATALOGUE)
    face = {"valence": mood.valence, "arousal": mood.arousal, "label": mood.label}
    return JSONResponse(_recommend([face], s.catalogue, n=mood.tracks, mode=mood.mode, seed=mood.seed))


@router.get("/model", summary="The model this server runs, and its limits")
async def model_info(request: Request):
    """Labels, what the model was trained on and its measured figures (from the model file's
    meta.json), whether music recommendations are available, the server's limits, and how the
    page draws landmarks (part ranges and colours, as ``predict --annotate``)."""
    from features.pixelize import PART_COLOURS
    from landmarks.parts import PARTS

    s = services(request)
    meta, settings = s.model.meta, s.settings
    catalogue = None if s.catalogue is None else {"file": os.path.basename(s.catalogue.path),
                                                  "tracks": len(s.catalogue)}
    return {"file": os.path.basename(s.model.path), "labels": s.model.labels, "model": meta.get("model", {}),
            "training_data": meta.get("training_data", {}), "benchmarks": meta.get("benchmarks", []),
            "label_scheme": meta.get("label_scheme"), "feature_config": meta.get("feature_config"),
            "versions": meta.get("versions", {}), "catalogue": catalogue,
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "time_budget": settings.time_budget,
                       "receive_timeout": settings.receive_timeout, "workers": settings.workers,
                       "queue": settings.queue, "max_video_bytes": settings.max_video_bytes,
                       "video_jobs": settings.video_jobs, "video_time_budget": settings.video_time_budget,
                       "video_ttl": settings.video_ttl},
            "music_every": settings.music_every,
            "drawing": {"parts": {name: [part.start, part.stop] for name, part in PARTS.items()},
                        "colours": {name: hex_colour(rgb) for name, rgb in PART_COLOURS.items()}}}


@router.get("/health", summary="Is the server up, and how busy")
async def health(request: Request):
    """Open without the token: no data, only the pool's state."""
    s = services(request)
    videos = s.videos.stats() if s.videos is not None else {}
    return {"status": "ok", "uptime_seconds": round(time.monotonic() - s.started, 1), **s.pool.stats(), **videos}
