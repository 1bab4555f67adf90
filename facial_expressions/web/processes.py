"""Where the server's child processes come from: a fork server that has imported the pipeline and
loaded dlib's models once.

Analysis workers and video jobs used to be ``spawn``-ed: each new process started Python afresh,
imported scikit-learn, SciPy, OpenCV and dlib and read the 100 MB shape predictor, about 2.7 s
before its first frame. Now the server's first child starts a fork server (``multiprocessing``'s
``forkserver``), which runs :mod:`.preload` once; every child is a fork of it, ready in about
0.1 s (``benchmarks/web_processes.py``; BENCHMARKS.md, "The web app under load"), sharing the
predictor's memory until it writes to it. The fork server is a fresh process with one thread
(:mod:`.preload` keeps it so), not a fork of the server and its threads, so the reason for
``spawn`` holds. Left as it is: should the fork server itself be killed, its running children
are no longer tracked (multiprocessing reports them ended), and the next child starts a new
fork server.
"""

import multiprocessing
import multiprocessing.util
import os
import tempfile

#: The module the fork server imports before forking any child.
PRELOAD = "facial_expressions.web.preload"
#: The longest path of a Unix socket (sun_path holds 108 bytes with the final NUL).
SOCKET_PATH_MAX = 107


def context():
    """The ``forkserver`` context, with :data:`PRELOAD` set (for the fork server this process starts)."""
    _short_socket_folder()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([PRELOAD])
    return ctx


def _short_socket_folder():
    """The fork server listens on a Unix socket in multiprocessing's temporary folder,
    TMPDIR/pymp-XXXXXXXX/listener-XXXXXXXX: under a long TMPDIR that path is too long to bind
    ("AF_UNIX path too long"). Then that folder is made under the system's /tmp instead (as
    newer Python versions do themselves); nothing else of the server's goes there."""
    if len(os.fsencode(tempfile.gettempdir())) + len("/pymp-XXXXXXXX/listener-XXXXXXXX") <= SOCKET_PATH_MAX:
        return
    saved = tempfile.tempdir
    try:
        tempfile.tempdir = next((d for d in ("/tmp", "/var/tmp", "/usr/tmp") if _writable(d)), saved)
        multiprocessing.util.get_temp_dir()   # made now, under that folder, and kept for this process
    finally:
        tempfile.tempdir = saved


def _writable(folder):
    return os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)
