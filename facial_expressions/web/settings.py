"""The server's settings, one frozen object that the ``serve`` command fills and the app reads."""

import ipaddress
from dataclasses import dataclass

#: Environment variable holding the access token (instead of ``--token``, which shows in ``ps``).
TOKEN_ENV = "FER_WEB_TOKEN"
MB = 1024 * 1024


def is_loopback(host):
    """True for addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None            # model file; None: the shipped one
    catalogue: str | None = None        # music catalogue CSV, for recommendations
    token: str | None = None            # bearer token; required when host is not loopback
    workers: int = 2                    # analysis processes
    queue: int = 16                     # requests that may wait for a worker beyond those
    max_upload_bytes: int = 20 * MB     # request bodies larger than this: 413
    time_budget: float = 30.0           # seconds per analysis, waiting included: 503 past it
    receive_timeout: float = 30.0       # seconds to receive a request body: 408 past it
    upload_ttl: float = 600.0           # seconds an upload may stay at most (photos: deleted at once)
    max_video_bytes: int = 200 * MB     # video uploads (POST /api/videos) larger than this: 413
    video_receive_timeout: float = 600.0  # seconds to receive a video upload: 408 past it
    video_jobs: int = 1                 # video analyses running at once (one process each); one more: 503
    video_time_budget: float = 900.0    # seconds one video analysis may take; past it the job fails
    video_ttl: float = 3600.0           # seconds a video job's folder (results) is kept after it ends
    music_every: float = 60.0           # seconds of webcam per music recommendation on the page
    cors_origins: tuple = ()            # origins allowed to call the API from their pages

    @property
    def loopback(self):
        return is_loopback(self.host)
