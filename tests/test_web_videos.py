"""The video endpoints against a real ``facial-expressions serve`` on 127.0.0.1, with real clips of
../shared/videos (every Nth frame, to stay quick): a job's progress, its summary, timeline and files
(the same rows as ``analyse_to_folder`` in-process), and hostile uploads: not a video, an empty, a
damaged and a truncated one, oversized ones, path traversal in the id and the file name, a full
video pool, the time budget, results deleted after their time."""

import os
import socket
import subprocess
import time

import cv2
import httpx
import pytest

from web_helpers import Server

pytestmark = pytest.mark.integration

CATALOGUE_TRACKS = 10


@pytest.fixture(scope="module")
def videos(datasets_dir):
    return datasets_dir.parent / "videos"


@pytest.fixture(scope="module")
def server(tmp_path_factory, datasets_dir):
    catalogue = datasets_dir.parent / "music" / "deezer_mood.csv"
    with Server(str(tmp_path_factory.mktemp("web-videos")), "--workers", "1", "--catalogue", catalogue) as running:
        yield running


def post_video(server, path, query="", name=None, timeout=60):
    with open(path, "rb") as fh:
        files = {"file": (name or os.path.basename(path), fh.read())}
    return httpx.post(server.url(f"/api/videos{query}"), files=files, timeout=timeout)


def wait_for_job(server, job_id, timeout=240):
    """Poll the job until it ends -> (its last answer, every (status, progress) seen on the way)."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        answer = httpx.get(server.url(f"/api/videos/{job_id}"), timeout=10)
        assert answer.status_code == 200, answer.text
        job = answer.json()
        seen.append((job["status"], job["progress"]))
        if job["status"] in ("done", "failed"):
            return job, seen
        time.sleep(0.2)
    pytest.fail(f"the video job did not end within {timeout} s: {seen[-3:]}")


def raw_get(server, target):
    """GET ``target`` exactly as written (no client normalising '..' or %2f) -> (status, body text)."""
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("latin-1")


def job_folders(server):
    """The job folders in the server's private video folder(s)."""
    return [name for folder in os.listdir(server.tmp) if folder.startswith("facial-expressions-videos-")
            for name in os.listdir(os.path.join(server.tmp, folder))]


def faststart_copy(source, dest):
    """``source`` with its index moved first (as streaming-friendly files are), by imageio-ffmpeg's ffmpeg."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-c", "copy",
                    "-movflags", "+faststart", str(dest)], check=True, timeout=60)
    return dest


# ---- a job from upload to files ----------------------------------------------------------------

def test_a_video_job_gives_progress_then_the_same_results_as_the_library(server, videos, happy_photo, tmp_path):
    from facial_expressions.video import analyse_to_folder

    answer = post_video(server, videos / "d0.mp4", "?every=3&recommend=match")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/api/videos/{job['id']}" and len(job["id"]) == 32
    assert job["status"] == "running" and job["name"] == "d0.mp4"

    # the server keeps answering while the video is analysed: health at once, a photo too
    started = time.monotonic()
    assert httpx.get(server.url("/api/health"), timeout=5).json()["video_jobs_running"] == 1
    assert time.monotonic() - started < 2
    with open(happy_photo, "rb") as fh:
        photo = httpx.post(server.url("/api/analyze"), files={"file": ("p.tiff", fh.read())}, timeout=60)
    assert photo.status_code == 200 and photo.json()["faces"][0]["label"] == "happy"

    job, seen = wait_for_job(server, job["id"])
    assert job["status"] == "done" and job["error"] is None and job["stopped"] is None, job
    progress = [p for status, p in seen if status == "running"]
    assert progress == sorted(progress) and all(0 <= p <= 1 for p in progress) and job["progress"] == 1.0

    # the summary and the timeline are those of analyse_to_folder on the same clip
    local = tmp_path / "local"
    analyse_to_folder(videos / "d0.mp4", local, every=3)
    served_csv = httpx.get(server.url(job["files"]["timeline.csv"]), timeout=10)
    assert served_csv.status_code == 200 and served_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert served_csv.text == (local / "timeline.csv").read_text()
    summary = job["summary"]
    assert summary["frames_analysed"] == 26 and list(summary["faces"]) == ["1"] and job["main_face"] == "1"
    assert summary["input"] == "d0.mp4" and summary["source"]["name"] == "d0.mp4"
    assert summary["model"]["path"] == "default.skops"                 # no server path in what is sent
    assert job["timeline"]["labels"] == summary["model"]["labels"]
    face = job["timeline"]["faces"]["1"]
    assert face["time"] == [round(i * 3 / 25, 3) for i in range(26)] and len(face["probabilities"][0]) == 7
    assert max(p[summary["model"]["labels"].index("happy")] for p in face["probabilities"]) > 0.9   # the grin
    assert job["recommendation"]["label"] == summary["faces"]["1"]["dominant"]
    assert len(job["recommendation"]["tracks"]) == CATALOGUE_TRACKS

    # the files, with their content types; the video is H.264 MP4 with every frame, and seekable
    files = {name: httpx.get(server.url(path), timeout=30) for name, path in job["files"].items()}
    assert {n: r.headers["content-type"] for n, r in files.items()} == {
        "annotated.mp4": "video/mp4", "timeline.png": "image/png", "timeline.csv": "text/csv; charset=utf-8",
        "summary.json": "application/json"}
    assert files["timeline.png"].content.startswith(b"\x89PNG\r\n\x1a\n")
    assert files["summary.json"].json() == summary and str(server.tmp) not in files["summary.json"].text
    video = tmp_path / "annotated.mp4"
    video.write_bytes(files["annotated.mp4"].content)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 78 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 512
    assert int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"avc1", b"h264")
    capture.release()
    part = httpx.get(server.url(job["files"]["annotated.mp4"]), headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and len(part.content) == 100
    # the upload itself is gone; the results stay until they expire
    folder = next(f for f in os.listdir(server.tmp) if f.startswith("facial-expressions-videos-"))
    assert sorted(os.listdir(os.path.join(server.tmp, folder, job["id"]))) == ["out"]
    assert 0 < job["expires_in"] <= 3600


@pytest.fixture(scope="module")
def happy_photo(jaffe_dir):
    return jaffe_dir / "happy" / "KA.HA1.29.tiff"


# ---- hostile uploads ----------------------------------------------------------------------------

@pytest.mark.parametrize("content, name, status, message", [
    (b"these are notes, not a video\n" * 100, "notes.mp4", 415, "notes.mp4: not a video file"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 2000, "photo.png", 415, "photo.png: not a video file"),
    (b"", "empty.mp4", 400, "empty.mp4: the upload is empty"),
])
def test_what_is_not_a_video_is_refused_at_once(server, tmp_path, content, name, status, message):
    path = tmp_path / name
    path.write_bytes(content)
    before = sorted(job_folders(server))
    answer = post_video(server, path)
    assert answer.status_code == status and answer.json()["detail"].startswith(message), answer.text
    assert sorted(job_folders(server)) == before   # nothing is kept of it


def test_a_video_sent_as_json_or_without_a_file_field_is_refused(server):
    answer = httpx.post(server.url("/api/videos"), json={"video": "AAAA"}, timeout=10)
    assert answer.status_code == 415 and "multipart/form-data" in answer.json()["detail"]
    answer = httpx.post(server.url("/api/videos"), files={"clip": ("a.mp4", b"x")}, timeout=10)
    assert answer.status_code == 400 and "no file field 'file'" in answer.json()["detail"]


def test_a_damaged_video_fails_its_job_with_a_clear_message(server, videos, tmp_path):
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes((videos / "d0.mp4").read_bytes()[:1_400_000])   # index at the end: cut off
    answer = post_video(server, damaged, "?every=5")
    assert answer.status_code == 202
    job, _ = wait_for_job(server, answer.json()["id"])
    assert job["status"] == "failed" and job["files"] is None
    assert job["error"] == {"status": 400, "detail": "damaged.mp4: damaged or truncated video file (its header or "
                                                     "index cannot be read)"}
    assert httpx.get(server.url(f"/api/videos/{job['id']}/timeline.csv")).status_code == 404


def test_a_truncated_video_keeps_the_rows_before_the_break(server, videos, tmp_path):
    whole = faststart_copy(videos / "d3.mp4", tmp_path / "d3_faststart.mp4")
    data = whole.read_bytes()
    half = tmp_path / "d3_half.mp4"
    half.write_bytes(data[: len(data) // 2])
    answer = post_video(server, half, "?every=10")
    assert answer.status_code == 202
    job, _ = wait_for_job(server, answer.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["stopped"].startswith("d3_half.mp4: the video data stops at frame") and "of 354" in job["stopped"]
    stopped = int(job["stopped"].split("stops at frame ")[1].split()[0])
    rows = httpx.get(server.url(job["files"]["timeline.csv"])).text.splitlines()[1:]
    frames = sorted({int(row.split(",")[0]) for row in rows})
    assert 100 < stopped < 354 and frames == list(range(0, frames[-1] + 1, 10)) and frames[-1] >= stopped - 10


@pytest.fixture(scope="module")
def finished_job(server, videos):
    answer = post_video(server, videos / "d0.mp4", "?every=13&end=1")
    job, _ = wait_for_job(server, answer.json()["id"])
    assert job["status"] == "done"
    return job


@pytest.mark.parametrize("target", [
    "/api/videos/../../../../etc/passwd",
    "/api/videos/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/videos/%2e%2e/%2e%2e/etc/passwd",
    "/api/videos/{id}/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/videos/{id}/../../../etc/passwd",
    "/api/videos/{id}/%2e%2e",
    "/api/videos/{id}/input.mp4",
    "/api/videos/{id}/out",
    "/api/videos/{upper}/timeline.csv",
    "/api/videos/{id}%00/timeline.csv",
    "/api/videos/{id}x/timeline.csv",
])
def test_no_path_outside_a_job_s_own_files_can_be_reached(server, finished_job, target):
    job = finished_job
    status, body = raw_get(server, target.format(id=job["id"], upper=job["id"].upper()))
    assert status in (400, 404) and "root:" not in body, body[:200]
    status, body = raw_get(server, f"/api/videos/{job['id']}/summary.json")   # the real file is there
    assert status == 200 and '"frames_analysed": 2' in body


def test_bad_video_options_are_422(server, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    for query, message in [("?every=0", "every"), ("?every=2&fps=5", "choose one of every and fps"),
                           ("?start=4&end=2", "must come after start"), ("?colour=red", "unknown option"),
                           ("?detector=eyes", "detector")]:
        answer = post_video(server, clip, query)
        assert answer.status_code == 422 and message in answer.json()["detail"], (query, answer.text)


# ---- limits: size, pool, time, age ---------------------------------------------------------------

def test_video_and_photo_size_limits_are_separate(tmp_path, videos):
    with Server(str(tmp_path), "--workers", "1", "--max-upload-mb", "0.5", "--max-video-mb", "2") as server:
        big = post_video(server, videos / "d0.mp4")                        # 2.8 MB
        assert big.status_code == 413 and "limit of 2 MB" in big.json()["detail"]
        ok = post_video(server, videos / "d10.mp4", "?every=15&end=1")   # 1.0 MB: over the photo limit only
        assert ok.status_code == 202, ok.text
        with open(videos / "d10.mp4", "rb") as fh:    # the same 1.0 MB to the photo endpoint
            photo = httpx.post(server.url("/api/analyze"), files={"file": ("p.jpg", fh.read())}, timeout=60)
        assert photo.status_code == 413 and "limit of 0.5 MB" in photo.json()["detail"]
        assert wait_for_job(server, ok.json()["id"])[0]["status"] == "done"


def test_a_full_video_pool_is_503_at_once_and_a_job_over_its_budget_fails(tmp_path, videos):
    with Server(str(tmp_path), "--workers", "1", "--video-jobs", "1", "--video-time-budget", "6") as server:
        long = post_video(server, videos / "d6.mp4")                      # 1008 frames: longer than 6 s here
        assert long.status_code == 202
        started = time.monotonic()
        busy = post_video(server, videos / "d0.mp4")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "10" and time.monotonic() - started < 3
        assert "already running" in busy.json()["detail"]
        assert httpx.get(server.url("/api/health"), timeout=5).json()["video_jobs_running"] == 1
        job, _ = wait_for_job(server, long.json()["id"], timeout=60)
        assert job["status"] == "failed" and job["error"]["status"] == 503
        assert "longer than this server's time budget for a video (6 s)" in job["error"]["detail"]
        again = post_video(server, videos / "d0.mp4", "?every=13")       # the place is free again
        assert again.status_code == 202, again.text


def test_mirror_false_reads_the_video_as_the_library_does_without_the_mirror(server, videos, tmp_path):
    from facial_expressions.video import analyse_to_folder

    answer = post_video(server, videos / "d0.mp4", "?every=13&mirror=false")
    assert answer.status_code == 202, answer.text
    job, _ = wait_for_job(server, answer.json()["id"])
    assert job["status"] == "done" and job["summary"]["options"]["mirror"] is False, job
    analyse_to_folder(videos / "d0.mp4", tmp_path / "one", every=13, mirror=False)
    analyse_to_folder(videos / "d0.mp4", tmp_path / "both", every=13)
    served = httpx.get(server.url(job["files"]["timeline.csv"]), timeout=10).text
    assert served == (tmp_path / "one" / "timeline.csv").read_text() != (tmp_path / "both" / "timeline.csv").read_text()


def test_results_are_deleted_after_their_time_and_when_the_server_stops(tmp_path, videos):
    with Server(str(tmp_path), "--workers", "1", "--video-ttl", "2") as server:
        kept = post_video(server, videos / "d0.mp4", "?every=13")
        job, _ = wait_for_job(server, kept.json()["id"])
        assert job["status"] == "done" and job_folders(server) == [job["id"]]
        end = time.monotonic() + 15
        while httpx.get(server.url(f"/api/videos/{job['id']}")).status_code == 200:
            assert time.monotonic() < end, "the job outlived its time"
            time.sleep(0.25)
        gone = httpx.get(server.url(f"/api/videos/{job['id']}/annotated.mp4"))
        assert gone.status_code == 404 and "expired" in gone.json()["detail"]
        assert job_folders(server) == []
        running = post_video(server, videos / "d6.mp4")                  # still running when the server stops
        assert running.status_code == 202
        time.sleep(1)
        assert job_folders(server) == [running.json()["id"]]
        assert server.stop() == 130
    assert not [f for f in os.listdir(server.tmp) if f.startswith("facial-expressions-")]


def test_recommend_without_a_catalogue_is_refused(tmp_path, videos):
    with Server(str(tmp_path), "--workers", "1") as server:
        answer = post_video(server, videos / "d0.mp4", "?recommend=match")
        assert answer.status_code == 422 and "no music catalogue" in answer.json()["detail"]
