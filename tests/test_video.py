"""facial_expressions.video on the real clips in ../shared/videos: timeline, ids, cuts, outputs, bad input, live.

Short ranges or every Nth frame wherever the assertion allows, so the module stays well
under two minutes of CPU. Clips (see ../shared/videos/README.md): d0 (78 frames, 25 fps,
one face), d3 and d9 (one face each), short_hamilton_clip (cuts at frames 20, 82 and 211).
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import PROJECT_DIR, SHARED_DIR

from classifiers import load_model
from common.errors import VideoError
from facial_expressions import video as video_cli
from facial_expressions.video import analyse_to_folder, analyse_video

pytestmark = pytest.mark.integration

VIDEOS = SHARED_DIR / "videos"
HAMILTON_CUTS = (20, 82, 211)


def clip(name):
    path = VIDEOS / name
    if not path.is_file():
        pytest.fail(f"{path} not found: the video tests need ../shared/videos (see its README.md)", pytrace=False)
    return str(path)


def ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True, timeout=60)


def frame_count(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(args):
    result = CliRunner().invoke(video_cli.main, [str(a) for a in args])
    return result.exit_code, result.output


def one_error_line(output):
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture(scope="module")
def model():
    return load_model()


# ---- outputs ----

def test_timeline_has_one_row_per_face_per_analysed_frame(tmp_path, model):
    out = tmp_path / "d0"
    result = analyse_to_folder(clip("d0.mp4"), out, model=model, every=3)
    rows = read_rows(out / "timeline.csv")
    assert list(rows[0]) == (["frame", "time_s", "face_id", "x", "y", "w", "h", "label"]
                             + [f"p_{c}" for c in model.labels] + ["valence", "arousal"])
    frames = sorted({int(r["frame"]) for r in rows})
    assert result.frames == 26 and frames == list(range(0, 78, 3))   # one face in every analysed frame
    assert len(rows) == result.rows == 26
    for r in rows:
        assert abs(float(r["time_s"]) - int(r["frame"]) / 25.0) < 1e-3
        p = {c: float(r[f"p_{c}"]) for c in model.labels}
        assert abs(sum(p.values()) - 1) < 2e-3 and r["label"] == max(p, key=p.get)
        assert -1 <= float(r["valence"]) <= 1 and int(r["w"]) > 100
    summary = json.loads((out / "summary.json").read_text())
    face = summary["faces"]["1"]
    assert face["first_seen_s"] == 0.0 and face["last_seen_s"] == pytest.approx(75 / 25.0)
    assert face["seconds_visible"] == pytest.approx(26 * 3 / 25.0) and face["frames"] == 26
    assert set(face["emotions"]) == set(model.labels)
    assert sum(e["share_of_time"] for e in face["emotions"].values()) == pytest.approx(1, abs=1e-3)
    # d0: neutral, a wide grin, back to neutral
    assert face["emotions"]["happy"]["strongest"]["probability"] > 0.8
    assert 0.5 < face["emotions"]["happy"]["strongest"]["time_s"] < 2.7
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(out) if n.startswith(".")]   # no temporary file left


def test_formats_landmarks_sampling_by_rate(tmp_path, model):
    import pyarrow.parquet as pq  # a dependency: --format parquet is part of the product

    analyse_to_folder(clip("d0.mp4"), tmp_path / "j", model=model, fmt="jsonl", landmarks=True, fps=5, end=1.0)
    rows = [json.loads(line) for line in (tmp_path / "j" / "timeline.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 5, 10, 15, 20]           # 5 frames per second of a 25 fps clip
    assert {"x67", "y67", "p_happy", "valence"} <= set(rows[0])
    assert abs(rows[0]["x36"] - rows[0]["x"]) < rows[0]["w"]          # eye corner inside the face's box
    analyse_to_folder(clip("d0.mp4"), tmp_path / "p", model=model, fmt="parquet", every=10)
    table = pq.read_table(tmp_path / "p" / "timeline.parquet")
    assert table.num_rows == 8 and table.column("frame").to_pylist() == list(range(0, 78, 10))


@pytest.mark.parametrize("args, message", [
    (["--start", "4", "--end", "2"], "--end (2 s) must come after --start (4 s)"),
    (["--end", "0"], "--end (0 s) must come after --start (0 s)"),
    (["--every", "2", "--fps", "5"], "choose one of --every and --fps"),
    (["--end", "1:70"], "'1:70' is not a time"),
    (["--mode", "lift"], "--mode applies only with --recommend CATALOGUE"),
])
def test_wrong_usage_exits_2_before_the_video_is_opened(tmp_path, args, message):
    code, output = run_cli([clip("d0.mp4"), "-o", tmp_path / "out"] + args)
    assert code == 2 and message in output, output
    assert not (tmp_path / "out").exists()


def test_no_mirror_reads_each_frames_face_as_it_is(tmp_path, model):
    """--no-mirror reaches recognise: the same faces, other probabilities, each frame's exactly
    recognise(mirror=False) on its box; summary.json records the setting."""
    from classifiers import recognise

    code, output = run_cli([clip("d0.mp4"), "-o", tmp_path / "plain", "--fps", "5", "--end", "1", "--no-mirror", "-q"])
    assert code == 0, output
    averaged = analyse_to_folder(clip("d0.mp4"), tmp_path / "averaged", model=model, fps=5, end=1.0)
    plain_rows, averaged_rows = (read_rows(tmp_path / name / "timeline.csv") for name in ("plain", "averaged"))
    assert [r["frame"] for r in plain_rows] == [r["frame"] for r in averaged_rows] and averaged.frames == 5
    assert any(a["p_happy"] != b["p_happy"] for a, b in zip(plain_rows, averaged_rows))
    summary = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["options"]["mirror"] is False
    cap = cv2.VideoCapture(clip("d0.mp4"))
    ok, frame = cap.read()
    cap.release()
    row = plain_rows[0]
    box = tuple(int(row[k]) for k in ("x", "y", "w", "h"))
    face = recognise(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), model=model, boxes=[box], mirror=False)[0]
    assert float(row["p_happy"]) == pytest.approx(face.probabilities["happy"], abs=1e-4)


def test_annotated_video_plays_and_keeps_every_frame_of_the_range(tmp_path, model):
    out = tmp_path / "a"
    analyse_to_folder(clip("d0.mp4"), out, model=model, annotate=True, every=4, start=0.5, end=2.5)
    # frames 13 (0.52 s) to 62 (2.48 s): all of them drawn, every 4th analysed
    assert frame_count(out / "annotated.mp4") == 50
    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out / "annotated.mp4")],
                           capture_output=True, text=True).stderr
    assert "h264" in probe and "yuv420p" in probe
    assert len({r["frame"] for r in read_rows(out / "timeline.csv")}) == 13
    # a second run into the folder without --annotate keeps the first run's video, and says so
    again = analyse_to_folder(clip("d0.mp4"), out, model=model, every=20, end=1.0)
    assert again.stale == ("annotated.mp4",) and "not rewritten: annotated.mp4" in again.line()
    assert frame_count(out / "annotated.mp4") == 50


def test_smoothing_and_calibration_keep_probabilities_valid(model):
    # one view (mirror=False): the frame-to-frame jitter smoothing is there to remove is mostly dlib's,
    # which reading each face with its mirror image already reduces; smoothing acts the same either way
    def series(**options):
        frames = list(analyse_video(clip("d0.mp4"), model=model, every=2, mirror=False, **options))
        return np.array([[f.faces[1].probabilities[c] for c in model.labels] for f in frames])

    raw, smooth, calibrated = series(), series(smooth=0.5), series(calibrate=True)
    for p in (smooth, calibrated):
        assert p.shape == raw.shape and np.allclose(p.sum(axis=1), 1, atol=1e-6)
    # smoothing: less jitter between frames, and the grin's peak is lower and later
    assert np.abs(np.diff(smooth, axis=0)).sum() < 0.6 * np.abs(np.diff(raw, axis=0)).sum()
    happy = model.labels.index("happy")
    assert smooth[:, happy].max() <= raw[:, happy].max()
    assert np.argmax(smooth[:, happy] > 0.5) > np.argmax(raw[:, happy] > 0.5)
    assert not np.allclose(calibrated, raw, atol=1e-3)


def test_recommendation_per_face(tmp_path, model):
    catalogue = SHARED_DIR / "music" / "deezer_mood.csv"
    code, output = run_cli([clip("d0.mp4"), "-o", tmp_path / "r", "--every", "6", "--recommend", catalogue,
                            "--tracks", "3", "-q"])
    assert code == 0, output
    face = json.loads((tmp_path / "r" / "summary.json").read_text())["faces"]["1"]
    assert len(face["recommendation"]["tracks"]) == 3 and face["recommendation"]["label"] == face["dominant"]


def test_age_gender_columns_and_summary_per_face(tmp_path, model):
    """--age-gender adds age, gender, p_female to every row (the expression unchanged) and, per
    face, the median apparent age over the clip and each apparent gender's share of the time."""
    plain = read_rows(analyse_to_folder(clip("d0.mp4"), tmp_path / "plain", model=model, every=6).folder
                      + "/timeline.csv")
    code, output = run_cli([clip("d0.mp4"), "-o", tmp_path / "ag", "--every", "6", "--age-gender", "--quiet"])
    assert code == 0, output
    rows = read_rows(tmp_path / "ag" / "timeline.csv")
    assert list(rows[0]) == list(plain[0]) + ["age", "gender", "p_female"]
    assert [(r["frame"], r["label"], r["p_happy"]) for r in rows] == [(r["frame"], r["label"], r["p_happy"])
                                                                       for r in plain]
    ages = [float(r["age"]) for r in rows]
    assert len(rows) == 13 and all(15 < a < 70 for a in ages), ages   # d0: an adult
    for r in rows:
        assert r["gender"] == ("female" if float(r["p_female"]) >= 0.5 else "male")
    summary = json.loads((tmp_path / "ag" / "summary.json").read_text())
    apparent = summary["faces"]["1"]["apparent"]
    assert apparent["median_age"] == pytest.approx(np.median(ages), abs=0.5)
    female = np.mean([r["gender"] == "female" for r in rows])
    assert apparent["female_share"] == pytest.approx(female, abs=1e-3)
    assert apparent["gender"] == ("female" if female > 0.5 else "male")
    assert set(summary["age_gender_models"]) == {"age", "gender"}
    assert "research" in summary["age_gender_models"]["age"]["terms"]


# ---- tracking ----

@pytest.mark.parametrize("name", ["d3.mp4", "d9.mp4"])
def test_one_face_keeps_one_id_for_the_whole_clip(name, model):
    frames = list(analyse_video(clip(name), model=model, every=3))
    ids = {i for f in frames for i in f.faces}
    assert ids == {1}
    assert sum(1 in f.faces for f in frames) >= 0.95 * len(frames)
    assert not any(f.cut for f in frames)


def test_hamilton_cuts_end_the_tracks_and_faces_move_continuously(model):
    frames = list(analyse_video(clip("short_hamilton_clip.mp4"), model=model, every=2, upsample=1))
    cut_frames = [f.index for f in frames if f.cut]
    assert [min(HAMILTON_CUTS, key=lambda c: abs(c - i)) for i in cut_frames] == list(HAMILTON_CUTS)
    assert all(i - c in (0, 1) for i, c in zip(cut_frames, HAMILTON_CUTS))
    ids = {i for f in frames for i in f.faces}
    assert len(ids) >= 3
    shots = np.searchsorted(cut_frames, [f.index for f in frames], side="right")
    for face_id in ids:   # a face lives within one shot: no id crosses a cut
        assert len({s for f, s in zip(frames, shots) if face_id in f.faces}) == 1
    for before, after in zip(frames, frames[1:]):
        for face_id in set(before.faces) & set(after.faces):
            (x0, y0, w0, h0), (x1, y1, w1, h1) = before.faces[face_id].box, after.faces[face_id].box
            jump = np.hypot(x1 + w1 / 2 - x0 - w0 / 2, y1 + h1 / 2 - y0 - h0 / 2)
            assert jump < 0.6 * max(w0, w1), (face_id, before.index, after.index)


# ---- bad input ----

def test_truncated_file_keeps_rows_up_to_the_break(tmp_path):
    whole = tmp_path / "d3_faststart.mp4"    # index first, as streaming-friendly files are
    ffmpeg("-i", clip("d3.mp4"), "-c", "copy", "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    half = tmp_path / "d3_half.mp4"
    half.write_bytes(data[: len(data) // 2])
    code, output = run_cli([half, "-o", tmp_path / "out", "--every", "5", "-q"])
    assert code == 1
    line = one_error_line(output)
    assert "stops at frame" in line and "of 354" in line
    stopped = int(line.split("stops at frame ")[1].split()[0])
    assert 100 < stopped < 354
    rows = read_rows(tmp_path / "out" / "timeline.csv")
    frames = sorted({int(r["frame"]) for r in rows})
    assert frames[-1] < stopped and frames[-1] >= stopped - 5 and frames == list(range(0, frames[-1] + 1, 5))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "stops at frame" in summary["stopped"]
    # cut without its index (stored at the end of the shared clips): nothing can be read
    cut = tmp_path / "d3_cut.mp4"
    cut.write_bytes((VIDEOS / "d3.mp4").read_bytes()[:700_000])
    code, output = run_cli([cut, "-o", tmp_path / "out2", "-q"])
    assert code == 1 and "damaged or truncated" in one_error_line(output)
    assert not (tmp_path / "out2").exists()


def test_not_a_video_missing_empty_no_camera(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    g_text = tmp_path / "g.mp4"  # starts with 0x47 ("G") like MPEG-TS, but is not one
    g_text.write_text("Grades of the class\n" * 100)
    for source, expected in ((text, "not a video file"), (g_text, "not a video file"), (tmp_path / "missing.mp4", "no such file"),
                             (empty, "empty file"), ("7", "no camera")):
        code, output = run_cli([source, "-o", tmp_path / "out", "-q"])
        assert code == 1 and expected in one_error_line(output), output
        assert not (tmp_path / "out").exists()


def test_a_photo_is_not_a_video_but_a_raw_mjpeg_clip_that_starts_like_one_is(tmp_path):
    """A still image opens in FFmpeg as a one-frame stream: refused, pointing to predict. A raw MJPEG
    clip starts with a JPEG's bytes and an animated GIF with a GIF's: counting frames tells them apart."""
    photo = SHARED_DIR / "datasets" / "jaffe" / "happy" / "KA.HA1.29.tiff"
    one = tmp_path / "one.mjpeg"
    ffmpeg("-i", VIDEOS / "d0.mp4", "-frames:v", "1", "-c:v", "mjpeg", "-f", "mjpeg", one)
    assert one.read_bytes()[:3] == b"\xff\xd8\xff"
    for still in (photo, one):
        code, output = run_cli([still, "-o", tmp_path / "out", "-q"])
        line = one_error_line(output)
        assert code == 1 and "not a video file but a still image" in line and "facial-expressions predict" in line
        assert not (tmp_path / "out").exists()
    clip = tmp_path / "clip.mjpeg"
    ffmpeg("-i", VIDEOS / "d0.mp4", "-t", "1", "-c:v", "mjpeg", "-f", "mjpeg", clip)
    assert clip.read_bytes()[:3] == b"\xff\xd8\xff"
    code, output = run_cli([clip, "-o", tmp_path / "clip", "-q", "--every", "10"])
    assert code == 0 and len(read_rows(tmp_path / "clip" / "timeline.csv")) >= 2, output


def test_video_without_faces_or_frames(tmp_path):
    blank = tmp_path / "blank.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=1", "-pix_fmt", "yuv420p", blank)
    code, output = run_cli([blank, "-o", tmp_path / "blank", "-q"])
    assert code == 3 and "10 frames analysed" in output and ", 0 face ids" in output
    assert read_rows(tmp_path / "blank" / "timeline.csv") == []
    assert json.loads((tmp_path / "blank" / "summary.json").read_text())["faces"] == {}
    sound = tmp_path / "sound_only.mp4"   # a container with no video frame at all
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0.5", "-c:a", "aac", sound)
    code, output = run_cli([sound, "-o", tmp_path / "sound", "-q"])
    assert code == 1 and "no video stream" in one_error_line(output)


def test_unreachable_stream_fails_in_bounded_time(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()                      # nothing listens there now
    started = time.monotonic()
    code, output = run_cli([f"rtsp://127.0.0.1:{port}/live", "-o", tmp_path / "s", "-q"])
    assert code == 1 and "stream not reachable" in one_error_line(output)
    assert time.monotonic() - started < 15
    silent = socket.socket()            # accepts the connection, then never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    threading.Thread(target=lambda: silent.accept(), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(VideoError, match="not reachable"):
        next(analyse_video(f"http://127.0.0.1:{silent.getsockname()[1]}/x.mp4", timeout=2))
    assert time.monotonic() - started < 8
    silent.close()


# ---- live ----

def test_live_path_drops_frames_when_behind_and_records_latency(model):
    fast = list(analyse_video(clip("d0.mp4"), model=model, realtime=True, end=1.5))
    assert fast and all(f.latency is not None and 0 <= f.latency < 1 for f in fast)
    indices = [f.index for f in fast]
    assert indices == sorted(set(indices)) and indices[-1] <= 37
    # a consumer that needs 0.2 s per frame against 25 frames/s: most frames are dropped, never queued
    slow = []
    for f in analyse_video(clip("d0.mp4"), model=model, realtime=True, end=1.5):
        slow.append(f)
        time.sleep(0.2)
    assert len(slow) <= 10 and slow[-1].dropped >= 20
    assert all(b.index - a.index >= 3 for a, b in zip(slow, slow[1:]))     # always the newest frame
    assert max(f.latency for f in slow) < 0.15                            # waiting frames were dropped


def test_ctrl_c_ends_a_live_run_and_writes_everything(tmp_path):
    out = tmp_path / "live"
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
    process = subprocess.Popen([sys.executable, "-m", "facial_expressions", "video", clip("d6.mp4"), "-o", out,
                                "--realtime", "--every", "3", "-q"], cwd=PROJECT_DIR, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "summary.json.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(5.0)  # the first frame loads the models (0.4-2.7 s, longer on a loaded machine), then ~10 frames/s
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"].startswith("interrupted") and summary["frames_analysed"] >= 5
    assert summary["live"]["latency_ms"]["frames"] == summary["frames_analysed"]
    assert len(read_rows(out / "timeline.csv")) >= 5 and (out / "timeline.png").exists()


def test_a_killed_run_leaves_no_half_written_output(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
    process = subprocess.Popen([sys.executable, "-m", "facial_expressions", "video", clip("d6.mp4"), "-o", out,
                                "--annotate", "-q"], cwd=PROJECT_DIR, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(n.startswith(".timeline.csv.tmp") for n in (os.listdir(out) if out.exists() else [])):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    process.kill()
    process.wait()
    names = os.listdir(out)
    assert not {"timeline.csv", "summary.json", "timeline.png", "annotated.mp4"} & set(names), names


# ---- many videos ----

def test_folder_runs_each_video_in_its_own_process(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    os.symlink(clip("d0.mp4"), folder / "d0.mp4")
    os.symlink(clip("d10.mp4"), folder / "d10.mp4")
    (folder / "broken.mp4").write_text("no video here")
    code, output = run_cli([folder, "-o", tmp_path / "out", "--end", "1", "--every", "5", "--jobs", "2", "-q"])
    assert code == 1, output
    assert "error: " in output and "broken.mp4: not a video file" in output
    for name, frames in (("d0", 5), ("d10", 6)):
        assert len({r["frame"] for r in read_rows(tmp_path / "out" / name / "timeline.csv")}) == frames
