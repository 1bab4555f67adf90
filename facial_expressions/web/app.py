"""The FastAPI application: the routers, the page, the local API docs and JSON errors.

:func:`create_app` takes what the ``serve`` command has already started (the analysis pool,
the upload folder, the model and the catalogue), so that every failure to start is one line
before the server listens, and the app itself holds no global state.
"""

import pathlib
import time
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from . import api, docs, videos
from .errors import ApiError
from .guard import Guard

STATIC = pathlib.Path(__file__).resolve().parent / "static"
#: The routers under /api: photos, music and the model (api), video jobs (videos).
ROUTERS = (api.router, videos.router)
DESCRIPTION = ("Facial expressions of every face in a photo, a webcam frame or a video: classical machine learning on "
               "dlib's 68 landmarks. Errors are JSON {detail, status}. With a token set, /api/ needs "
               "'Authorization: Bearer TOKEN' (all but /api/health).")


@dataclass
class Services:
    """What the endpoints use, started by the serve command."""

    settings: object
    pool: object
    store: object
    model: object
    catalogue: object = None
    videos: object = None
    started: float = field(default_factory=time.monotonic)


def _validation_message(exc):
    parts = []
    for error in exc.errors():
        where = ".".join(str(x) for x in error.get("loc", ()) if x not in ("query", "body"))
        message = "unknown option" if error.get("type") == "extra_forbidden" else error.get("msg", "invalid")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def _json_error(status, message, headers=None):
    return JSONResponse({"detail": message, "status": status}, status_code=status, headers=headers)


def create_app(services):
    """The ASGI app: FastAPI behind the :class:`.guard.Guard`."""
    app = FastAPI(title="facial-expressions", version=_version(), description=DESCRIPTION, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json")
    app.state.services = services
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return _json_error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_option(request, exc):
        return _json_error(422, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _json_error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request, exc):
        import logging

        logging.getLogger("facial_expressions.web").exception("unexpected error on %s", request.url.path)
        return _json_error(500, "internal error (the server's log says more)")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request):
        return HTMLResponse(docs.render(app.openapi()))

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if services.settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(services.settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    return Guard(app, services.settings)


def _version():
    try:
        from importlib.metadata import version

        return version("facial-expressions")
    except Exception:  # noqa: BLE001 - not installed (a checkout on PYTHONPATH)
        return "dev"
