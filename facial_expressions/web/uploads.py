"""Where uploads live while they are analysed: a private folder, files deleted as soon as possible.

The folder is created with mode 0700 under the system's temporary folder when the server
starts and removed when it stops; each upload gets an unpredictable name (``mkstemp``, mode
0600), so no request can name or reach a path on the server. A photo is deleted right after
its analysis (:meth:`UploadStore.discard`); anything left longer than ``ttl`` seconds (an
upload whose request died in between) is swept when the next upload arrives.
"""

import contextlib
import os
import shutil
import tempfile
import time

#: Bytes copied at a time.
CHUNK = 1 << 20


class UploadStore:
    def __init__(self, ttl=600.0, parent=None):
        self.ttl = float(ttl)
        self.folder = tempfile.mkdtemp(prefix="facial-expressions-uploads-", dir=parent)

    def _new_file(self, suffix):
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.folder)
        return os.fdopen(fd, "wb"), path

    def save_bytes(self, data, suffix=""):
        """Write ``data`` to a new private file -> its path."""
        self.sweep()
        fh, path = self._new_file(suffix)
        with fh:
            fh.write(data)
        return path

    def save_file(self, source, suffix=""):
        """Copy an open binary file to a new private file -> its path."""
        self.sweep()
        fh, path = self._new_file(suffix)
        with fh:
            source.seek(0)
            shutil.copyfileobj(source, fh, CHUNK)
        return path

    def discard(self, path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    def sweep(self, now=None):
        """Delete uploads older than ``ttl`` seconds."""
        now = time.time() if now is None else now
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > self.ttl:
                        os.remove(entry.path)

    def close(self):
        shutil.rmtree(self.folder, ignore_errors=True)
