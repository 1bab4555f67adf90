"""The parts of dlib's 68-point (iBUG 300-W) landmark scheme, defined once for every stage.

Fine parts are index ranges (the ones pictures draw); the five face parts that features and
explanations speak of (brows, eyes, nose, mouth, jaw) are each made of fine parts. "left"/"right"
are as seen in the image (the face_recognition convention): ``left_eye`` is the subject's right eye.
"""

N_POINTS = 68

#: Fine part -> landmark index range.
PARTS = {
    "jaw": slice(0, 17),
    "left_eyebrow": slice(17, 22),
    "right_eyebrow": slice(22, 27),
    "nose_bridge": slice(27, 31),
    "nose_tip": slice(31, 36),
    "left_eye": slice(36, 42),
    "right_eye": slice(42, 48),
    "top_lip": slice(48, 55),
    "bottom_lip": slice(54, 60),
    "outer_lips": slice(48, 60),
    "inner_lips": slice(60, 68),
}

#: Face part -> the fine parts it is made of; together they cover the 68 points once. In the
#: order explanations list the parts.
FACE_PARTS = {
    "brows": ("left_eyebrow", "right_eyebrow"),
    "eyes": ("left_eye", "right_eye"),
    "nose": ("nose_bridge", "nose_tip"),
    "mouth": ("outer_lips", "inner_lips"),
    "jaw": ("jaw",),
}


def points_of(*parts):
    """Landmark indices of face parts or fine parts, part after part in the order given."""
    return [i for part in parts for fine in FACE_PARTS.get(part, (part,)) for i in range(N_POINTS)[PARTS[fine]]]


_PART_AT = {i: part for part in FACE_PARTS for i in points_of(part)}
#: Landmark index -> its face part.
PART_OF_POINT = tuple(_PART_AT[i] for i in range(N_POINTS))


def by_fine_part(values):
    """{fine part: value} from {face part: value}: each fine part gets the value of its face part."""
    return {fine: values[part] for part, fines in FACE_PARTS.items() if part in values for fine in fines}
