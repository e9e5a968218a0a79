"""Inpaint's "Extend canvas": the picture grows on the chosen sides (edge pixels repeated), the new area is the mask,
and the request's size grows by the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.core.masks import extend_canvas
from modules.errors import InvalidRequest
from modules.ui.img2img import SOURCE_INPAINT_UPLOAD, img2img_request

VALUES = {"prompt": "p", "width": 64, "height": 64}


def _picture() -> Image.Image:
    array = np.zeros((64, 64, 3), np.uint8)
    array[:, :32] = (200, 10, 10)
    array[:, 32:] = (10, 10, 200)
    return Image.fromarray(array)


def test_the_canvas_grows_on_the_chosen_sides_with_the_new_area_masked() -> None:
    image, mask = extend_canvas(_picture(), None, 16, ["left", "down"])
    assert image.size == (80, 80) and mask.size == (80, 80)
    pixels, marks = np.asarray(image), np.asarray(mask)
    assert (pixels[:64, :16] == (200, 10, 10)).all() and (pixels[64:, 60] == (10, 10, 200)).all()  # edges repeated
    assert (marks[:, :16] == 255).all() and (marks[64:, :] == 255).all() and (marks[:64, 16:] == 0).all()
    same, unchanged = extend_canvas(_picture(), None, 0, ["left"])
    assert same.size == (64, 64) and unchanged.getbbox() is None
    with pytest.raises(InvalidRequest, match="unknown side"):
        extend_canvas(_picture(), None, 8, ["sideways"])


def test_a_given_mask_is_kept_and_an_image_of_another_size_is_scaled() -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (30, 30, 34, 34))
    image, grown = extend_canvas(_picture().resize((128, 128)), mask, 8, ["up"], scale=(2.0, 2.0))
    assert image.size == (128, 144)  # 8 generation pixels = 16 picture pixels
    marks = np.asarray(grown)
    assert (marks[:16] == 255).all() and marks[16 + 64, 64] == 255 and marks[100, 10] == 0


def test_inpaint_upload_request_with_extend_canvas() -> None:
    images = {"upload_image": _picture(), "upload_mask": Image.new("L", (64, 64), 0), "extend_pixels": 32,
              "extend_sides": ["left", "right"]}
    request = img2img_request(SOURCE_INPAINT_UPLOAD, VALUES, images)  # an empty mask is fine: the canvas adds one
    assert request.mode == "inpaint" and (request.width, request.height) == (128, 64)
    assert request.init_image.size == (128, 64) and request.mask.getbbox() == (0, 0, 128, 64)
    assert np.asarray(request.mask)[:, 32:96].max() == 0
    with pytest.raises(InvalidRequest, match="mask is empty"):
        img2img_request(SOURCE_INPAINT_UPLOAD, VALUES, {**images, "extend_pixels": 0})
