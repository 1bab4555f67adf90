"""What the code declares once and every stage reads: the 68-point parts, and each feature group's columns."""

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from features import action_units, gabor, geometry, patches
from features.columns import Column
from features.describe import GROUPS, FeatureConfig, describe_face
from landmarks.parts import FACE_PARTS, N_POINTS, PART_OF_POINT, PARTS, by_fine_part, points_of
from landmarks.shape import Face, align_face


def test_face_parts_cover_the_68_points_once_in_iBUG_ranges():
    covered = sorted(i for part in FACE_PARTS for i in points_of(part))
    assert covered == list(range(N_POINTS))
    assert {part: (min(points_of(part)), max(points_of(part))) for part in FACE_PARTS} == {
        "jaw": (0, 16), "brows": (17, 26), "nose": (27, 35), "eyes": (36, 47), "mouth": (48, 67)}
    assert [PART_OF_POINT[i] for i in (0, 16, 17, 26, 27, 35, 36, 47, 48, 67)] == [
        "jaw", "jaw", "brows", "brows", "nose", "nose", "eyes", "eyes", "mouth", "mouth"]
    # fine parts and face parts give indices part after part, in the order asked
    assert points_of("left_eye") == [36, 37, 38, 39, 40, 41]
    assert points_of("brows", "eyes") == list(range(17, 27)) + list(range(36, 48))
    assert all(fine in PARTS for fines in FACE_PARTS.values() for fine in fines)


def test_values_per_face_part_spread_over_its_drawn_parts():
    spread = by_fine_part({"mouth": 1, "jaw": 2})
    assert spread == {"outer_lips": 1, "inner_lips": 1, "jaw": 2}


@pytest.fixture(scope="module")
def face():
    """A synthetic face, no dataset needed: the neutral reference shape placed on a smooth random image."""
    with open(action_units.REFERENCE_FILE) as fh:
        shape = np.reshape(json.load(fh)["points"], (68, 2))
    points = (shape * 60 + (100, 80)).astype(np.float32)
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (200, 200)).astype(np.uint8), (0, 0), 1.5)
    aligned, aligned_points = align_face(image, points)
    return Face(box=(40, 40, 120, 120), points=points, aligned=aligned, aligned_points=aligned_points, checked=True)


def test_every_group_declares_the_columns_describe_face_writes(face):
    config = FeatureConfig(groups=tuple(GROUPS))
    names, slices = config.columns()
    vector = describe_face(face, config)
    assert len(vector) == len(names) == len(config.declared_columns()) == len(set(names))
    for name, group in GROUPS.items():
        assert group.name == name
        declared = group.columns()
        assert [c.name for c in declared] == names[slices[name]]
        assert len(group.describe(face)) == len(declared), name
        np.testing.assert_array_equal(vector[slices[name]], group.describe(face))


def test_named_columns_hold_their_own_values(face):
    """The declared order is the order of the values: each name finds the value it names."""
    config = FeatureConfig(groups=tuple(GROUPS))
    values = dict(zip(config.columns()[0], describe_face(face, config)))
    p = geometry.normalise_points(face.points)
    for name, (_, _, measure) in geometry.FEATURES.items():
        assert values[name] == np.float32(measure(p.tolist())), name
    assert values["point48_x"] == np.float32(p[48, 0]) and values["point08_y"] == np.float32(p[8, 1])
    chin = list(action_units.RAW).index("chin_drop")
    jaw_drop = (action_units.raw_measures(p)[chin] - action_units.neutral_reference()[chin]) * action_units.SCALE
    assert values["au26_jaw_drop"] == pytest.approx(jaw_drop, abs=1e-5)
    _, _, (w, h) = patches.PATCHES["mouth"]
    box = patches.patch_boxes(face.aligned_points)["mouth"]
    mouth_hog = patches._hog(w, h, patches.HOG_CELL).compute(patches.crop_patch(face.aligned, box)).ravel()
    np.testing.assert_array_equal([v for n, v in values.items() if n.startswith("hog_mouth_")], mouth_hog)
    jets = gabor.gabor_jets(face.aligned, face.aligned_points).reshape(len(gabor.POINTS), -1)
    assert values["gabor_mouth_point48_wl4.0px_ori000"] == jets[gabor.POINTS.index(48), 0]
    assert values["gabor_brow_point17_wl16.0px_ori157"] == jets[gabor.POINTS.index(17), -1]
    # face_lbp: cell (row 1, column 3) of the 8 x 8 grid over the 96 px face is pixels 12-23 x 36-47
    from skimage.feature import local_binary_pattern
    cell = local_binary_pattern(face.aligned, 8, 2, "uniform").astype(np.int64)[12:24, 36:48]
    share = np.bincount(cell.ravel(), minlength=patches.LBP_BINS) / cell.size
    np.testing.assert_allclose([values[f"lbp_face_r2_cell13_bin{b}"] for b in range(patches.LBP_BINS)],
                               np.sqrt(share), rtol=1e-6)


def test_every_column_has_a_unit_and_a_known_face_part():
    every = FeatureConfig(groups=tuple(GROUPS)).declared_columns()
    assert all(isinstance(c, Column) and c.unit.strip() and c.unit != c.name for c in every)
    assert {c.part for c in every} == set(FACE_PARTS) | {None}
    # a named measure is a unit of its own; other units gather many columns of one face part
    units = Counter(c.unit for c in every)
    assert all(units[c.unit] == 1 for c in every if c.single)
    assert all(units[c.unit] > 1 for c in every if not c.single)
    assert all(len({c.part for c in every if c.unit == unit}) == 1 for unit in units)
    by_name = {c.name: (c.unit, c.part, c.single) for c in every}
    assert by_name["au12_lip_corner_pull"] == ("lip corners pulled up", "mouth", True)
    assert by_name["brow_gap"] == ("brow gap", "brows", True)
    assert by_name["point30_y"] == ("nose shape (landmark positions)", "nose", False)
    assert by_name["hog_eyes_0000"] == ("eyes and brows appearance (HOG)", "eyes", False)
    assert by_name["lbp_mouth_cell0_bin0"] == ("mouth appearance (LBP)", "mouth", False)
    assert by_name["hog_face_0000"] == ("whole-face appearance (HOG)", None, False)
    assert by_name["gabor_eye_point36_wl4.0px_ori000"] == ("eyes texture (Gabor jets)", "eyes", False)


def test_a_column_of_an_unknown_face_part_is_refused():
    with pytest.raises(ValueError, match="cheeks"):
        Column("cheek_bulge", "cheeks bulging", "cheeks", single=True)
