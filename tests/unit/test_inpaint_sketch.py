"""img2img's Inpaint sketch: the mask and init image derived from a colour stroke, as A1111 computes them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from modules.core.masks import inpaint_sketch

ORIGINAL = (10, 20, 30)
STROKE = (255, 0, 0)


def _pictures() -> tuple[Image.Image, Image.Image]:
    original = Image.new("RGB", (48, 48), ORIGINAL)
    painted = original.copy()
    ImageDraw.Draw(painted).rectangle((16, 16, 31, 31), fill=STROKE)
    return original, painted


def test_stroke_is_the_mask_and_its_colours_the_init_image() -> None:
    original, painted = _pictures()
    init, mask = inpaint_sketch(original, painted, mask_alpha=0, mask_blur=0)
    assert mask.mode == "L" and mask.getbbox() == (16, 16, 32, 32)
    assert set(np.unique(np.asarray(mask))) == {0, 255}
    assert init.mode == "RGB" and init.getpixel((20, 20)) == STROKE
    assert init.getpixel((0, 0)) == ORIGINAL and init.getpixel((15, 15)) == ORIGINAL


def test_mask_transparency_dims_the_mask_and_blends_the_original_back() -> None:
    original, painted = _pictures()
    init, mask = inpaint_sketch(original, painted, mask_alpha=50, mask_blur=0)
    assert mask.getpixel((20, 20)) == 127 and mask.getpixel((0, 0)) == 0  # PIL Brightness(0.5) of 255
    expected = Image.composite(painted, original, mask).getpixel((20, 20))
    assert init.getpixel((20, 20)) == expected and expected not in (STROKE, ORIGINAL)
    assert inpaint_sketch(original, painted, mask_alpha=100, mask_blur=0)[1].getbbox() is None


def test_blur_softens_the_edge_but_far_pixels_keep_the_original() -> None:
    original, painted = _pictures()
    init, mask = inpaint_sketch(original, painted, mask_alpha=0, mask_blur=4)
    assert mask.getbbox() == (16, 16, 32, 32)  # the mask itself is not blurred: the request's mask blur does that
    assert init.getpixel((0, 0)) == ORIGINAL and init.getpixel((47, 47)) == ORIGINAL
    edge = init.getpixel((15, 24))
    assert edge != ORIGINAL and edge[0] > ORIGINAL[0]  # some red leaks past the stroke's edge
    assert init.getpixel((24, 24))[0] > 200


def test_transparent_pictures_are_flattened_and_sizes_matched() -> None:
    original = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    painted = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    ImageDraw.Draw(painted).rectangle((0, 0, 7, 7), fill=(0, 0, 255, 255))
    init, mask = inpaint_sketch(original, painted, mask_alpha=0, mask_blur=0)
    assert init.size == mask.size == (16, 16)
    assert init.getpixel((15, 15)) == (255, 255, 255) and mask.getpixel((1, 1)) == 255
