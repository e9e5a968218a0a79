"""The Extras tab's upscaling (modules/extras.py): sizes for "Scale by" and "Scale to" with and without crop, the
blend of two upscalers, A1111's postprocessing text, pixels equal to Pillow doing the same, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from modules.errors import InvalidRequest
from modules.extras import SCALE_BY, SCALE_TO, ExtrasRequest, upscale_picture, validate
from modules.upscalers.registry import UpscalerRegistry

REGISTRY = UpscalerRegistry()


def _picture(width: int = 40, height: int = 32, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def _request(**fields) -> ExtrasRequest:
    return ExtrasRequest(images=(_picture(),), **fields)


def test_scale_by_lanczos_equals_pillow():
    picture = _picture()
    result, text = upscale_picture(_request(upscaling_resize=2.0, upscaler_1="Lanczos"), picture, REGISTRY)
    assert result.size == (80, 64)
    expected = picture.resize((80, 64), resample=Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result), np.asarray(expected))
    assert text == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


def test_scale_to_covers_the_size_and_crops_the_centre():
    picture = _picture(40, 32)
    request = _request(resize_mode=SCALE_TO, upscaling_resize_w=96, upscaling_resize_h=64, upscaler_1="Nearest")
    cropped, text = upscale_picture(request, picture, REGISTRY)
    assert cropped.size == (96, 64)
    assert text == ("Postprocess upscale to: 96x64, Postprocess crop to: 96x64, Postprocess upscaler: Nearest")
    whole, _ = upscale_picture(dataclasses.replace(request, upscaling_crop=False), picture, REGISTRY)
    assert whole.size == (96, 72)  # by max(96/40, 64/32) = 2.4, sides down to multiples of 8 (A1111), not cropped
    top = (whole.height - 64) // 2
    assert np.array_equal(np.asarray(cropped), np.asarray(whole)[top:top + 64])


def test_a_second_upscaler_is_blended_by_its_visibility():
    picture = _picture()
    request = _request(upscaler_1="Lanczos", upscaler_2="Nearest", extras_upscaler_2_visibility=0.25)
    blended, text = upscale_picture(request, picture, REGISTRY)
    first = picture.resize((80, 64), resample=Image.Resampling.LANCZOS)
    second = picture.resize((80, 64), resample=Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(blended), np.asarray(Image.blend(first, second, 0.25)))
    assert text.endswith("Postprocess upscaler: Lanczos, Postprocess upscaler 2: Nearest")
    hidden, text = upscale_picture(_request(upscaler_1="Lanczos", upscaler_2="Nearest"), picture, REGISTRY)
    assert np.array_equal(np.asarray(hidden), np.asarray(first)) and "upscaler 2" not in text


def test_transparent_pictures_are_flattened_on_white():
    picture = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    result, _ = upscale_picture(_request(upscaler_1="Nearest"), picture, REGISTRY)
    assert result.mode == "RGB" and result.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("fields", "message"), [
    ({"upscaler_1": "Latent"}, "latent upscaler"),
    ({"upscaler_1": "4x_nowhere"}, "4x_nowhere"),
    ({"upscaling_resize": 20.0}, "upscaling_resize"),
    ({"resize_mode": SCALE_TO, "upscaling_resize_w": 0}, "upscaling_resize_w"),
    ({"extras_upscaler_2_visibility": 2.0}, "visibility"),
])
def test_bad_requests_are_refused(fields, message):
    request = _request(**fields)
    with pytest.raises(InvalidRequest, match=message):
        validate(request)
        upscale_picture(request, _picture(), REGISTRY)


def test_nothing_to_upscale():
    with pytest.raises(InvalidRequest, match="No image"):
        validate(ExtrasRequest(images=(), resize_mode=SCALE_BY))
