"""A real ``facial-expressions serve`` for the web tests: started on 127.0.0.1 on a free port (the
server binds port 0 and prints its address), stopped by the test; and Chromium for Playwright."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = "/usr/bin/chromium"
#: Chromium as root, offline: no sandbox, nothing reaching out to Google.
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Server:
    """``with Server(tmp_path, "--workers", "1") as server: httpx.get(server.url("/api/health"))``.

    TMPDIR points into ``folder``, so the upload folder the server makes is there to inspect. Under
    pytest-xdist that path is long enough (over 80 characters) that the fork server's socket could
    not be bound there: every server started here runs ``processes._short_socket_folder``'s way out.
    """

    def __init__(self, folder, *args, env=None, timeout=180):
        self.folder = folder
        self.tmp = os.path.join(folder, "server-tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.log_path = os.path.join(folder, "server.log")
        full_env = {k: v for k, v in os.environ.items() if k != "FER_WEB_TOKEN"}  # no token from outside
        full_env.update(TMPDIR=self.tmp, PYTHONPATH=PROJECT, **(env or {}))
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "facial_expressions", "serve", "--port", "0", "-q",
                                         *map(str, args)], cwd=PROJECT, env=full_env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.base = self._wait_for_address(timeout)

    def _wait_for_address(self, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/", self.output())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                pytest.fail(f"the server stopped: {self.output()}")
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"the server did not start within {timeout} s: {self.output()}")

    def output(self):
        with open(self.log_path) as fh:
            return fh.read()

    def url(self, path="/"):
        return self.base + path

    def uploads(self):
        """Files in the server's private upload folder(s)."""
        return [name for folder in os.listdir(self.tmp) if folder.startswith("facial-expressions-uploads-")
                for name in os.listdir(os.path.join(self.tmp, folder))]

    def stop(self, how=signal.SIGINT):
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def screenshot_dir():
    """Where the browser tests put their screenshots: $FER_WEB_SCREENSHOTS, else a temporary folder."""
    folder = os.environ.get("FER_WEB_SCREENSHOTS") or os.path.join(tempfile.gettempdir(), "facial-expressions-web")
    os.makedirs(folder, exist_ok=True)
    return folder


def write_y4m(video, dest, seconds=None, width=None):
    """A clip of ``video`` as an uncompressed YUV4MPEG2 file, Chromium's fake camera input (4:2:0)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    frames = 0
    with open(dest, "wb") as out:
        while seconds is None or frames < seconds * fps:
            ok, frame = capture.read()
            if not ok:
                break
            if width:
                frame = cv2.resize(frame, (width, round(frame.shape[0] * width / frame.shape[1] / 2) * 2))
            if frames == 0:
                h, w = frame.shape[:2]
                out.write(f"YUV4MPEG2 W{w} H{h} F{round(fps)}:1 Ip A1:1 C420jpeg\n".encode())
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
            frames += 1
    capture.release()
    return frames


def what_a_child_has(conn):
    """Run in a child of the web's fork server: what it had loaded before its own code ran."""
    import sys

    from landmarks import models

    conn.send({"preloaded": "facial_expressions.web.preload" in sys.modules,
               "predictor_loaded": models.shape_predictor.cache_info().currsize == 1,
               "parent": os.getppid()})
    conn.close()
