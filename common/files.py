"""Files every stage writes: whole or not at all (``atomic_path``), one writer at a time (``output_lock``)."""

import contextlib
import errno
import fcntl
import os

from .errors import OutputLockedError


class atomic_path:
    """``with atomic_path(dest) as tmp:`` write ``tmp``; it becomes ``dest`` only if the block succeeds."""

    def __init__(self, dest):
        self.dest = os.fspath(dest)

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.dest))
        os.makedirs(folder, exist_ok=True)
        base = os.path.basename(self.dest)
        self.tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}")
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.dest)
        else:
            try:
                os.remove(self.tmp)
            except FileNotFoundError:
                pass
        return False


@contextlib.contextmanager
def output_lock(output, what="run"):
    """Hold an exclusive lock on ``output`` (via ``output.lock``); a second holder is refused.

    Raises OutputLockedError at once instead of waiting. The lock file is removed on
    release; a run that opened the old file just before the removal notices that its
    file is no longer the one on disk and tries again, so two runs never both hold it.
    """
    lock_path = os.fspath(output) + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    while True:
        fh = open(lock_path, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputLockedError(f"{output}: another {what} is writing this file") from None
            raise
        try:
            same = os.fstat(fh.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)
        fh.close()
