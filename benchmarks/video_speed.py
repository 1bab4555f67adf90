"""Speed and memory of ``facial-expressions video``: offline frames/s, live latency, flat memory, many videos.

    python benchmarks/video_speed.py [--repeats 5] [--parts offline,live,memory,folder] [--json]

* **offline**: ../shared/videos/d6.mp4 (1,008 frames, 480x480, one face), every frame
  analysed, end to end through :func:`facial_expressions.video.analyse_to_folder`: opening the
  file, decoding, tracking, writing timeline.csv, summary.json and timeline.png. The model and
  dlib's models are loaded once before (as the first frame of any run loads them);
  interpreter start-up is not included. Settings compared in the same run, interleaved,
  medians of ``--repeats``: the default (whole-frame detection every 0.5 s, tracking in
  between) and the detector on every frame (``detect_every=0``), which is what tracking saves;
  and the default without mirror averaging (``mirror=False``), which is what reading each face
  with its mirror image costs.
* **live**: d6 padded to 640x480 (made with the ffmpeg of imageio-ffmpeg in a temporary
  folder) read with ``realtime=True``, as if a 30 frames/s camera delivered it: latency from
  each frame's arrival to its result (median, 95th percentile, max) and frames dropped.
* **memory**: peak resident memory (``ru_maxrss`` of the child process, via ``os.wait4``) of
  ``facial-expressions video`` on d6 (33.6 s) and on d6 looped 18 times (10 min 5 s, made with
  ``ffmpeg -stream_loop 17 -c copy``), every frame analysed.
* **folder**: the five one-face clips (d0, d3, d6, d9, d10: 2,475 frames) as a folder, with
  1 and 2 local worker processes and on a ``distributed.LocalCluster`` of 2 single-thread
  workers (``--backend dask``): total wall time and frames/s over all videos, after one
  untimed pass of each (worker processes start and load the models), interleaved.

The machine is shared: compare figures from the same run only.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import click

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT)
VIDEOS = os.path.join(PROJECT, "..", "shared", "videos")
D6 = os.path.join(VIDEOS, "d6.mp4")
ONE_FACE = ("d0.mp4", "d3.mp4", "d6.mp4", "d9.mp4", "d10.mp4")


def _ffmpeg(*args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def offline(repeats, model, tmp):
    from facial_expressions.video import analyse_to_folder

    settings = {"tracking (detector every 0.5 s)": {}, "detector on every frame": {"detect_every": 0.0},
                "tracking, no mirror averaging": {"mirror": False}}
    analyse_to_folder(D6, os.path.join(tmp, "warm"), model=model, end=2.0)
    times = {name: [] for name in settings}
    frames = {}
    for r in range(repeats):
        order = list(settings) if r % 2 == 0 else list(settings)[::-1]
        for name in order:
            started = time.perf_counter()
            result = analyse_to_folder(D6, os.path.join(tmp, f"offline{r}"), model=model, **settings[name])
            times[name].append(time.perf_counter() - started)
            frames[name] = result.frames
    return {name: {"frames": frames[name], "seconds_median": round(statistics.median(t), 3),
                   "frames_per_second": round(frames[name] / statistics.median(t), 1),
                   "seconds_all": [round(x, 2) for x in t]} for name, t in times.items()}


def live(model, tmp, seconds=20.0):
    from facial_expressions.video import LatencyStats, analyse_video

    clip = os.path.join(tmp, "d6_640x480.mp4")
    _ffmpeg("-i", D6, "-vf", "pad=640:480:80:0", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            clip)
    stats, dropped, analysed = LatencyStats(), 0, 0
    for frame in analyse_video(clip, model=model, realtime=True, end=seconds):
        stats.add(frame.latency)
        dropped, analysed = frame.dropped, analysed + 1
    return {"seconds": seconds, "frames_delivered": int(seconds * 30), "frames_analysed": analysed,
            "frames_dropped": dropped, "latency_ms": stats.to_dict()}


def _peak_rss_mb(args):
    env = dict(os.environ, PYTHONPATH=PROJECT)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "facial_expressions", "video", *args, "-q"], cwd=PROJECT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    output = process.stdout.read().decode().strip()
    if status != 0:
        raise RuntimeError(f"video run failed: {process.stderr.read().decode().strip()}")
    return round(usage.ru_maxrss / 1024, 1), round(time.perf_counter() - started, 1), output


def memory(tmp):
    long_clip = os.path.join(tmp, "d6_10min.mp4")
    _ffmpeg("-stream_loop", "17", "-i", D6, "-c", "copy", long_clip)
    out = {}
    for name, clip in (("d6 (33.6 s)", D6), ("d6 looped x18 (10 min 5 s)", long_clip)):
        rss, seconds, line = _peak_rss_mb([clip, "-o", os.path.join(tmp, "memory")])
        out[name] = {"peak_rss_mb": rss, "wall_seconds": seconds, "result": line}
    return out


def folder(tmp, model, repeats):
    from distributed import LocalCluster

    from facial_expressions.video import analyse_folder

    videos = os.path.join(tmp, "videos")
    os.makedirs(videos, exist_ok=True)
    for name in ONE_FACE:
        os.symlink(os.path.abspath(os.path.join(VIDEOS, name)), os.path.join(videos, name))
    total = 2475

    def run(options):
        started = time.perf_counter()
        lines = list(analyse_folder(videos, os.path.join(tmp, "folder"), model=model, **options))
        assert all(code == 0 for *_, code in lines), lines
        return time.perf_counter() - started

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        settings = {"local, 1 process": {"jobs": 1}, "local, 2 processes": {"jobs": 2},
                    "dask LocalCluster, 2 workers": {"backend": "dask", "scheduler": cluster.scheduler_address}}
        for options in settings.values():   # untimed: worker processes start and load the models once
            run(options)
        times = {name: [] for name in settings}
        for r in range(repeats):
            for name in (list(settings) if r % 2 == 0 else list(settings)[::-1]):
                times[name].append(run(settings[name]))
    return {name: {"seconds_median": round(statistics.median(t), 2),
                   "frames_per_second": round(total / statistics.median(t), 1),
                   "seconds_all": [round(x, 2) for x in t]} for name, t in times.items()}


@click.command()
@click.option("--repeats", default=5, show_default=True, help="Timed offline runs per setting.")
@click.option("--parts", default="offline,live,memory,folder", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(repeats, parts, as_json):
    from classifiers import load_model

    model = load_model()
    parts = parts.split(",")
    result = {"cores": os.cpu_count(), "load_average_before": os.getloadavg()}
    tmp = tempfile.mkdtemp(prefix="video_speed_")
    try:
        if "offline" in parts:
            result["offline_d6"] = offline(repeats, model, tmp)
        if "live" in parts:
            result["live_640x480"] = live(model, tmp)
        if "memory" in parts:
            result["memory"] = memory(tmp)
        if "folder" in parts:
            result["folder_5_clips"] = folder(tmp, model, max(1, repeats // 2 + 1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_average_after"] = os.getloadavg()
    click.echo(json.dumps(result, indent=1 if not as_json else None))


if __name__ == "__main__":
    main()
