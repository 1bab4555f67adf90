"""What one feature column is to a person: the readable unit it belongs to and the face part it describes.

Every feature group declares a :class:`Column` for each column it writes (``features.describe.GROUPS``).
Explanations sum contributions per unit and per face part, and pictures colour the parts, from
these declarations alone: nothing reads meaning back out of a column's name.
"""

from dataclasses import dataclass

from landmarks.parts import FACE_PARTS


@dataclass(frozen=True)
class Column:
    name: str            # the column's name in feature tables
    unit: str            # readable unit its contributions are summed into, e.g. "mouth texture (Gabor jets)"
    part: str = None     # face part (landmarks.parts.FACE_PARTS), None for the whole face
    single: bool = False  # a named measure that is a unit on its own (explanations show its value)

    def __post_init__(self):
        if self.part is not None and self.part not in FACE_PARTS:
            raise ValueError(f"{self.name}: unknown face part {self.part!r} (known: {list(FACE_PARTS)})")
