"""ControlNet's preprocessors without weights on synthetic pictures (none, invert, canny, threshold, scribble_xdog,
tile_resample), A1111's resolution handling and pixel-perfect rule, the missing-OpenCV message, and the page's
unit controls turned into the API's unit objects. canny and scribble_xdog need OpenCV (skipped without it, apart from
the message that names the package)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.errors import UserError
from tests.extensions.helpers import controlnet_module


@pytest.fixture(scope="module")
def pre() -> Any:
    return controlnet_module("cnlib.preprocessors")


@pytest.fixture(scope="module")
def script() -> Any:
    return controlnet_module("scripts.controlnet")


def _step(width: int = 128, height: int = 96, low: int = 0, high: int = 255, at: int = 64) -> Image.Image:
    """Dark left part, bright right part: one vertical edge at column `at`."""
    array = np.full((height, width, 3), low, np.uint8)
    array[:, at:] = high
    return Image.fromarray(array)


def _columns_with_edges(picture: Image.Image) -> np.ndarray:
    array = np.asarray(picture)
    assert array.ndim == 3 and array.shape[2] == 3
    return np.nonzero((array[..., 0] > 0).any(axis=0))[0]


def test_the_list_and_the_unknown_ones(pre, script) -> None:
    assert list(pre.PREPROCESSORS)[:6] == ["none", "invert", "canny", "threshold", "scribble_xdog", "tile_resample"]
    assert pre.find("Invert (from white bg & black line)").name == "invert"  # A1111's UI label
    with pytest.raises(UserError, match="preprocessor 'openpose_full' is not available; available: none, invert"):
        script.parse_unit({"module": "openpose_full"}, 0)


def test_none_and_invert_keep_the_size_and_blend_transparency_over_white(pre) -> None:
    picture = _step(40, 30)
    assert np.array_equal(np.asarray(pre.PREPROCESSORS["none"](picture)), np.asarray(picture))
    assert np.array_equal(np.asarray(pre.PREPROCESSORS["invert"](picture)), 255 - np.asarray(picture))
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # A1111's HWC3: transparent = white
    assert np.asarray(pre.PREPROCESSORS["none"](clear)).min() == 255
    assert np.asarray(pre.PREPROCESSORS["invert"](clear)).max() == 0


def test_canny_finds_the_edge_and_nothing_in_flat_parts(pre) -> None:
    pytest.importorskip("cv2")
    canny = pre.PREPROCESSORS["canny"]
    edges = canny(_step(128, 96, at=64), 96)  # resolution = the short side: the size stays
    assert edges.size == (128, 96)
    columns = _columns_with_edges(edges)
    assert len(columns) > 0 and set(columns) <= {62, 63, 64, 65}
    assert np.asarray(edges)[:, :60].max() == 0 and np.asarray(edges)[:, 68:].max() == 0
    assert set(np.unique(np.asarray(edges))) <= {0, 255}
    flat = canny(Image.new("RGB", (64, 64), (120, 40, 200)), 64)
    assert np.asarray(flat).max() == 0


def test_canny_thresholds_are_a1111s_low_and_high(pre) -> None:
    pytest.importorskip("cv2")
    canny = pre.PREPROCESSORS["canny"]
    faint = _step(64, 64, low=100, high=130, at=32)  # a step of 30: gradient 120 (Sobel, L1)
    assert np.asarray(canny(faint, 64)).max() == 0  # defaults 100 / 200: below the high threshold
    assert np.asarray(canny(faint, 64, 50, 100)).max() == 255  # thresholds 50 / 100: an edge
    assert canny.settings(-1, -1, -1) == (512, 100.0, 200.0)


def test_canny_scales_to_the_processor_resolution(pre) -> None:
    pytest.importorskip("cv2")
    edges = pre.PREPROCESSORS["canny"](_step(100, 60, at=50), 512)
    assert edges.size == (853, 512)  # short side to 512, A1111's rounding; the padding to 64 is cut off again
    columns = _columns_with_edges(edges)
    assert len(columns) > 0 and all(abs(column - 426) <= 4 for column in columns)


def test_without_opencv_canny_names_the_package(pre, script, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(UserError, match=r"canny preprocessor needs OpenCV: pip install opencv-python-headless"):
        pre.PREPROCESSORS["canny"](_step())
    with pytest.raises(UserError, match="pip install opencv-python-headless"):
        script.preprocess(_step(), "scribble_xdog")
    threshold = pre.PREPROCESSORS["threshold"](_step(128, 96, low=100, high=200, at=64), 96)  # Pillow resizing
    assert threshold.size == (128, 96)


def test_threshold_binarizes_on_the_darkest_channel(pre) -> None:
    array = np.zeros((64, 64, 3), np.uint8)
    array[:, :16] = (200, 200, 200)
    array[:, 16:32] = (200, 200, 100)  # one channel at or below the threshold: black
    array[:, 32:48] = (128, 128, 128)
    array[:, 48:] = (127, 255, 255)
    result = np.asarray(pre.PREPROCESSORS["threshold"](Image.fromarray(array), 64))
    assert result.shape == (64, 64, 3) and set(np.unique(result)) == {0, 255}
    assert [int(result[10, x, 0]) for x in (8, 24, 40, 56)] == [255, 0, 255, 0]  # default 127: above is white
    higher = np.asarray(pre.PREPROCESSORS["threshold"](Image.fromarray(array), 64, 150))
    assert [int(higher[10, x, 0]) for x in (8, 24, 40, 56)] == [255, 0, 0, 0]


def test_scribble_xdog_marks_the_edge(pre) -> None:
    pytest.importorskip("cv2")
    result = pre.PREPROCESSORS["scribble_xdog"](_step(128, 128, at=64), 128)
    columns = _columns_with_edges(result)
    assert len(columns) > 0 and all(abs(column - 64) <= 8 for column in columns)


def test_tile_resample_downsamples_by_threshold_a(pre) -> None:
    tile = pre.PREPROCESSORS["tile_resample"]
    picture = _step(128, 96)
    assert tile(picture).size == (128, 96)  # default rate 1: unchanged
    assert tile(picture, -1, 2.0).size == (64, 48)
    assert tile(picture, -1, 4.5).size == (28, 21)


def test_pixel_perfect_resolution_is_a1111s(pre) -> None:
    # a 256x512 (w x h) picture for a 512x512 generation
    assert pre.pixel_perfect_resolution(256, 512, 512, 512, "Crop and Resize") == 512
    assert pre.pixel_perfect_resolution(256, 512, 512, 512, "Just Resize") == 512
    assert pre.pixel_perfect_resolution(256, 512, 512, 512, "Resize and Fill") == 256
    assert pre.pixel_perfect_resolution(1024, 768, 512, 512, "Crop and Resize") == 512


def test_a_unit_uses_pixel_perfect_and_its_thresholds(script) -> None:
    unit = script.parse_unit({"module": "threshold", "image": _step(100, 50, low=100, high=200, at=50),
                              "threshold_a": 150,
                              "processor_res": 64, "pixel_perfect": True, "resize_mode": "Just Resize"}, 0)
    detected = script.unit_map(unit, 400, 200)  # pixel perfect: 200 (not 64) for a 400x200 generation
    assert detected.size == (400, 200)
    assert np.asarray(detected)[:, :190].max() == 0 and np.asarray(detected)[:, 210:].min() == 255
    unit.pixel_perfect = False
    assert script.unit_map(unit, 400, 200).size == (128, 64)


def test_page_values_make_the_apis_units(script) -> None:
    page = controlnet_module("cnlib.page")
    picture = _step(32, 32)
    values = {"0_enabled": False, "1_enabled": True, "1_image": picture, "1_module": "canny",
              "1_model": "tinycn [01234567]", "1_weight": 0.8, "1_guidance_start": 0.1, "1_guidance_end": 0.9,
              "1_processor_res": 256, "1_threshold_a": 50, "1_threshold_b": 150, "1_pixel_perfect": True,
              "1_control_mode": "My prompt is more important", "1_resize_mode": "Just Resize",
              "2_enabled": False, "2_module": "threshold", "2_model": "None"}
    units = page.units_from_page(3, values)
    assert len(units) == 2 and units[0]["enabled"] is False  # the trailing disabled unit is left out
    assert units[1] == {"enabled": True, "module": "canny", "model": "tinycn [01234567]", "weight": 0.8,
                        "image": picture, "resize_mode": "Just Resize", "processor_res": 256, "threshold_a": 50.0,
                        "threshold_b": 150.0, "guidance_start": 0.1, "guidance_end": 0.9, "pixel_perfect": True,
                        "control_mode": "My prompt is more important"}
    assert page.units_from_page(3, {"0_enabled": False, "0_module": "none"}) == []
    none_unit = page.units_from_page(1, {"0_enabled": True, "0_module": "none", "0_threshold_a": 64})[0]
    assert (none_unit["threshold_a"], none_unit["threshold_b"], none_unit["model"]) == (-1.0, -1.0, "")
    parsed = script.parse_unit(units[1], 1)
    assert (parsed.module, parsed.weight, parsed.threshold_a, parsed.control_mode, parsed.picture) == (
        "canny", 0.8, 50.0, "My prompt is more important", picture)
