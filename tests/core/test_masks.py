"""Pure mask/init-image operations (A1111 semantics)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.core import masks
from modules.core.init_image import latent_repaint_mask, prepare_init_image
from modules.core.plan import CoreOptions
from modules.types import GenerationRequest, InpaintFill, ResizeMode
from tests.core.helpers import block_mask, sample_image


def test_crop_region_and_expansion_follow_a1111_example():
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[100:132, 200:328] = 255  # a 128 x 32 region
    assert masks.crop_region(mask, 0) == (200, 100, 328, 132)
    assert masks.crop_region(mask, 8) == (192, 92, 336, 140)
    assert masks.expand_crop_region((200, 100, 328, 132), 512, 512, 512, 512) == (200, 52, 328, 180)
    # near the border the box is shifted back inside the image
    assert masks.expand_crop_region((0, 0, 128, 32), 512, 512, 512, 512) == (0, 0, 128, 128)
    assert masks.crop_region(np.zeros((8, 8), dtype=np.uint8), 4) is None


def test_binary_mask_uses_alpha_when_transparent():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 0, 200))
    rgba.putpixel((2, 2), (0, 0, 0, 100))
    mask = np.asarray(masks.binary_mask(rgba))
    assert mask[1, 1] == 255 and mask[2, 2] == 0 and mask.sum() == 255
    assert masks.binary_mask(Image.new("RGB", (4, 4), (128, 128, 128))).getpixel((0, 0)) == 128


def test_blur_mask_is_a_normalised_symmetric_gaussian():
    mask = block_mask(64, 64, (16, 16, 48, 48))
    blurred = np.asarray(masks.blur_mask(mask, 4), dtype=np.float64)
    assert masks.blur_mask(mask, 0) is mask
    assert abs(blurred.sum() - np.asarray(mask, dtype=np.float64).sum()) / blurred.sum() < 0.01
    assert np.array_equal(blurred, blurred[::-1, ::-1])
    assert blurred[32, 32] == 255 and 0 < blurred[32, 13] < 128 and blurred[0, 0] == 0


def test_resize_modes():
    image = Image.new("RGB", (100, 50), (10, 20, 30))
    image.paste((200, 0, 0), (0, 0, 100, 4))  # red top rows
    assert masks.resize_image(ResizeMode.JUST_RESIZE, image, 64, 64).size == (64, 64)
    cropped = masks.resize_image(ResizeMode.CROP_AND_RESIZE, image, 64, 64)
    assert cropped.getpixel((0, 32)) == (10, 20, 30)  # covers the canvas, no empty band
    filled = np.asarray(masks.resize_image(ResizeMode.RESIZE_AND_FILL, image, 64, 64))
    assert filled.shape == (64, 64, 3)
    assert filled[0, 32, 0] > 150  # the top band repeats the (red) top row
    assert tuple(filled[40, 32]) == (10, 20, 30)
    mask = masks.resize_image(ResizeMode.RESIZE_AND_FILL, Image.new("L", (100, 50), 255), 64, 64)
    assert mask.mode == "L" and np.asarray(mask).min() == 255


def test_fill_keeps_unmasked_pixels_and_fills_the_hole_with_surrounding_colour():
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    image.paste((0, 0, 0), (16, 16, 48, 48))
    mask = block_mask(64, 64, (16, 16, 48, 48))
    filled = np.asarray(masks.fill_masked(image, mask))
    assert np.array_equal(filled[:16], np.asarray(image)[:16])
    assert filled[32, 32, 0] > 150  # the black hole took the red surroundings


def test_paste_back_restores_the_original_outside_the_mask():
    original = sample_image()
    overlay = masks.make_overlay(original, block_mask())
    result = masks.paste_back(Image.new("RGB", (64, 64), (0, 255, 0)), overlay, None)
    array = np.asarray(result)
    assert np.array_equal(array[:16], np.asarray(original)[:16])
    assert tuple(array[20, 20]) == (0, 255, 0)


def test_prepare_whole_picture_inpaint_doubles_the_overlay_mask():
    request = GenerationRequest(mode="inpaint", init_image=sample_image(), mask=block_mask(), width=64, height=64,
                                mask_blur=2, inpainting_fill=InpaintFill.FILL)
    init = prepare_init_image(request, CoreOptions())
    assert init.paste_to is None and init.image.size == (64, 64)
    alpha = np.asarray(init.overlay.getchannel("A"), dtype=int)
    mask = np.asarray(init.mask, dtype=int)
    assert np.array_equal(alpha, 255 - np.clip(mask * 2, 0, 255))


def test_prepare_only_masked_inverts_and_crops():
    request = GenerationRequest(mode="inpaint", init_image=sample_image(128, 64), width=64, height=64,
                                mask=block_mask(128, 64, (0, 0, 100, 64)), invert_mask=True, mask_blur=0,
                                inpaint_full_res=True, inpaint_full_res_padding=0)
    init = prepare_init_image(request, CoreOptions())
    assert init.paste_to == (64, 0, 64, 64)  # inverted mask: x 100..128, grown to 1:1 and shifted inside
    assert init.overlay.size == (128, 64) and init.image.size == (64, 64)


def test_latent_repaint_mask_is_binary_at_latent_size():
    mask = latent_repaint_mask(block_mask(), 8, 8)
    assert mask.shape == (1, 1, 8, 8)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert mask[0, 0, 3, 3] == 1 and mask[0, 0, 0, 0] == 0


def test_flatten_uses_the_background_colour_and_refuses_a_bad_one():
    from modules.core.masks import flatten
    from modules.errors import InvalidRequest

    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert flatten(transparent, "#ff0000").getpixel((0, 0)) == (255, 0, 0)
    assert flatten(transparent, "navy").getpixel((0, 0)) == (0, 0, 128)
    with pytest.raises(InvalidRequest, match="not a colour"):
        flatten(transparent, "not-a-colour")
