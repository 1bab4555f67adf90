"""What one analysis process does: load the models once, then turn uploaded files into answers.

The server writes each upload to its private folder (:mod:`.uploads`) and hands the file's
path (never one a request named) to a worker; the worker decodes it with
:func:`landmarks.io.read_image`, so uploads pass the same checks as files on the command line
(header sizes, decompression bombs, the JPEG scan limit), then calls
:func:`classifiers.recognise`. Answers are plain tuples, cheap to pickle:

``("ok", result)``                 result: {"faces": [FacePrediction.to_dict(), ...], "image": {...}, ...}
``("refused", status, message)``   the library refused the image (unreadable, not an image, too large)
``("failed", message)``            anything else went wrong (a bug): the server answers 500
"""

import base64
import io
import os

#: Longest side of the photo preview a worker sends back (the page shows it; browsers read no TIFF).
PREVIEW_SIDE = 1280


def hex_colour(rgb):
    """(r, g, b) -> "#rrggbb"."""
    return "#%02x%02x%02x" % tuple(int(c) for c in rgb)


class Analyser:
    """The models of one worker process, loaded once at start-up, and the analysis of one upload."""

    def __init__(self, model_path=None):
        from classifiers import load_model
        from landmarks import models

        self.model = load_model(model_path)
        models.shape_predictor()
        models.hog_detector()
        self.model.pipeline  # what explanations use: loaded now rather than on the first photo
        # the apparent age and gender models (35 MB, scikit-learn) load on the first age_gender request

    def __call__(self, job):
        from classifiers import recognise
        from common.errors import FacialExpressionError
        from landmarks.io import read_image

        from .errors import status_of, upload_message

        path = job["path"]
        try:
            pixels = read_image(path, "gray")
            faces = recognise(pixels, model=self.model, explain=job.get("explain", 0), detector=job.get("detector"),
                              age_gender=job.get("age_gender", False), explain_age_gender=0,
                              mirror=job.get("mirror", True))
            result = {"faces": [face.to_dict() for face in faces],
                      "image": {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])}}
            if job.get("explain"):
                self._add_parts(result, faces)
            if job.get("preview"):
                result["preview"] = self._preview(read_image(path, "rgb"))
            return ("ok", result)
        except FacialExpressionError as exc:
            return ("refused", status_of(exc), upload_message(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: the server answers 500 and logs it
            return ("failed", f"{type(exc).__name__}: {upload_message(exc)}")

    @staticmethod
    def _add_parts(result, faces):
        """Per face: the summed contribution of each face part, and the colours predict --annotate
        --explain gives each drawn part for them (green toward the label, red against)."""
        from classifiers.explain import part_colours

        result["parts"] = [dict(f.explanation.parts) if f.explanation else None for f in faces]
        result["part_colours"] = [{part: hex_colour(rgb) for part, rgb in part_colours(f.explanation.parts).items()}
                                  if f.explanation else None for f in faces]

    @staticmethod
    def _preview(rgb):
        """A JPEG data URL of the decoded photo (EXIF rotation applied), at most PREVIEW_SIDE px."""
        from PIL import Image

        img = Image.fromarray(rgb)
        img.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=88)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def serve_forever(conn, model_path):
    """Entry point of an analysis process: load, say ready, answer jobs until told to stop.

    One thread each for OpenCV and BLAS (the pool has a process per core); Ctrl-C belongs to
    the server, which stops the workers itself.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    try:
        import cv2
        from threadpoolctl import threadpool_limits

        cv2.setNumThreads(1)
        threadpool_limits(1)
        analyser = Analyser(model_path)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which fails in one line
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(analyser(job))
