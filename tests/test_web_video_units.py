"""The web app's video jobs without a server or a video: containers recognised from their first bytes,
names made harmless, ids and file names checked before any path is built, old results swept, the
timeline thinned for the page, progress of a range."""

import os
import time
from types import SimpleNamespace

import pytest

from facial_expressions.web.errors import ApiError, Busy
from facial_expressions.web.video_jobs import MAX_KEPT, VideoJobs
from facial_expressions.web.video_worker import compact_timeline, fraction_done
from facial_expressions.web.videos import display_name


@pytest.mark.parametrize("given, shown", [
    ("clip.mp4", "clip.mp4"), ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\clip.mov", "clip.mov"),
    ("a\x00b\nc\x1b[31m.mp4", "abc[31m.mp4"), ("", "video"), (None, "video"), ("/", "video"),
    ("x" * 300 + ".mp4", "x" * 100),
])
def test_upload_names_are_made_harmless(given, shown):
    assert display_name(given) == shown


@pytest.fixture
def jobs(tmp_path):
    manager = VideoJobs(limit=1, ttl=60, parent=str(tmp_path))
    yield manager
    manager.close()


def finished(jobs, age):
    job = jobs.create("clip.mp4", {})
    os.makedirs(job.out_dir)
    with open(os.path.join(job.out_dir, "timeline.csv"), "w") as fh:
        fh.write("frame\n")
    job.status, job.finished = "done", time.time() - age
    return job


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "", "0" * 31, "0" * 33, "G" * 32, "0" * 31 + "/",
                                 "0123456789ABCDEF0123456789ABCDEF", None, 42])
def test_job_ids_are_checked_before_any_path_is_built(jobs, bad):
    with pytest.raises(ApiError) as refused:
        jobs.get(bad)
    assert refused.value.status == 404


def test_only_the_listed_files_of_a_finished_job_are_served(jobs):
    job = finished(jobs, age=0)
    path, media_type = jobs.output(job.id, "timeline.csv")
    assert path == os.path.realpath(os.path.join(job.folder, "out", "timeline.csv"))
    assert media_type.startswith("text/csv")
    for name in ["../../../etc/passwd", "..", "input.mp4", "out", "timeline.csv/..", "summary.json"]:
        with pytest.raises(ApiError) as refused:   # summary.json is listed, but this job has none
            jobs.output(job.id, name)
        assert refused.value.status == 404
    job.status = "running"
    with pytest.raises(ApiError, match="running"):
        jobs.output(job.id, "timeline.csv")


def test_a_second_place_is_refused_until_the_first_is_given_back(jobs):
    jobs.reserve()
    with pytest.raises(Busy) as busy:
        jobs.reserve()
    assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "10"}
    jobs.release()
    jobs.reserve()


def test_old_results_are_swept_and_at_most_max_kept_stay(jobs):
    old, new = finished(jobs, age=120), finished(jobs, age=1)
    stray = os.path.join(jobs.folder, "f" * 32)
    os.mkdir(stray)
    os.utime(stray, (time.time() - 120,) * 2)
    jobs.sweep()
    assert list(jobs.jobs) == [new.id] and sorted(os.listdir(jobs.folder)) == [new.id]
    assert not os.path.exists(old.folder) and not os.path.exists(stray)
    many = [finished(jobs, age=30 - i * 0.01) for i in range(MAX_KEPT + 5)]   # all older than `new`
    jobs.sweep()
    assert len(jobs.jobs) == MAX_KEPT and new.id in jobs.jobs and many[-1].id in jobs.jobs
    assert not any(job.id in jobs.jobs or os.path.exists(job.folder) for job in many[:6])


def test_the_timeline_is_thinned_per_face_for_the_page(tmp_path):
    path = tmp_path / "timeline.csv"
    lines = ["frame,time_s,face_id,x,y,w,h,label,p_happy,p_sad,valence,arousal"]
    lines += [f"{i},{i / 30:.4f},1,0,0,10,10,happy,0.9,0.1,0.5,0.2" for i in range(1500)]
    lines += [f"{i},{i / 30:.4f},2,0,0,10,10,sad,0.2,0.8,-0.5,-0.2" for i in range(0, 300, 3)]
    path.write_text("\n".join(lines) + "\n")
    timeline = compact_timeline(path, ["happy", "sad"], points=600)
    assert timeline["labels"] == ["happy", "sad"] and sorted(timeline["faces"]) == ["1", "2"]
    one, two = timeline["faces"]["1"], timeline["faces"]["2"]
    assert len(one["time"]) == 500 and one["time"][:2] == [0.0, 0.1] and one["probabilities"][0] == [0.9, 0.1]
    assert len(two["time"]) == 100 and two["probabilities"][-1] == [0.2, 0.8]


def test_progress_is_the_share_of_the_range_asked_for():
    info = SimpleNamespace(frame_count=300, fps=30.0)
    frame = SimpleNamespace(time=4.9, span=0.1)
    assert fraction_done(frame, info) == pytest.approx(0.5)
    assert fraction_done(frame, info, start=4.0, end=6.0) == pytest.approx(0.5)
    assert fraction_done(SimpleNamespace(time=9.95, span=0.5), info) == 1.0
    assert fraction_done(frame, SimpleNamespace(frame_count=None, fps=30.0)) is None
