"""Files every stage writes: whole or not at all (``atomic_path``), one writer at a time (``output_lock``).

Temporary files are created exclusively under an unpredictable name (``.NAME.tmp-XXXXXXXX``,
:func:`tempfile.mkstemp`), so another user of a shared writable folder cannot plant a
symlink there for the project to write through; lock files are opened without following
symlinks.
"""

import contextlib
import errno
import fcntl
import os
import tempfile

from .errors import OutputLockedError


class atomic_path:
    """``with atomic_path(dest) as tmp:`` write ``tmp``; it becomes ``dest`` only if the block succeeds."""

    def __init__(self, dest):
        self.dest = os.fspath(dest)

    def __enter__(self):
        folder = os.path.dirname(os.path.abspath(self.dest))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.dest)}.tmp-", dir=folder)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # the finished file gets the usual permissions, not mkstemp's 0600
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                with open(self.tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(self.tmp, self.dest)
                return False
        except OSError as error:
            exc = error
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp)
        if isinstance(exc, OSError) and exc.filename in (None, self.tmp):
            # name the file the user asked for, not the hidden temporary one (e.g. on a full disk)
            raise OSError(exc.errno, exc.strerror or str(exc), self.dest) from None
        if exc_type is None:
            raise exc
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
        fh = os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a")
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
