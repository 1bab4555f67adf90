"""The layer every request passes first (pure ASGI, so it costs next to nothing per request).

* **Host**: a server on the loopback interface answers only requests addressed to
  localhost / 127.0.0.1 / [::1] (another site cannot reach it by DNS rebinding).
* **Token**: with a token set (required off loopback), every ``/api/`` request but
  ``/api/health`` needs ``Authorization: Bearer TOKEN``, else 401.
* **Size**: a declared ``Content-Length`` over the limit (the video limit for ``POST /api/videos``,
  the image limit for everything else) is answered 413 before reading any of
  the body; a body without one is counted as it arrives and answered 413 as soon as it passes
  the limit; the rest is never read.
* **Slow uploads**: a body not received within ``receive_timeout`` seconds (``video_receive_timeout``
  for a video) is answered 408.
* **Headers**: a Content-Security-Policy that lets the page load nothing from elsewhere,
  ``nosniff``, no referrer, and no caching of API answers.
"""

import hmac
import json
import time

import anyio

from .errors import ApiError
from .settings import TOKEN_ENV

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}
OPEN_PATHS = {"/api/health"}
VIDEO_UPLOAD = "/api/videos"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob: mediastream:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class BodyTooLarge(ApiError):
    def __init__(self, limit):
        super().__init__(413, f"the upload is larger than this server's limit of {limit / 2**20:g} MB")


class BodyTooSlow(ApiError):
    def __init__(self, seconds):
        super().__init__(408, f"the upload did not arrive within {seconds:g} s")


async def send_error(send, error):
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()] + SECURITY_HEADERS
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, settings):
        self.app, self.settings = app, settings
        self.token = settings.token.encode() if settings.token else None

    def limits(self, scope):
        """(largest body in bytes, seconds to receive it) for this request."""
        if scope.get("method") == "POST" and scope.get("path", "").rstrip("/") == VIDEO_UPLOAD:
            return self.settings.max_video_bytes, self.settings.video_receive_timeout
        return self.settings.max_upload_bytes, self.settings.receive_timeout

    def _refusal(self, scope):
        headers = dict(scope.get("headers") or ())
        if self.settings.loopback:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in LOOPBACK_NAMES:
                return ApiError(400, f"this server answers requests for localhost only, not for host {host!r}")
        path = scope.get("path", "")
        if self.token and path.startswith("/api/") and path not in OPEN_PATHS and scope.get("method") != "OPTIONS":
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                return ApiError(401, "this server needs its access token: send the header 'Authorization: Bearer "
                                     f"TOKEN' (the token given to the server with --token or {TOKEN_ENV}; the page "
                                     "takes it from the address the server printed, .../#token=TOKEN)",
                                {"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return ApiError(400, "Content-Length is not a number")
            limit = self.limits(scope)[0]
            if declared > limit:
                return BodyTooLarge(limit)
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            return await send_error(send, refusal)
        limit, timeout = self.limits(scope)
        state = {"received": 0, "deadline": None, "complete": False}

        async def guarded_receive():
            if state["complete"]:  # the body is in: later receives wait for a disconnect
                return await receive()
            if state["deadline"] is None:
                state["deadline"] = time.monotonic() + timeout
            try:
                with anyio.fail_after(max(0.0, state["deadline"] - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(timeout) from None
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise BodyTooLarge(limit)
                state["complete"] = not message.get("more_body", False)
            return message

        api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = SECURITY_HEADERS + ([(b"cache-control", b"no-store")] if api else [])
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, guarded_receive, send_with_headers)
