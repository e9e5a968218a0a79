"""The demo model's synthetic dataset and the pixel classifier that scores generated images."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tools.demo_model.classify import (
    classify,
    largest_region,
    nearest_colour,
    shape_of,
)
from tools.demo_model.dataset import (
    COLOUR_NAMES,
    COLOURS,
    HELD_OUT,
    RESOLUTION,
    SHAPES,
    Scene,
    all_combinations,
    caption,
    make_dataset,
    make_scenes,
    partial_caption,
    shape_mask,
    training_combinations,
)


def test_same_seed_same_images_and_captions() -> None:
    first, second = make_dataset(40, seed=3), make_dataset(40, seed=3)
    assert np.array_equal(first.images, second.images)
    assert first.captions == second.captions
    other = make_dataset(40, seed=4)
    assert not np.array_equal(first.images, other.images)


def test_images_are_64_px_rgb_of_palette_colours() -> None:
    data = make_dataset(8, seed=0)
    assert data.images.shape == (8, RESOLUTION, RESOLUTION, 3) and data.images.dtype == np.uint8
    for image, scene in zip(data.images, data.scenes):
        colours = {tuple(int(v) for v in pixel) for pixel in image.reshape(-1, 3)}
        assert colours == {COLOURS[scene.foreground], COLOURS[scene.background]}


def test_captions_name_colour_shape_and_background() -> None:
    assert caption("red", "blue", "circle") == "a red circle on a blue background"
    assert caption("orange", "white", "square") == "an orange square on a white background"
    assert caption("black", "orange", "triangle") == "a black triangle on an orange background"
    scene = Scene("green", "purple", "triangle", size=30, x=5, y=6)
    assert scene.caption == "a green triangle on a purple background"


def test_held_out_combinations_never_train_but_their_parts_do() -> None:
    training = set(training_combinations())
    assert len(HELD_OUT) == 8 and not HELD_OUT & training
    assert len(training) + len(HELD_OUT) == len(all_combinations()) == 8 * 7 * 3
    for fg, bg, shape in HELD_OUT:
        assert any(c[0] == fg and c[2] == shape for c in training)
        assert any(c[0] == fg and c[1] == bg for c in training)
    assert not {scene.combination for scene in make_scenes(500, seed=1)} & HELD_OUT


def test_scenes_cycle_through_every_training_combination_evenly() -> None:
    combos = training_combinations()
    counts = Counter(scene.combination for scene in make_scenes(2 * len(combos), seed=2))
    assert set(counts) == set(combos) and set(counts.values()) == {2}


@pytest.mark.parametrize(("shape", "ratio"), [("square", 1.0), ("circle", np.pi / 4), ("triangle", 0.5)])
def test_shape_masks_fill_their_box_and_classify_as_themselves(shape: str, ratio: float) -> None:
    mask = shape_mask(shape, 40, 10, 12)
    ys, xs = np.nonzero(mask)
    assert (ys.min(), xs.min()) >= (12, 10) and (ys.max(), xs.max()) <= (51, 49)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert mask.sum() / box == pytest.approx(ratio, abs=0.03)
    assert shape_of(mask) == shape


def test_a_square_with_pinched_or_rounded_sides_stays_a_square() -> None:
    """What a small model draws for "square": corners filled, sides bowed in by a few pixels (fill ratio ~0.8,
    nearer a circle's 0.785 than a square's 1.0) or corners rounded off."""
    cy, cx = np.mgrid[0:64, 0:64] + 0.5
    u, v = (cx - 12) / 40, (cy - 12) / 40
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    # each side bowed in by up to 6 % of the box, deepest at its middle
    pinched = (inside & (np.minimum(v, 1 - v) >= 0.06 * np.sin(np.pi * u))
               & (np.minimum(u, 1 - u) >= 0.06 * np.sin(np.pi * v)))
    assert 0.8 < pinched.sum() / inside.sum() < 0.89  # the old fill-ratio rule said "circle"
    assert shape_of(pinched) == "square"
    rounded = inside & ~((np.minimum(u, 1 - u) < 0.15) & (np.minimum(v, 1 - v) < 0.15)
                         & (np.hypot(0.15 - np.minimum(u, 1 - u), 0.15 - np.minimum(v, 1 - v)) > 0.15))
    assert shape_of(rounded) == "square"
    octagon = inside & (np.abs(u - 0.5) + np.abs(v - 0.5) <= 0.7)
    assert shape_of(octagon) == "circle"


@pytest.mark.slow
def test_classifier_is_exact_on_clean_images_of_every_combination() -> None:
    data = make_dataset(336, seed=5, combinations=all_combinations())
    for image, scene in zip(data.images, data.scenes):
        seen = classify(image)
        assert (seen.foreground, seen.background, seen.shape) == scene.combination, scene


def test_classifier_tolerates_pixel_noise() -> None:
    rng = np.random.default_rng(0)
    data = make_dataset(48, seed=6, combinations=all_combinations())
    for image, scene in zip(data.images, data.scenes):
        noisy = np.clip(image + rng.normal(0, 12, image.shape), 0, 255)
        seen = classify(noisy)
        assert (seen.foreground, seen.background, seen.shape) == scene.combination, scene


def test_classifier_reports_no_shape_on_a_plain_image() -> None:
    plain = np.zeros((RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    plain[:] = COLOURS["green"]
    seen = classify(plain)
    assert (seen.background, seen.foreground, seen.shape) == ("green", None, None)


def test_nearest_colour_and_largest_region() -> None:
    for name in COLOUR_NAMES:
        assert nearest_colour(np.array(COLOURS[name]) + 10) == name
    mask = np.zeros((8, 8), dtype=bool)
    mask[0, 0] = True
    mask[3:6, 3:6] = True
    region = largest_region(mask)
    assert region.sum() == 9 and not region[0, 0]
    assert not largest_region(np.zeros((4, 4), dtype=bool)).any()
    assert set(SHAPES) == {"circle", "square", "triangle"}


def test_partial_captions_name_only_the_given_attributes() -> None:
    assert partial_caption("red", "blue", "circle") == caption("red", "blue", "circle")
    assert partial_caption("red", None, "circle") == "a red circle"
    assert partial_caption(None, "blue", "triangle") == "a triangle on a blue background"
    assert partial_caption("orange", "blue", None) == "an orange shape on a blue background"
    assert partial_caption("red", None, None) == "a red shape"
    assert partial_caption(None, None, "square") == "a square"
    assert partial_caption(None, "orange", None) == "an orange background"
    assert partial_caption(None, None, None) == ""
