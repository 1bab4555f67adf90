"""Frames in and out of :mod:`facial_expressions.video`: files, cameras and streams; the annotated video.

* :func:`open_source` opens a video file, a camera (``"0"``) or a stream URL with OpenCV and
  turns every failure into one :class:`common.errors.VideoError` line (stream connections
  give up after ``STREAM_TIMEOUT`` seconds). FFmpeg's and OpenCV's own log lines are silenced:
  the error says what happened.
* :class:`FileFrames` decodes a file in a background thread (OpenCV releases the GIL while it
  decodes) into a small bounded queue, so decoding overlaps the analysis and memory stays
  flat whatever the length.
* :class:`LiveFrames` reads a camera or stream as fast as it delivers, or a file at its own
  frame rate as if it were a camera, and keeps only the newest frame: when the analysis falls
  behind, older frames are dropped (and counted), never queued.
* :class:`AnnotatedVideo` pipes drawn frames to the ``ffmpeg`` binary shipped by the
  ``imageio-ffmpeg`` package: H.264, yuv420p, ``+faststart``, which every browser plays.
"""

import os
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from common.errors import VideoError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
#: Seconds a stream may take to connect, or to deliver its next frame, before the run gives up.
STREAM_TIMEOUT = 10.0
#: Frames decoded ahead of the analysis (each a few hundred kB): enough to keep both busy.
QUEUE_FRAMES = 8
#: Leading bytes of the video containers recognised: such a file that cannot be opened is
#: damaged, not foreign. MPEG-TS needs its sync byte at three packet starts (a GIF starts with 0x47 too).
_CONTAINERS = (("mp4", lambda h: h[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")),
               ("mkv", lambda h: h[:4] == b"\x1a\x45\xdf\xa3"),
               ("avi", lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI "),
               ("mpg", lambda h: h[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")),
               ("flv", lambda h: h[:3] == b"FLV"),
               ("wmv", lambda h: h[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),
               ("ogv", lambda h: h[:4] == b"OggS"),
               ("ts", lambda h: len(h) > 376 and h[0] == h[188] == h[376] == 0x47))
#: Bytes read to recognise a container.
HEAD = 512


def container_of(head):
    """The container a file's first bytes announce (``mp4``, ``mkv``, ...), None for anything else."""
    return next((name for name, test in _CONTAINERS if test(head)), None)


def _quiet_opencv():
    """FFmpeg's and OpenCV's log lines ("moov atom not found", camera warnings) off: errors are ours."""
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@dataclass(frozen=True)
class SourceInfo:
    """What a source is: ``kind`` file, camera or stream; ``frame_count`` None when unknown (live)."""

    name: str
    kind: str
    fps: float | None
    frame_count: int | None
    width: int
    height: int

    @property
    def live(self):
        return self.kind != "file"


def source_kind(source):
    """``camera`` for an index ("0"), ``stream`` for a URL (rtsp://, http://, ...), else ``file``."""
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return "camera"
    return "stream" if "://" in text else "file"


def _file_head(path):
    """The first bytes of a file that exists and can be read (VideoError otherwise)."""
    try:
        if os.path.isdir(path):
            raise VideoError(f"{path}: a folder, not a video file")
        with open(path, "rb") as fh:
            head = fh.read(HEAD)
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except PermissionError:
        raise VideoError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not head:
        raise VideoError(f"{path}: empty file (0 bytes)")
    return head


def _diagnose(path):
    """Why a file that starts like a video cannot be opened, asking ffmpeg when it is installed."""
    try:
        import imageio_ffmpeg

        probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True,
                               text=True, errors="replace", timeout=20).stderr
    except (ImportError, OSError, subprocess.SubprocessError):
        probe = ""
    if "Stream #" in probe and "Video:" not in probe:
        return "the file holds no video stream (sound only?)"
    return "damaged or truncated video file (its header or index cannot be read)"


def _open_capture(source, kind, timeout):
    if kind == "camera":
        return cv2.VideoCapture(int(source))
    if kind == "stream":
        ms = int(timeout * 1000)
        return cv2.VideoCapture(str(source), cv2.CAP_FFMPEG,
                                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    return cv2.VideoCapture(os.fspath(source), cv2.CAP_FFMPEG)


def _frames_up_to(path, n):
    """How many frames (at most ``n``) FFmpeg decodes from the start of the file at ``path``. A file
    outside the video containers (:func:`container_of`) may be a photo, which FFmpeg opens as a
    one-frame stream, or a raw MJPEG or an animated GIF, which start like photos: only counting
    frames tells them apart (frame counts of such files are not reported reliably)."""
    probe = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG)
    try:
        count = 0
        while count < n and probe.isOpened() and probe.grab():
            count += 1
        return count
    finally:
        probe.release()


def open_source(source, timeout=STREAM_TIMEOUT):
    """(cv2.VideoCapture, SourceInfo) for a file path, a camera index or a stream URL.

    Raises VideoError with one line: no such file, not a video, damaged, no camera, stream
    unreachable (within ``timeout`` seconds: the connection runs in a helper thread that is
    abandoned if OpenCV does not give up by itself).
    """
    _quiet_opencv()
    kind = source_kind(source)
    name = str(source)
    head = _file_head(name) if kind == "file" else b""
    box = {}
    began = time.monotonic()

    def work():
        try:
            box["cap"] = _open_capture(source, kind, timeout)
        except cv2.error as exc:  # pragma: no cover - OpenCV raises instead of failing quietly on some builds
            box["error"] = str(exc).strip().splitlines()[-1]

    if kind == "stream":
        helper = threading.Thread(target=work, daemon=True, name="open-stream")
        helper.start()
        helper.join(timeout + 2.0)
        if helper.is_alive():
            raise VideoError(f"{name}: stream not reachable (no answer within {timeout:g} s)")
    else:
        work()
    cap = box.get("cap")
    if cap is None or not cap.isOpened():
        if cap is not None:
            cap.release()
        if kind == "camera":
            raise VideoError(f"camera {name}: no camera with this index (or it is busy)")
        if kind == "stream":
            if time.monotonic() - began >= 0.9 * timeout:
                raise VideoError(f"{name}: stream not reachable (no answer within {timeout:g} s)")
            raise VideoError(f"{name}: stream not reachable or not a video stream")
        if container_of(head):
            raise VideoError(f"{name}: {_diagnose(name)}")
        raise VideoError(f"{name}: not a video file (or a format this build of FFmpeg cannot read)")
    if kind == "file" and container_of(head) is None and _frames_up_to(name, 2) < 2:
        cap.release()
        raise VideoError(f"{name}: not a video file but a still image (one frame): use `facial-expressions predict` "
                         f"for photos")
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" else 0
    info = SourceInfo(name=name, kind=kind, fps=float(fps) if fps and 0 < fps < 1000 else None,
                      frame_count=count if count > 0 else None,
                      width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return cap, info


def to_gray(image):
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


class FileFrames:
    """Frames ``first`` .. ``stop - 1`` of an opened file, decoded ahead in a background thread.

    Iterating yields ``(index, bgr or None, gray or None, cut)`` for the frames ``wanted(index)``
    selects (``gray``), and with ``images=True`` for every frame (``bgr``; unwanted ones have
    ``gray`` None). ``cut`` says whether ``cuts`` (a :class:`facial_expressions.tracking.CutDetector`,
    shown every decoded frame) saw a cut since the previous item. After the loop,
    ``stopped_at`` is the index of the first frame that could not be read before ``stop``
    (None when all were).
    """

    def __init__(self, cap, first, stop, wanted, cuts, images=False):
        self.cap, self.first, self.stop_index, self.wanted, self.images = cap, first, stop, wanted, images
        self.cuts = cuts
        self.stopped_at = None
        self._queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._halt = threading.Event()
        self._thread = None

    def _seek(self):
        if self.first <= 0:
            return 0
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.first)
        position = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
        while position < self.first and self.cap.grab():   # a container that cannot seek exactly
            position += 1
        return position

    def _put(self, item):
        while not self._halt.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        cut = False
        try:
            index = self._seek()
            while index < self.stop_index and not self._halt.is_set():
                ok, bgr = self.cap.read()
                if not ok:
                    self.stopped_at = index
                    break
                cut = self.cuts.is_cut(bgr) or cut
                want = self.wanted(index)
                if want or self.images:
                    if not self._put((index, bgr if self.images else None, to_gray(bgr) if want else None, cut)):
                        return
                    cut = False
                index += 1
        except cv2.error:
            self.stopped_at = index
        finally:
            self._put(None)

    def __iter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True, name="decode")
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                yield item
        finally:
            self.close()

    def close(self):
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.cap.release()


class LiveFrames:
    """The newest frame of a camera, a stream, or a file read at its own pace (``pace=fps``).

    A reader thread keeps only the latest frame; ``next()`` waits for one newer than the last
    taken and returns ``(index, arrival, bgr, dropped, cut)``: ``arrival`` is ``time.monotonic()``
    when the frame was read, ``dropped`` how many frames were replaced before anyone took them,
    ``cut`` whether ``cuts`` (shown every frame read) saw a cut since the last frame taken.
    Returns None when the source ends or delivers nothing for ``timeout`` seconds.
    """

    def __init__(self, cap, cuts, pace=None, first=0, timeout=STREAM_TIMEOUT):
        self.cap, self.cuts, self.pace, self.first, self.timeout = cap, cuts, pace, first, timeout
        self._cut = False
        self._lock = threading.Condition()
        self._slot = None
        self._taken = -1
        self._ended = False
        self._halt = threading.Event()
        self.dropped = 0
        self.read = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-reader")
        self._thread.start()

    def _run(self):
        index = 0
        if self.pace:   # a file: from its first frame asked for, whatever was read before
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.first)
            index = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
        started = time.monotonic()
        try:
            while not self._halt.is_set():
                ok, bgr = self.cap.read()
                if not ok:
                    break
                cut = self.cuts.is_cut(bgr)
                if self.pace:   # a file played as if it were a camera: frame i arrives at i / fps
                    delay = started + (index - self.first) / self.pace - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                with self._lock:
                    if self._slot is not None and self._slot[0] > self._taken:
                        self.dropped += 1
                    self._slot = (index, time.monotonic(), bgr)
                    self._cut = self._cut or cut
                    self.read += 1
                    self._lock.notify_all()
                index += 1
        except cv2.error:
            pass
        finally:
            with self._lock:
                self._ended = True
                self._lock.notify_all()

    def next(self):
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while self._slot is None or self._slot[0] <= self._taken:
                if self._ended or self._halt.is_set():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.1))
            index, arrival, bgr = self._slot
            self._taken, cut, self._cut = index, self._cut, False
            return index, arrival, bgr, self.dropped, cut

    def close(self):
        self._halt.set()
        self._thread.join(timeout=5)
        self.cap.release()


# ---- the annotated video ----

#: Box colours (BGR), one per face id in turn: matplotlib's tab10.
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def draw_faces(image, faces):
    """Draw each face's box, id, label and confidence on a BGR image (in place). The label sits
    above the box, moved left where it would run off the frame's right edge (a smaller font only
    where it is wider than the frame)."""
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    for face_id, p in faces.items():
        colour = PALETTE[(face_id - 1) % len(PALETTE)]
        x, y, w, h = p.box
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness)
        text = f"{face_id}: {p.label} {p.confidence:.0%}" + (f", {p.age:.0f}, {p.gender}" if p.age is not None else "")
        font_scale = max(0.4, max(image.shape[:2]) / 1200)
        tw = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][0]
        if tw + 2 * thickness >= image.shape[1]:   # the band spans tw + 2 * thickness + 1 columns
            font_scale *= (image.shape[1] - 1 - 2 * thickness) / tw
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y - th - base - 2 * thickness, 0)
        left = max(0, min(x, image.shape[1] - 1 - tw - 2 * thickness))
        cv2.rectangle(image, (left, top), (left + tw + 2 * thickness, top + th + base + 2 * thickness), colour, -1)
        cv2.putText(image, text, (left + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def ffmpeg_binary():
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (VideoError when it is not installed)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("--annotate needs the imageio-ffmpeg package for its H.264 encoder "
                         "(pip install imageio-ffmpeg, or `make install`)") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


class AnnotatedVideo:
    """Frames piped to ffmpeg as they come (memory stays flat): H.264 yuv420p MP4 at ``path``."""

    def __init__(self, path, width, height, fps):
        self.path, self.size = path, (width, height)
        self.frames = 0
        self.next_index = None   # a live run's next source frame (dropped frames repeat the last one)
        self._log = tempfile.TemporaryFile()
        command = [ffmpeg_binary(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
                   "-s", f"{width}x{height}", "-r", f"{fps:.6g}", "-i", "-", "-an",
                   "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                   "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", path]
        # its own session: the Ctrl-C that ends a live run must not stop the encoder before it finishes
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=self._log, start_new_session=True)

    def write(self, image):
        if image.shape[1::-1] != self.size:
            image = cv2.resize(image, self.size)
        try:
            self._process.stdin.write(np.ascontiguousarray(image).tobytes())
        except BrokenPipeError:
            raise VideoError(f"{self.path}: the video encoder stopped ({self._error()})") from None
        self.frames += 1

    def _error(self):
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else f"exit code {self._process.poll()}"

    def close(self):
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        if self._process.wait() != 0:
            raise VideoError(f"{self.path}: the video encoder failed ({self._error()})")
        self._log.close()

    def abort(self):
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._log.close()
