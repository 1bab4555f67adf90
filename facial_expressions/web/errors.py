"""Errors the web app answers with: a status, a one-line message, and sometimes headers.

Every refusal is JSON ``{"detail": "<one line>", "status": <code>}``; the library's own
exceptions are turned into these by :func:`status_of`.
"""

from common.errors import (CorruptImageError, EmptyImageError, ImageError, ImageTooLargeError, ImageTooSmallError,
                           NotAnImageError)


class ApiError(Exception):
    """An answer other than 200: ``status``, a one-line ``message``, optional ``headers``."""

    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})

    def body(self):
        return {"detail": self.message, "status": self.status}


class Busy(ApiError):
    """Every analysis worker is busy and the waiting line is full: try again shortly."""

    def __init__(self, message, retry_after=1):
        super().__init__(503, message, {"Retry-After": str(int(retry_after))})


#: Library image errors -> HTTP status (anything else the library raises on purpose: 400).
_STATUS = ((NotAnImageError, 415), (ImageTooLargeError, 413), (EmptyImageError, 400), (CorruptImageError, 400),
           (ImageTooSmallError, 400), (ImageError, 400))


def status_of(exc):
    """The HTTP status for one of the library's exceptions."""
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)


def upload_message(exc):
    """An image error's message about "the upload", without the server's temporary path."""
    if isinstance(exc, ImageError):
        return f"the upload: {exc.describe()}" + (f" ({exc.detail.replace(exc.path, 'upload')})" if exc.detail else "")
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
