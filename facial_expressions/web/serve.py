"""The ``serve`` command: the web app on this machine, one line per error like every command.

    facial-expressions serve [--host 127.0.0.1] [--port 8000] [--model FILE] [--workers N]
                             [--catalogue FILE] [--token TOKEN] [--max-upload-mb 20] [--max-video-mb 200]
                             [--video-jobs 1] [--video-ttl 3600] ...

Everything that can fail is checked before the server listens: the model file, the catalogue,
the token rule (a server reachable from other machines needs one), the address, and the
analysis workers, which load their models once each at start-up.
"""

import logging
import os
import signal
import socket
import sys

import click

from common.cli import command, fail, quiet_option

from .settings import MB, TOKEN_ENV, Settings


def bind(host, port):
    """A listening socket on host:port (port 0: any free port); OSError names the address."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, exc.strerror, f"{host}:{port}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock, host, token=None):
    port = sock.getsockname()[1]
    shown = host if host not in ("0.0.0.0", "::") else socket.gethostname()
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


@command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but this machine's loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port; the address is printed).")
@click.option("-m", "--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Model file (default: the shipped model).")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Analysis processes, each loading the models once at start-up [default: one per core].")
@click.option("--queue", "queue_size", type=click.IntRange(0, 10000), default=16, show_default=True,
              help="Requests that may wait for a busy worker; one more is answered 503 with Retry-After at once.")
@click.option("--catalogue", "catalogue_path", type=click.Path(dir_okay=False), default=None,
              help="Music catalogue CSV (artist, title, valence, arousal[, url]): enables recommendations.")
@click.option("--token", envvar=TOKEN_ENV, default=None, show_envvar=True,
              help="Access token the API requires as 'Authorization: Bearer TOKEN' (required off loopback).")
@click.option("--max-upload-mb", type=click.FloatRange(0.001, 4096), default=20, show_default=True,
              help="Largest request body; a larger one is answered 413 without reading the rest.")
@click.option("--time-budget", type=click.FloatRange(0.1, 3600), default=30, show_default=True,
              help="Seconds per analysis, waiting for a worker included; past it: 503 (the worker is replaced).")
@click.option("--receive-timeout", type=click.FloatRange(0.1, 3600), default=30, show_default=True,
              help="Seconds a client has to send its upload; past it: 408.")
@click.option("--upload-ttl", type=click.FloatRange(0, 86400), default=600, show_default=True,
              help="Seconds an upload may stay on disk at most (photos are deleted as soon as they are analysed).")
@click.option("--max-video-mb", type=click.FloatRange(0.001, 65536), default=200, show_default=True,
              help="Largest video upload (POST /api/videos); a larger one is answered 413 without reading the rest.")
@click.option("--video-jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Video analyses running at once, one process each; one more upload is answered 503 at once.")
@click.option("--video-time-budget", type=click.FloatRange(1, 86400), default=900, show_default=True,
              help="Seconds one video analysis may take; past it the job is stopped and fails.")
@click.option("--video-ttl", type=click.FloatRange(0, 30 * 86400), default=3600, show_default=True,
              help="Seconds a video job's results (timeline, annotated video) are kept after it ends.")
@click.option("--music-every", type=click.FloatRange(5, 3600), default=60, show_default=True,
              help="Seconds of webcam between two music recommendations on the page (with --catalogue).")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Let pages from this origin (https://example.org) call the API; repeatable. Default: none.")
@quiet_option
def main(host, port, model_path, workers, queue_size, catalogue_path, token, max_upload_mb, time_budget,
         receive_timeout, upload_ttl, max_video_mb, video_jobs, video_time_budget, video_ttl, music_every, cors_origins, quiet):
    """Serve the REST API and the browser page (photos, live webcam, videos).

    The page at / takes a photo (drag and drop), the webcam or a video, and shows every
    face's label, the probability of each class, its reasons (a video: the annotated
    video beside its timeline) and, with --catalogue, music for the mood. The API:
    POST /api/analyze (multipart 'file' or JSON {"image": base64}), POST /api/videos
    (a job id) and GET /api/videos/ID (progress, then the results), POST /api/recommend,
    GET /api/model, GET /api/health; documentation at /docs.

    \b
    Safety: listens on 127.0.0.1 unless told otherwise; any other address needs a token
    (--token or FER_WEB_TOKEN), which the API wants as a bearer header and the page takes
    from the address printed at start (.../#token=TOKEN). Uploads are limited in size
    and in time, decoded with the same checks as files, and deleted after analysis;
    a video's results are deleted --video-ttl seconds after its analysis ends.
    \b
    Examples:
      facial-expressions serve
      FER_WEB_TOKEN=$(openssl rand -hex 16) facial-expressions serve --host 0.0.0.0 --catalogue tracks.csv
    """
    settings = Settings(host=host, port=port, model=model_path, catalogue=catalogue_path, token=token or None,
                        workers=workers or os.cpu_count() or 1, queue=queue_size,
                        max_upload_bytes=int(max_upload_mb * MB), time_budget=time_budget,
                        receive_timeout=receive_timeout, upload_ttl=upload_ttl, cors_origins=tuple(cors_origins),
                        max_video_bytes=int(max_video_mb * MB), video_jobs=video_jobs,
                        video_time_budget=video_time_budget, video_ttl=video_ttl, music_every=music_every)
    if not settings.loopback and not settings.token:
        fail(f"listening on {host} lets other machines in: give an access token with --token TOKEN or {TOKEN_ENV}",
             code=2)
    run(settings, quiet)


def run(settings, quiet=False):
    """Check, start and serve until Ctrl-C (exit code 130, as every command) or SIGTERM (0); the
    analysis workers, running video jobs, the upload folder and the video jobs' folder are removed
    on the way out."""
    import uvicorn

    from classifiers import load_model

    from .app import Services, create_app
    from .pool import AnalysisPool
    from .uploads import UploadStore
    from .video_jobs import VideoJobs

    model = load_model(settings.model)
    catalogue = None
    if settings.catalogue:
        from classifiers.recommend import load_catalogue

        catalogue = load_catalogue(settings.catalogue)
    sock = bind(settings.host, settings.port)
    # uvicorn stops gracefully on SIGTERM, then raises it again: as an exit, so the cleanup below runs
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    store = UploadStore(settings.upload_ttl)
    videos = VideoJobs(settings.video_jobs, settings.video_time_budget, settings.video_ttl, model.path,
                       os.path.abspath(catalogue.path) if catalogue is not None else None)
    pool = AnalysisPool(settings.workers, settings.queue, settings.time_budget, model.path)
    try:
        pool.start()
        app = create_app(Services(settings=settings, pool=pool, store=store, model=model, catalogue=catalogue,
                                         videos=videos))
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        config = uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet,
                                timeout_keep_alive=5, limit_concurrency=max(64, 4 * settings.workers
                                                                            + 2 * settings.queue))
        click.echo(f"serving {os.path.basename(model.path)} with {settings.workers} analysis worker(s) on "
                   f"{url_of(sock, settings.host, settings.token)}  (Ctrl-C stops)", err=True)
        sys.stderr.flush()
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        videos.close()
        pool.close()
        store.close()
        sock.close()


if __name__ == "__main__":
    main()
