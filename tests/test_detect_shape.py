"""Face detection (HOG, CNN, whole image, auto), the 68 landmarks, alignment and model files, on real faces."""

import os
import textwrap
import time

import cv2
import numpy as np
import pytest

from landmarks import models
from landmarks.detect import auto_levels, detect_faces, resolve_detector
from common.errors import DegenerateLandmarksError, ModelFileError
from landmarks.io import read_image
from landmarks.shape import (ALIGN_EYE_DISTANCE, ALIGN_EYE_Y, ALIGN_SIZE, MAX_SIDE, MIRROR, PARTS, align_face,
                             eye_centres, find_faces, mirror_face, mirrored)


def _iod(points):
    left, right = eye_centres(points)
    return float(np.hypot(*(right - left)))


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(aw * ah + bw * bh - w * h)


# --- detection on whole datasets ------------------------------------------------------------------

def test_hog_finds_a_face_in_at_least_95_percent_of_jaffe(jaffe_samples):
    assert len(jaffe_samples) == 213
    missed = []
    for sample in jaffe_samples:
        image = read_image(sample.path)
        boxes = detect_faces(image, "hog")
        if not boxes:
            missed.append(os.path.basename(sample.path))
            continue
        x, y, w, h = boxes[0]
        assert 0 <= x and 0 <= y and x + w <= 256 and y + h <= 256, (sample.path, boxes[0])
        assert 60 <= w <= 220, f"{sample.path}: implausible face box {boxes[0]}"
    rate = 1 - len(missed) / len(jaffe_samples)
    print(f"\nJAFFE HOG detection rate: {rate:.1%} ({len(jaffe_samples) - len(missed)}/{len(jaffe_samples)})")
    assert rate >= 0.95, f"HOG found a face in {rate:.1%} of JAFFE; missed {missed}"


def test_whole_handles_every_ckplus_image(ckplus_samples):
    assert len(ckplus_samples) == 981
    images = [read_image(s.path) for s in ckplus_samples]
    started = time.perf_counter()
    results = [find_faces(image, "whole") for image in images]
    elapsed = time.perf_counter() - started
    print(f"\nfind_faces(detector='whole') on all 981 CK+48 images: {elapsed:.1f} s")
    for sample, faces in zip(ckplus_samples, results):
        assert len(faces) == 1, f"{sample.path}: {len(faces)} faces"
        face = faces[0]
        assert face.box == (0, 0, 48, 48)
        assert face.points.shape == (68, 2) and face.points.dtype == np.float32
        assert np.all(np.isfinite(face.points))
        # landmarks of a tight crop stay (roughly) on the crop
        assert face.points.min() > -8 and face.points.max() < 56, sample.path
        assert face.aligned.shape == (ALIGN_SIZE, ALIGN_SIZE) and face.aligned.dtype == np.uint8


def test_auto_levels_add_upsampling_steps_for_small_images_only():
    assert auto_levels((48, 48)) == [1, 2, 3]          # 48 px: step 0 cannot hold an 80 px window
    assert auto_levels((256, 256)) == [0, 1, 2]        # 1024 px at step 2, within AUTO_MAX_SIDE
    assert auto_levels((480, 640, 3)) == [0]           # a video frame costs what 'hog' costs
    assert auto_levels((48, 48), upsample=1) == [1, 2, 3, 4]
    assert resolve_detector("auto") == "auto"
    for method in ("hog", "cnn", "whole"):
        assert resolve_detector(method, (48, 48)) == method


def test_auto_keeps_the_training_boxes_of_tight_crops_and_photos(ckplus_samples, fer_dir, jaffe_face_image):
    # CK+48: every crop keeps the whole-image box the model was trained with, though HOG at
    # step 0 finds none of them (found one step up, covering the crop)
    for sample in ckplus_samples[::40]:
        crop = read_image(sample.path)
        assert detect_faces(crop, "auto") == [(0, 0, 48, 48)], sample.path
    assert detect_faces(read_image(ckplus_samples[0].path), "hog") == []
    # FER-2013: every crop gets a box, (nearly) always the whole crop (measured 98.3% on 3,000)
    paths = sorted((fer_dir / "test" / "happy").iterdir())[:60]
    boxes = [detect_faces(read_image(p), "auto") for p in paths]
    assert all(len(b) >= 1 for b in boxes)
    assert sum(b == [(0, 0, 48, 48)] for b in boxes) >= 55
    # JAFFE photos: the HOG box, as before
    photo = jaffe_face_image[0]
    boxes = detect_faces(photo, "auto")
    assert len(boxes) == 1 and boxes == detect_faces(photo, "hog")
    assert boxes[0] != (0, 0, 256, 256)


def test_auto_finds_no_face_in_a_flat_photo_but_takes_a_tiny_crop_whole():
    flat = np.full((256, 256), 128, np.uint8)
    assert detect_faces(flat, "auto") == []
    assert detect_faces(flat, "whole") == [(0, 0, 256, 256)]
    # nothing found in a crop-sized, square image: taken as a tight crop (FER-2013's hardest faces)
    assert detect_faces(np.full((48, 48), 128, np.uint8), "auto") == [(0, 0, 48, 48)]
    assert detect_faces(np.full((48, 120), 128, np.uint8), "auto") == []   # not crop-shaped


def _utkface_canvases(datasets_dir, count, face_width, seed=0):
    """UTKFace crops shrunk so the reference HOG box is face_width px, on flat grey canvases 2.5x as large."""
    rng = np.random.default_rng(seed)
    paths = sorted((datasets_dir / "utkface").glob("*.jpg"))
    out = []
    for index in rng.permutation(len(paths)):
        image = read_image(paths[index])
        reference = detect_faces(image, "hog", 1)
        if not reference:
            continue
        factor = face_width / reference[0][2]
        crop = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        side = int(crop.shape[0] * 2.5)
        canvas = np.full((side, side), int(rng.integers(0, 256)), np.uint8)
        x, y = (int(v) for v in rng.integers(0, side - crop.shape[0], 2))
        canvas[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        truth = tuple(v * factor for v in reference[0])
        out.append((canvas, (truth[0] + x, truth[1] + y, truth[2], truth[3]), crop))
        if len(out) == count:
            return out


def _old_rule(image):
    return detect_faces(image, "whole") if max(image.shape) <= 128 else detect_faces(image, "hog")


def test_auto_finds_small_faces_in_loose_crops(datasets_dir):
    # 40 px faces: canvases of about 125 px, which the old size rule took whole;
    # 48 px faces: about 150 px, where HOG without upsampling misses them
    for width in (40, 48):
        canvases = _utkface_canvases(datasets_dir, 8, face_width=width)
        right = [_iou((detect_faces(canvas, "auto") or [(0, 0, 1, 1)])[0], truth) >= 0.5 for canvas, truth, _ in canvases]
        old = [_iou((_old_rule(canvas) or [(0, 0, 1, 1)])[0], truth) >= 0.5 for canvas, truth, _ in canvases]
        assert sum(right) >= 7, (width, right)
        assert sum(old) <= 4, (width, old)


def test_unknown_detector_is_refused(jaffe_face_image):
    with pytest.raises(ValueError, match="detector"):
        detect_faces(jaffe_face_image[0], "haar")


def test_cnn_detector_finds_the_faces_hog_finds(jaffe_dir):
    paths = [jaffe_dir / "happy" / "KA.HA1.29.tiff", jaffe_dir / "surprise" / "KM.SU1.14.tiff",
             jaffe_dir / "sadness" / "YM.SA1.55.tiff"]
    for path in paths:
        image = read_image(path)
        cnn = detect_faces(image, "cnn")
        hog = detect_faces(image, "hog")
        assert len(cnn) == 1 and len(hog) == 1, (path, cnn, hog)
        assert _iou(cnn[0], hog[0]) > 0.5, (path, cnn, hog)  # measured 0.67-0.78
        rgb = read_image(path, "rgb")
        assert len(detect_faces(rgb, "cnn")) == 1  # RGB input too


def test_hog_on_rgb_and_gray_agree(jaffe_face_image):
    gray = jaffe_face_image[0]
    rgb = read_image(jaffe_face_image[1], "rgb")
    assert detect_faces(gray, "hog") == detect_faces(rgb, "hog")


# --- landmarks and alignment ----------------------------------------------------------------------

def test_face_fields_and_alignment(jaffe_faces):
    for sample, image, face in jaffe_faces:
        assert face.checked
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and x + w <= image.shape[1] and y + h <= image.shape[0]
        # the 68 points lie in and around the box, in image coordinates
        assert np.all(face.points[:, 0] > x - 0.3 * w) and np.all(face.points[:, 0] < x + 1.3 * w)
        assert np.all(face.points[:, 1] > y - 0.3 * h) and np.all(face.points[:, 1] < y + 1.3 * h)
        # anatomy: brows above eyes above nose tip above mouth above chin (image y grows down)
        p = face.points
        brows, eyes = p[17:27, 1].mean(), p[36:48, 1].mean()
        nose, mouth, chin = p[33, 1], p[48:68, 1].mean(), p[8, 1]
        assert brows < eyes < nose < mouth < chin, sample.path
        left, right = eye_centres(p)
        assert left[0] < right[0], "left_eye must be the eye on the image's left"
        # alignment: eyes level, at the fixed distance and height
        a_left, a_right = eye_centres(face.aligned_points)
        assert face.aligned.shape == (ALIGN_SIZE, ALIGN_SIZE)
        assert abs(a_left[1] - a_right[1]) < 1e-3
        assert abs(a_right[0] - a_left[0] - ALIGN_EYE_DISTANCE * ALIGN_SIZE) < 1e-3
        assert abs(a_left[1] - ALIGN_EYE_Y * ALIGN_SIZE) < 1e-3
        assert abs((a_left[0] + a_right[0]) / 2 - ALIGN_SIZE / 2) < 1e-3


def test_aligned_crop_is_the_face(jaffe_faces):
    """The aligned crop matches the original image warped by the same similarity transform."""
    sample, image, face = jaffe_faces[0]
    aligned, aligned_points = align_face(image, face.points)
    np.testing.assert_allclose(aligned_points, face.aligned_points, atol=0.05)
    assert np.abs(aligned.astype(int) - face.aligned.astype(int)).mean() < 4  # work image was upscaled


def test_large_faces_are_shrunk_without_aliasing(jaffe_faces):
    """Texture finer than the aligned crop's pixels averages out instead of folding back as
    false texture: a 1.5 px stripe pattern behind a large face comes out flat grey."""
    _, _, face = jaffe_faces[0]
    points = face.points.astype(np.float64) * 4          # the same face 4x larger: crop scale ~0.15
    h, w = 1100, 1100
    stripes = np.where((np.arange(w) // 1) % 3 == 0, 255, 0).astype(np.uint8)   # period 3 px
    image = np.tile(stripes, (h, 1))
    aligned, _ = align_face(image, points)
    assert abs(aligned.mean() - 85) < 6 and aligned.std() < 8, (aligned.mean(), aligned.std())
    # plain bilinear sampling of the same image would alias into strong stripes
    from landmarks.shape import alignment_matrix
    naive = cv2.warpAffine(image, alignment_matrix(points), (ALIGN_SIZE, ALIGN_SIZE), flags=cv2.INTER_LINEAR)
    assert naive.std() > 40


def test_a_face_aligns_the_same_at_any_size(jaffe_faces):
    """A photo's face and the same photo 3x larger give the same aligned crop: the reduction
    keeps the geometry (no sub-pixel shift) and the grey levels."""
    _, image, face = jaffe_faces[4]
    small, small_points = align_face(image, face.points)
    large_image = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    large, large_points = align_face(large_image, (face.points.astype(np.float64) + 0.5) * 3 - 0.5)
    np.testing.assert_allclose(large_points, small_points, atol=1e-3)
    assert np.abs(large.astype(int) - small.astype(int)).mean() < 2.5
    shift, _ = cv2.phaseCorrelate(small.astype(np.float32), large.astype(np.float32))
    assert np.hypot(*shift) < 0.15


def test_align_face_refuses_degenerate_points(jaffe_face_image):
    with pytest.raises(DegenerateLandmarksError):
        align_face(jaffe_face_image[0], np.full((68, 2), 100.0))


def test_mirror_table_matches_the_landmark_scheme(jaffe_faces):
    assert sorted(MIRROR.tolist()) == list(range(68))
    np.testing.assert_array_equal(MIRROR[MIRROR], np.arange(68))
    for left, right in (("left_eye", "right_eye"), ("left_eyebrow", "right_eyebrow")):
        assert sorted(MIRROR[PARTS[left]].tolist()) == list(range(68))[PARTS[right]]
    # on real faces: landmarks of the flipped image are the mirrored landmarks of the original
    errors = []
    for _, image, face in jaffe_faces[:8]:
        width = image.shape[1]
        flipped = find_faces(np.ascontiguousarray(image[:, ::-1]), "hog")[0]
        back = flipped.points[MIRROR].astype(np.float64)
        back[:, 0] = width - 1 - back[:, 0]
        errors.append(np.linalg.norm(back - face.points, axis=1).mean() / _iod(face.points))
    assert max(errors) < 0.08, f"mean mirrored-landmark error / IOD: {np.round(errors, 3)}"


def test_mirrored_face_is_the_alignment_of_the_flipped_photo(jaffe_faces, fer_dir):
    """mirrored() (the aligned crop flipped, no warp) equals mirror_face() (the flipped photo aligned
    on reflected landmarks): points exactly, pixels up to the warp's rounding; twice is the face."""
    photos = [image for _, image, _ in jaffe_faces[:4]] + [read_image(p) for p in sorted((fer_dir / "test" / "happy").glob("*.jpg"))[:4]]
    for image in photos:
        face = find_faces(image, "auto", upscale_to=0)[0]   # no enlargement: mirror_face aligns the photo itself
        quick, (_, slow) = mirrored(face), mirror_face(image, face)
        np.testing.assert_allclose(quick.aligned_points, slow.aligned_points, atol=1e-3)
        difference = np.abs(quick.aligned[:, 1:].astype(int) - slow.aligned[:, 1:].astype(int))
        assert difference.mean() < 2.0, difference.mean()   # the flip itself moves ~30 gray levels on average
        assert np.abs(quick.aligned.astype(int) - face.aligned.astype(int)).mean() > 5 * difference.mean() + 1
        twice = mirrored(quick)
        np.testing.assert_allclose(twice.points, face.points, atol=1e-4)
        np.testing.assert_allclose(twice.aligned_points, face.aligned_points, atol=1e-4)
        np.testing.assert_array_equal(twice.aligned[:, 1:], face.aligned[:, 1:])


def test_mirror_averaged_rows_of_a_photo_and_its_mirror_agree(jaffe_faces):
    """A photo and its mirrored photo (detected and landmarked afresh) get far closer rows averaged
    with their mirror image than as they are, and a face with no sides left is its own mirror."""
    from features.describe import FeatureConfig, describe_face, mirror_averaged

    config = FeatureConfig()
    plain, averaged = [], []

    def averaged_row(face, row):
        return mirror_averaged([face], row, config)

    for _, image, face in jaffe_faces[:6]:
        other = find_faces(np.ascontiguousarray(image[:, ::-1]), "hog")[0]
        a, b = describe_face(face, config)[None], describe_face(other, config)[None]
        plain.append(np.abs(a - b).mean())
        averaged.append(np.abs(mirror_averaged([face], a, config) - mirror_averaged([other], b, config)).mean())
        mirror = mirrored(face)
        of_mirror = mirror_averaged([mirror], describe_face(mirror, config)[None], config)
        assert np.abs(of_mirror - averaged_row(face, a)).mean() < 0.01 * np.abs(a).mean()
    assert np.median(averaged) < 0.5 * np.median(plain), (averaged, plain)


@pytest.mark.parametrize("factor", [1.5, 7.0])
def test_points_come_back_in_input_image_coordinates(jaffe_faces, factor):
    """1.5x: no upscaling of the face region; 7x (1792 px): the image is first reduced to MAX_SIDE."""
    assert 256 * 7.0 > MAX_SIDE
    errors = []
    for _, image, face in jaffe_faces[:4]:
        big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        found = find_faces(big, "hog")
        assert len(found) == 1
        errors.append(np.linalg.norm(found[0].points / factor - face.points, axis=1).mean() / _iod(face.points))
        bx, by, bw, bh = found[0].box
        assert bx + bw <= big.shape[1] + 1 and by + bh <= big.shape[0] + 1
        assert abs(bw / factor - face.box[2]) < 0.25 * face.box[2]
    assert max(errors) < 0.06, f"mean landmark displacement / IOD: {np.round(errors, 3)}"


def test_find_faces_on_a_flat_image(jaffe_face_image):
    assert find_faces(np.full((256, 256), 90, np.uint8), "hog") == []


# --- model files ---------------------------------------------------------------------------------

def test_model_files_are_found():
    for name in (models.SHAPE_PREDICTOR_68, models.MMOD_DETECTOR):
        path = models.model_path(name)
        assert os.path.getsize(path) > 100_000, path


def test_wrong_model_files_raise_model_file_error(tmp_path):
    text = tmp_path / "not_a_model.dat"
    text.write_text("this is not a dlib model\n")
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.dat"
    with open(models.model_path(models.SHAPE_PREDICTOR_68), "rb") as fh:
        truncated.write_bytes(fh.read(1_000_000))
    for path in (text, empty, truncated, models.model_path(models.MMOD_DETECTOR)):
        with pytest.raises(ModelFileError, match="not a dlib shape predictor"):
            models.shape_predictor(str(path))
    for path in (text, models.model_path(models.SHAPE_PREDICTOR_68)):
        with pytest.raises(ModelFileError, match="not a dlib MMOD detector"):
            models.cnn_detector(str(path))


def test_shape_predictor_override_by_environment(tmp_path, run_python, jaffe_face_image):
    text = tmp_path / "not_a_model.dat"
    text.write_text("this is not a dlib model\n")
    code = textwrap.dedent(f"""
        from landmarks import find_faces, read_image
        from common.errors import ModelFileError
        image = read_image({str(jaffe_face_image[1])!r})
        try:
            find_faces(image, "hog")
            print("NO ERROR")
        except ModelFileError as exc:
            print("ModelFileError:", exc)
    """)
    bad = run_python(["-c", code], env={"FER_SHAPE_PREDICTOR": str(text)})
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.startswith("ModelFileError:") and "not a dlib shape predictor" in bad.stdout

    missing = run_python(["-c", code], env={"FER_SHAPE_PREDICTOR": str(tmp_path / "missing.dat")})
    assert missing.stdout.startswith("ModelFileError:") and "not found" in missing.stdout

    real = run_python(["-c", code], env={"FER_SHAPE_PREDICTOR": models.model_path(models.SHAPE_PREDICTOR_68)})
    assert real.stdout.strip() == "NO ERROR", real.stdout + real.stderr


def test_models_load_lazily_and_once(run_python, jaffe_face_image):
    code = textwrap.dedent(f"""
        import landmarks, features, features.extract
        from landmarks import models
        caches = (models.shape_predictor, models.hog_detector, models.cnn_detector)
        print("after import:", [c.cache_info().currsize for c in caches])
        image = landmarks.read_image({str(jaffe_face_image[1])!r})
        for _ in range(3):
            landmarks.find_faces(image, "hog")
        print("after 3 images:", [c.cache_info().misses for c in caches])
    """)
    result = run_python(["-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["after import: [0, 0, 0]", "after 3 images: [1, 1, 0]"]
