"""From emotion to music: classifiers.affect (faces in valence-arousal space) and
classifiers.recommend (tracks for a mood), on the real Deezer mood catalogue.

The catalogue lives at <project>/../shared/music/deezer_mood.csv (see that folder's README.md);
it is loaded once for the module. Broken catalogues are small files written here.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from classifiers.affect import CIRCUMPLEX, POINTS, point_of, valence_arousal
from common.errors import AffectError, CatalogueError, FacialExpressionError, NoFaceError, RecommendationError
from conftest import PROJECT_DIR
from classifiers.recommend import (LIFT_VALENCE, SEARCH_URL, load_catalogue, mood_of, parse_column_mapping,
                                          recommend)

DEEZER = PROJECT_DIR.parent / "shared" / "music" / "deezer_mood.csv"
MOODS = [CIRCUMPLEX[c] for c in ("angry", "fear", "happy", "sad", "surprise", "neutral")]


@pytest.fixture(scope="module")
def deezer():
    if not DEEZER.is_file():
        pytest.fail(f"the Deezer mood catalogue is not at {DEEZER} (see ../shared/music/README.md)", pytrace=False)
    return load_catalogue(DEEZER)


def sad_face():
    return {"label": "sad", "valence": CIRCUMPLEX["sad"][0], "arousal": CIRCUMPLEX["sad"][1],
            "probabilities": {"sad": 1.0}}


def artists_of(rec):
    return [t.artist.casefold() for t in rec.tracks]


# --- affect ----------------------------------------------------------------------------------

def test_affect_points_follow_the_circumplex():
    assert POINTS["happy"][0] > 0.5
    assert POINTS["sad"][0] < -0.5
    assert POINTS["sad"][1] < min(POINTS["angry"][1], POINTS["fear"][1])
    assert POINTS["neutral"] == (0.0, 0.0)
    assert valence_arousal({"neutral": 1.0}) == pytest.approx((0.0, 0.0))
    assert all(-1 <= v <= 1 and -1 <= a <= 1 for v, a in POINTS.values())
    assert point_of("Happiness") == point_of("happy")  # dataset aliases are understood


def test_affect_weighted_mean_of_a_hand_made_distribution():
    proba = {"happy": 0.5, "sad": 0.25, "neutral": 0.25}
    expected = (0.5 * 0.81 + 0.25 * -0.63, 0.5 * 0.51 + 0.25 * -0.27)
    assert valence_arousal(proba) == pytest.approx(expected)
    # renormalised: the same shape at twice the mass is the same point
    assert valence_arousal({k: 2 * p for k, p in proba.items()}) == pytest.approx(expected)


def test_affect_valence3_labels_move_along_valence_only():
    assert point_of("positive")[0] > 0 > point_of("negative")[0]
    assert point_of("positive")[1] == point_of("negative")[1] == 0
    assert valence_arousal({"negative": 0.5, "positive": 0.5})[1] == 0


@pytest.mark.parametrize("proba", [{"joyful": 1.0}, {"happy": -0.1, "sad": 1.0}, {"happy": float("nan")},
                                   {"happy": 0.0}, {}])
def test_affect_rejects_what_it_cannot_place(proba):
    with pytest.raises(AffectError) as info:
        valence_arousal(proba)
    assert "\n" not in str(info.value)


# --- catalogue -------------------------------------------------------------------------------

def test_deezer_catalogue_is_standardised_and_indexed(deezer):
    assert len(deezer) == 18644 and deezer.skipped == 0
    assert deezer.points.mean(axis=0) == pytest.approx([0, 0], abs=1e-9)
    assert deezer.points.std(axis=0) == pytest.approx([1, 1])
    # neutral aims at the median track, the ends of the scale at the extreme tracks
    assert deezer.standard_point(0, 0) == pytest.approx(np.median(deezer.points, axis=0))
    assert deezer.standard_point(-1, 1) == pytest.approx([deezer.points[:, 0].min(), deezer.points[:, 1].max()])


def write(tmp_path, text, name="catalogue.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "artist,title,valence,arousal\nA,One,-1.0,0.5\nB,Two,0.5,-0.2\nC,Three,1.5,1.0\n"


@pytest.mark.parametrize("text, message", [
    ("artist,title,valence\nA,One,0.5\n", "missing column(s) 'arousal'"),
    ("artist,title,valence,arousal\nA,One,0.5,0.1\nB,Two,high,0.3\n", "line 3: valence 'high' is not a number"),
    ("", "empty file"),
    ("artist,title,valence,arousal\n", "header only"),
    ("artist,title,valence,arousal\nA,One,nan,0.1\nB,Two,,\n", "2 rows, each missing one"),
    ("artist,title,valence,arousal\nA,One,0.5,0.1\nB,Two,0.5,0.3\n", "same valence"),
    ("artist,title,valence,arousal\nA,One,inf,0.1\n", "not a finite number"),
    ("artist,title,valence,arousal\nA,One,0.5\n", "line 2: 3 fields, too few"),
    ("\nartist,title,valence,arousal\n", "no header line"),
])
def test_bad_catalogues_give_one_line_errors(tmp_path, text, message):
    with pytest.raises(CatalogueError) as info:
        load_catalogue(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, FacialExpressionError)


def test_missing_huge_and_binary_catalogues(tmp_path):
    for path, message, kwargs in [(tmp_path / "nope.csv", "no such catalogue file", {}),
                                  (tmp_path, "not a regular file", {}),
                                  (write(tmp_path, GOOD), "over the", {"max_bytes": 10})]:
        with pytest.raises(CatalogueError, match=message):
            load_catalogue(path, **kwargs)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(CatalogueError, match="not UTF-8"):
        load_catalogue(binary)


def test_column_mapping_url_and_search_links(tmp_path):
    path = write(tmp_path, "band;song;v;a;link\nAC/DC & Co;Hells Bells;-1.0;0.5;\n"
                           "B;Two;0.5;-0.2;https://example.org/two\nC;Three;1.5;1.0;\n")
    with pytest.raises(CatalogueError, match="missing column"):
        load_catalogue(path)
    columns = parse_column_mapping("artist=band, title=song, valence=v, arousal=a, url=link")
    catalogue = load_catalogue(path, columns=columns)
    links = {t.artist: t.url for t in recommend((0, 0), catalogue, n=3).tracks}
    assert links["B"] == "https://example.org/two"
    assert links["AC/DC & Co"] == SEARCH_URL + "AC%2FDC+%26+Co+Hells+Bells"
    with pytest.raises(CatalogueError, match="unknown field"):
        load_catalogue(path, columns={"tempo": "bpm"})
    with pytest.raises(CatalogueError, match="FIELD=COLUMN"):
        parse_column_mapping("valence")


# --- recommendations -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["match", "lift"])
def test_no_artist_twice_and_reproducible(deezer, mode):
    for mood in MOODS:
        rec = recommend(mood, deezer, n=12, mode=mode, seed=0)
        assert len(rec.tracks) == 12
        assert len(set(artists_of(rec))) == 12
        assert recommend(mood, deezer, n=12, mode=mode, seed=0) == rec
        assert artists_of(recommend(mood, deezer, n=12, mode=mode, seed=1)) != artists_of(rec)


def test_match_tracks_are_closer_than_random_tracks(deezer):
    rng = np.random.default_rng(0)
    for mood in MOODS:
        target = deezer.standard_point(*mood)
        rec = recommend(mood, deezer, n=10, mode="match")
        random_distance = np.linalg.norm(deezer.points[rng.choice(len(deezer), 10)] - target, axis=1).mean()
        match_distance = np.mean([t.distance for t in rec.tracks])
        assert match_distance < 0.25 < random_distance
        assert [t.distance for t in rec.tracks] == sorted(t.distance for t in rec.tracks)


def test_lift_starts_near_the_mood_and_ends_pleasant(deezer):
    rec = recommend([sad_face()], deezer, n=10, mode="lift", seed=3)
    first, last = rec.tracks[0], rec.tracks[-1]
    assert last.valence > first.valence + 1.0
    assert first.distance < 0.25
    high = recommend(CIRCUMPLEX["happy"], deezer, n=10, mode="lift")
    assert "already pleasant" in high.reason
    assert min(t.valence for t in high.tracks) > np.quantile(deezer.values[:, 0], 0.8)


def test_reasons_mention_the_mood(deezer):
    rec = recommend([sad_face()], deezer, mode="lift")
    assert rec.reason.startswith("you look sad (valence -0.63, arousal -0.27): calm")
    assert "brighter" in rec.reason
    assert "angry" in recommend([{"label": "angry", "probabilities": {"angry": 1}}], deezer).reason
    assert recommend((0.5, -0.5), deezer).reason.startswith("your mood point (valence +0.50, arousal -0.50)")


def test_faces_as_objects_dicts_or_probabilities_only(deezer):
    as_object = SimpleNamespace(label="sad", valence=-0.63, arousal=-0.27, probabilities={"sad": 1.0})
    largest_first = [as_object, {"label": "happy", "valence": 0.81, "arousal": 0.51}]
    assert recommend(largest_first, deezer) == recommend([sad_face()], deezer)
    no_point = {"label": "sad", "probabilities": {"sad": 0.5, "neutral": 0.5}}
    assert mood_of([no_point]) == pytest.approx((-0.315, -0.135, "sad"))
    rec = recommend([no_point], deezer)
    assert rec.target == pytest.approx((-0.315, -0.135)) and rec.label == "sad"


def test_recommendation_is_json_ready(deezer):
    data = json.loads(json.dumps(recommend([sad_face()], deezer, n=3, mode="lift").to_dict()))
    assert data["mode"] == "lift" and data["label"] == "sad" and len(data["tracks"]) == 3
    assert set(data["tracks"][0]) == {"artist", "title", "valence", "arousal", "url", "distance"}
    assert data["target"] == {"valence": -0.63, "arousal": -0.27}


@pytest.mark.parametrize("request_, kwargs, error, message", [
    ([], {}, NoFaceError, "no face"),
    ((0, 0), {"mode": "shuffle"}, RecommendationError, "unknown mode"),
    ((0, 0), {"n": 0}, RecommendationError, "n must be"),
    ((0, 0), {"n": 2.5}, RecommendationError, "n must be"),
    ((2.5, 0), {}, RecommendationError, "off the circumplex scale"),
    ([{"label": "sad"}], {}, RecommendationError, "probabilities"),
])
def test_requests_that_cannot_be_served(deezer, request_, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        recommend(request_, deezer, **kwargs)
    assert "\n" not in str(info.value)


def test_small_catalogue_gives_at_most_one_track_per_artist(tmp_path):
    catalogue = load_catalogue(write(tmp_path, GOOD + "a ,Four,0.0,0.0\n"))
    rec = recommend((LIFT_VALENCE, 0), catalogue, n=10, mode="lift")
    assert sorted(artists_of(rec)) == ["a", "b", "c"]
