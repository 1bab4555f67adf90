"""What the code declares once and every stage reads: the 68-point parts, and each feature group's columns."""

from landmarks.parts import FACE_PARTS, N_POINTS, PART_OF_POINT, PARTS, by_fine_part, points_of


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
