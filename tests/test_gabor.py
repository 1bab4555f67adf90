"""Gabor jets at the inner landmarks: the bank tunes to what it claims, on real faces."""

import cv2
import numpy as np
import pytest

from features.describe import FeatureConfig, describe_face
from features.gabor import ORIENTATIONS, POINTS, WAVELENGTHS, gabor_jets, gabor_names
from landmarks.shape import ALIGN_SIZE

N_FILTERS = len(WAVELENGTHS) * ORIENTATIONS


def _grating(wavelength, theta, size=ALIGN_SIZE):
    y, x = np.mgrid[:size, :size].astype(np.float64)
    wave = np.cos(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / wavelength)
    return np.clip(128 + 100 * wave, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("w", range(len(WAVELENGTHS)))
@pytest.mark.parametrize("o", [0, 2, 3, 6])
def test_a_grating_excites_the_filter_of_its_wavelength_and_orientation(w, o):
    """At the centre of a sinusoidal grating the strongest response is the matching filter; the
    column names say which filter each column is."""
    image = _grating(WAVELENGTHS[w], o * np.pi / ORIENTATIONS)
    points = np.full((68, 2), ALIGN_SIZE / 2.0)
    jets = gabor_jets(image, points).reshape(len(POINTS), N_FILTERS)
    best = int(np.argmax(jets[0]))
    assert best == w * ORIENTATIONS + o
    name = gabor_names()[best]
    assert f"_wl{WAVELENGTHS[w]:.1f}px_" in name and name.endswith(f"_ori{o * 180 // ORIENTATIONS:03d}")
    # the orthogonal filter of the same wavelength barely answers (jets are log(1 + magnitude))
    orthogonal = w * ORIENTATIONS + (o + ORIENTATIONS // 2) % ORIENTATIONS
    assert np.expm1(jets[0, orthogonal]) < 0.05 * np.expm1(jets[0, best])


def test_flat_image_gives_no_response():
    jets = gabor_jets(np.full((ALIGN_SIZE, ALIGN_SIZE), 77, np.uint8), np.full((68, 2), 48.0))
    np.testing.assert_allclose(jets, 0, atol=1e-5)


def test_names_match_the_vector(jaffe_faces):
    names = gabor_names()
    assert len(names) == len(set(names)) == len(POINTS) * N_FILTERS == 51 * 40
    assert names[0] == "gabor_brow_point17_wl4.0px_ori000" and names[-1].startswith("gabor_mouth_point67_wl16.0px_")
    _, _, face = jaffe_faces[0]
    assert gabor_jets(face.aligned, face.aligned_points).shape == (len(names),)


def test_real_faces_are_finite_and_differ_between_expressions(jaffe_faces):
    jets = np.stack([gabor_jets(face.aligned, face.aligned_points) for _, _, face in jaffe_faces])
    assert np.all(np.isfinite(jets)) and jets.dtype == np.float32 and (jets > 0).mean() > 0.99
    # every pair of different faces differs clearly, relative to the size of the jets
    spread = np.linalg.norm(jets[:, None] - jets[None], axis=2)[np.triu_indices(len(jets), 1)]
    assert spread.min() > 0.05 * np.linalg.norm(jets, axis=1).mean()


def test_invariant_to_brightness_and_contrast(jaffe_faces):
    """Lighting that scales and shifts the grey levels leaves the jets (almost) unchanged."""
    _, _, face = jaffe_faces[3]
    base = gabor_jets(face.aligned, face.aligned_points)
    dimmer = (face.aligned.astype(np.float64) * 0.6 + 40).round().astype(np.uint8)
    change = np.abs(gabor_jets(dimmer, face.aligned_points) - base)
    assert change.mean() < 0.01 and change.max() < 0.1   # what is left is rounding to 8 bits
    # ...but a different face position (points moved 6 px) does change them
    moved = gabor_jets(face.aligned, face.aligned_points + 6)
    assert np.abs(moved - base).mean() > 0.1


def test_wrinkles_answer_at_fine_wavelengths(jaffe_faces):
    """Blurring the face (removing wrinkles and fine edges) lowers the finest scale far more
    than the coarsest."""
    _, _, face = jaffe_faces[5]
    jets = gabor_jets(face.aligned, face.aligned_points).reshape(len(POINTS), len(WAVELENGTHS), ORIENTATIONS)
    blurred = cv2.GaussianBlur(face.aligned, (0, 0), 2.0)
    jets_blur = gabor_jets(blurred, face.aligned_points).reshape(jets.shape)
    loss = (jets - jets_blur).mean(axis=(0, 2)) / jets.mean(axis=(0, 2))
    assert loss[0] > 0.5 and loss[-1] < 0.2 and np.all(np.diff(loss) < 0)


def test_describe_face_with_the_gabor_group(jaffe_faces):
    config = FeatureConfig(groups=("geometry", "gabor"))
    names, slices = config.columns()
    _, _, face = jaffe_faces[1]
    vector = describe_face(face, config)
    assert vector.shape == (len(names),)
    np.testing.assert_array_equal(vector[slices["gabor"]], gabor_jets(face.aligned, face.aligned_points))


def test_equals_filtering_the_whole_face_and_reading_at_the_points(jaffe_faces):
    """The per-point dot products are exactly what filtering the whole (normalised) face with
    each kernel and reading the magnitude at the landmarks gives."""
    from features.gabor import SIGMA_PER_WAVELENGTH

    _, _, face = jaffe_faces[2]
    points = np.round(face.aligned_points).astype(int)   # integer positions: no interpolation
    jets = gabor_jets(face.aligned, points).reshape(len(POINTS), len(WAVELENGTHS), ORIENTATIONS)
    image = face.aligned.astype(np.float32)
    image = (image - image.mean()) / image.std()
    xs, ys = points[list(POINTS)].T
    for w, wavelength in enumerate(WAVELENGTHS):
        sigma = SIGMA_PER_WAVELENGTH * wavelength
        side = 2 * int(round(2.5 * sigma)) + 1
        for o in range(ORIENTATIONS):
            parts = []
            for psi in (0, np.pi / 2):
                kernel = cv2.getGaborKernel((side, side), sigma, o * np.pi / ORIENTATIONS, wavelength, 1, psi, cv2.CV_64F)
                parts.append(cv2.filter2D(image, cv2.CV_32F, (kernel - kernel.mean()).astype(np.float32),
                                          borderType=cv2.BORDER_REPLICATE)[ys, xs])
            np.testing.assert_allclose(jets[:, w, o], np.log1p(np.hypot(*parts)), atol=2e-4)
