"""'Pixelize': the face with its 68 landmark dots, part boxes and an optional label, for people to look at."""

import cv2
import numpy as np

from landmarks.parts import PARTS, by_fine_part

#: RGB colours per drawn (fine) part: one per face part.
PART_COLOURS = by_fine_part({"brows": (255, 170, 0), "eyes": (0, 255, 0), "nose": (0, 200, 255),
                             "mouth": (255, 60, 60), "jaw": (200, 200, 200)})
#: The fine parts of the face parts, drawn in point order.
DRAWN_PARTS = tuple(sorted(PART_COLOURS, key=lambda part: PARTS[part].start))


def pixelize(image, faces, labels=None, part_colours=None, min_side=256):
    """RGB image with each face's box, 68 dots and part boxes drawn (and ``labels[i]`` above box i).

    Small images are enlarged to ``min_side`` first so the drawing stays legible.
    ``part_colours`` (part -> RGB, or one such dict per face) overrides the colours, e.g. to
    show contributions.
    """
    canvas = np.asarray(image)
    canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB) if canvas.ndim == 2 else canvas.copy()
    scale = max(1.0, min_side / min(canvas.shape[:2]))
    if scale > 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    thick = max(1, int(round(min(canvas.shape[:2]) / 300)))
    per_face = part_colours if isinstance(part_colours, (list, tuple)) else [part_colours] * len(faces)
    for i, face in enumerate(faces):
        colours = dict(PART_COLOURS, **((per_face[i] if i < len(per_face) else None) or {}))
        pts = np.asarray(face.points, dtype=np.float64) * scale
        x, y, w, h = (int(round(v * scale)) for v in face.box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (255, 255, 255), thick)
        for part in DRAWN_PARTS:
            part_pts = pts[PARTS[part]]
            colour = tuple(int(c) for c in colours[part])
            if part != "jaw":
                px, py, pw, ph = cv2.boundingRect(np.round(part_pts).astype(np.int32))
                cv2.rectangle(canvas, (px, py), (px + pw, py + ph), colour, max(1, thick // 2))
            for px, py in np.round(part_pts).astype(int):
                cv2.circle(canvas, (int(px), int(py)), thick + 1, colour, -1, cv2.LINE_AA)
        if labels is not None and i < len(labels) and labels[i]:
            _draw_label(canvas, str(labels[i]), x, y, max(0.5, w / 250), max(1, thick))
    return canvas


def _draw_label(canvas, text, x, y, font_scale, thickness, font=cv2.FONT_HERSHEY_SIMPLEX):
    """``text`` above (x, y), kept inside the picture: wrapped at its commas into lines that fit its
    width (a smaller font only where one part alone is wider), moved left where it would run off the
    right edge and below the top edge, on a dark band so it reads on any background."""
    width = canvas.shape[1] - 4
    parts = [p.strip() for p in text.split(",")]
    lines = []
    for part in parts:   # greedy: as many comma-separated parts per line as fit
        joined = f"{lines[-1]}, {part}" if lines else part
        if lines and cv2.getTextSize(joined, font, font_scale, thickness)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    widest = max(cv2.getTextSize(line, font, font_scale, thickness)[0][0] for line in lines)
    if widest > width:
        font_scale *= width / widest
    (_, th), base = cv2.getTextSize("Ag", font, font_scale, thickness)
    step = th + base + 2
    sizes = [cv2.getTextSize(line, font, font_scale, thickness)[0][0] for line in lines]
    top = max(y - 4 - step * len(lines), 0)
    left = max(0, min(x, canvas.shape[1] - max(sizes) - 4))
    cv2.rectangle(canvas, (left, top), (left + max(sizes) + 4, top + step * len(lines) + 2), (0, 0, 0), -1)
    for k, line in enumerate(lines):
        cv2.putText(canvas, line, (left + 2, top + th + 2 + k * step), font, font_scale, (255, 255, 0), thickness,
                    cv2.LINE_AA)


def save_rgb(path, rgb):
    """Write an RGB array as an image file (format from the extension), atomically."""
    import os

    from common.files import atomic_path

    ext = os.path.splitext(path)[1] or ".png"
    try:
        ok, data = cv2.imencode(ext, cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot write an image as {ext!r} (use .png or .jpg)")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data.tobytes())
