"""Where parallel work runs: local processes (joblib's loky) or a Dask cluster.

The same joblib code runs on both: ``with compute_backend("dask", "tcp://host:8786"):``
routes every ``joblib.Parallel`` inside the block to the cluster. The scheduler address
may also come from the ``FER_DASK_SCHEDULER`` environment variable. Workers must see the
dataset files at the same paths as the client (a shared or replicated file system).
"""

import contextlib
import os

BACKENDS = ("local", "dask")
SCHEDULER_ENV = "FER_DASK_SCHEDULER"


def forked_worker_init():
    """Initialiser of a pool forked from a process that has loaded its models: one OpenCV and one
    BLAS thread per worker (the pool has a process per core), Ctrl-C is the parent's to handle,
    and SIGTERM (the pool's terminate) ends the worker at once, whatever handler the parent had
    (the commands turn SIGTERM into an interrupt of their own)."""
    import signal

    import cv2
    from threadpoolctl import threadpool_limits

    if cv2.getNumThreads() != 1:   # fork_pool stopped OpenCV's threads before forking
        cv2.setNumThreads(1)
    threadpool_limits(limits=1, user_api="blas")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def fork_pool(n_jobs):
    """A ``multiprocessing`` pool of ``n_jobs`` workers forked from this process (which has loaded
    its models), initialised by :func:`forked_worker_init`. OpenCV's own worker threads are
    stopped while the workers are forked and restarted afterwards: a child forked while they
    ran inherited their pool without the threads, and its first ``cv2.setNumThreads`` waited for
    them for ever (seen in an xdist test process that had run OpenCV before)."""
    import multiprocessing

    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        pool = multiprocessing.get_context("fork").Pool(n_jobs, initializer=forked_worker_init)
    finally:
        cv2.setNumThreads(threads)
    with pool:
        yield pool


def default_backend():
    return "dask" if os.environ.get(SCHEDULER_ENV) else "local"


def _refused(scheduler):
    """A tcp:// scheduler address where nothing listens fails at once (the client would retry
    for its whole 10 s timeout before saying so)."""
    import socket
    from urllib.parse import urlsplit

    if "://" not in scheduler:
        scheduler_url = "tcp://" + scheduler  # Dask's default protocol
    elif scheduler.startswith("tcp://"):
        scheduler_url = scheduler
    else:
        return
    try:
        address = urlsplit(scheduler_url)
        host, port = address.hostname, address.port
    except ValueError:
        return
    if not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: connection refused") from None
    except OSError:
        pass  # unreachable or slow: the client's own timeout and message


@contextlib.contextmanager
def compute_backend(backend="local", scheduler=None):
    """Context in which joblib.Parallel uses ``backend``; yields the Dask client (or None)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "local":
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("the dask backend is an optional part: pip install 'facial-expressions[cluster]' "
                         "(make install includes it)") from None
    from joblib import parallel_config

    scheduler = scheduler or os.environ.get(SCHEDULER_ENV)
    if not scheduler:
        raise ValueError(f"the dask backend needs --scheduler ADDRESS or {SCHEDULER_ENV}")
    _refused(scheduler)
    try:
        client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask"):
            yield client
    finally:
        client.close()
