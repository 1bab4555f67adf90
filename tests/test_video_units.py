"""The video mode's bookkeeping, without a video: boxes, time options, bounded plot series, latencies."""

import click
import numpy as np
import pytest

from facial_expressions.tracking import CutDetector, iou
from facial_expressions.video import LatencyStats, _seconds
from facial_expressions.video_io import PALETTE, container_of, draw_faces
from facial_expressions.video_outputs import PLOT_POINTS, Series, timeline_columns


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_times_in_seconds_or_minutes():
    assert _seconds(None, None, "12.5") == 12.5
    assert _seconds(None, None, "1:30") == 90.0
    assert _seconds(None, None, "1:00:02") == 3602.0
    for bad in ("abc", "-3", "1:2:3:4", "1:70", "1:60:00", "inf", "nan"):
        with pytest.raises(click.BadParameter):
            _seconds(None, None, bad)


def test_plot_series_stays_bounded_and_keeps_the_time_axis():
    series = Series()
    for i in range(20 * PLOT_POINTS):
        series.add(i / 30.0, [0.25, 0.75])
    data = series.array()
    assert len(data) <= PLOT_POINTS + 1
    assert data[0, 0] < 1.0 and data[-1, 0] > (20 * PLOT_POINTS - 40) / 30.0
    assert np.all(np.diff(data[:, 0]) > 0) and np.allclose(data[:, 1:], [0.25, 0.75])


def test_latency_percentiles_in_constant_memory():
    stats = LatencyStats()
    for ms in range(1, 101):
        stats.add(ms / 1000.0)
    summary = stats.to_dict()
    assert summary["frames"] == 100 and summary["max"] == pytest.approx(100.0)
    assert 49 <= summary["median"] <= 52 and 94 <= summary["p95"] <= 97


def test_cut_detector_on_synthetic_frames():
    cuts = CutDetector()
    dark, bright = np.full((240, 320), 40, np.uint8), np.full((240, 320), 200, np.uint8)
    assert [cuts.is_cut(f) for f in (dark, dark, bright, bright)] == [False, False, True, False]


def test_timeline_columns():
    columns = timeline_columns(["happy", "sad"], landmarks=True)
    assert columns[:10] == ["frame", "time_s", "face_id", "x", "y", "w", "h", "label", "p_happy", "p_sad"]
    assert columns[10:12] == ["valence", "arousal"] and columns[-2:] == ["x67", "y67"] and len(columns) == 12 + 136


@pytest.mark.parametrize("head, container", [
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "mp4"), (b"\x00\x00\x00\x14ftypqt  ", "mp4"),
    (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00", "mkv"), (b"RIFF\x10\x00\x00\x00AVI LIST", "avi"),
    (b"\x00\x00\x01\xba\x44\x00", "mpg"), (b"FLV\x01\x05", "flv"), (b"OggS\x00\x02", "ogv"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9", "wmv"),
    ((b"\x47" + b"\x00" * 187) * 3, "ts"),
    (b"GIF89a\x01\x00", None),                 # starts with 0x47 like MPEG-TS, but is not one
    (b"\x89PNG\r\n\x1a\n", None), (b"\xff\xd8\xff\xe0", None), (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
    (b"<html>", None), (b"", None),
])
def test_containers_are_recognised_from_their_first_bytes(head, container):
    assert container_of(head) == container


def test_apparent_age_and_gender_over_a_clip_in_constant_memory():
    from types import SimpleNamespace

    from facial_expressions.video_outputs import FaceStats

    labels = ["happy", "neutral"]
    stats = FaceStats(labels, age_gender=True)
    # 30 s at apparent age 30 (female), then 10 s at 60 (male): the median is 30, female 75% of the time
    for i in range(400):
        age, gender, p = (30.2, "female", 0.9) if i < 300 else (60.0, "male", 0.2)
        stats.add(i * 0.1, 0.1, SimpleNamespace(probabilities={"happy": 0.3, "neutral": 0.7}, label="neutral",
                                                 valence=0.0, arousal=0.0, age=age, gender=gender, p_female=p))
    apparent = stats.to_dict()["apparent"]
    assert apparent == {"median_age": pytest.approx(30.2, abs=0.25), "gender": "female", "female_share": 0.75, "male_share": 0.25,
                        "mean_p_female": pytest.approx(0.725)}
    assert stats.age_seconds.shape == (260,)   # a histogram, whatever the length of the clip
    assert timeline_columns(labels, age_gender=True)[-3:] == ["age", "gender", "p_female"]
    assert timeline_columns(labels, landmarks=True, age_gender=True)[-139:-136] == ["age", "gender", "p_female"]


def _band_columns(image, colour):
    """Columns of the label's band: pixels of the face's colour above its box (rows 0-39)."""
    return np.flatnonzero((image[:40] == colour).all(axis=2).any(axis=0))


def test_a_label_at_the_frame_s_right_edge_is_moved_left_whole():
    from types import SimpleNamespace

    face = SimpleNamespace(box=(10, 40, 36, 36), label="surprise", confidence=0.97, age=34.0, gender="female")
    free = draw_faces(np.zeros((240, 320, 3), np.uint8), {1: face})
    at_edge = draw_faces(np.zeros((240, 320, 3), np.uint8), {1: SimpleNamespace(**{**vars(face), "box": (280, 40, 36, 36)})})
    free_cols, edge_cols = _band_columns(free, PALETTE[0]), _band_columns(at_edge, PALETTE[0])
    assert len(free_cols) > 100                            # the whole label fits a free spot
    assert len(edge_cols) == len(free_cols)                # the same label, not cut at the edge
    assert edge_cols[-1] == 319 and edge_cols[0] < 280     # moved left to end at the edge
    narrow = draw_faces(np.zeros((240, 90, 3), np.uint8), {1: SimpleNamespace(**{**vars(face), "box": (40, 40, 36, 36)})})
    assert _band_columns(narrow, PALETTE[0])[0] == 0 and _band_columns(narrow, PALETTE[0])[-1] <= 89
