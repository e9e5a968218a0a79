"""A unit's control image: the preprocessor's output, fitted to the generation size by the resize mode and
turned into the tensor the ControlNet takes (made once per size)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from modules.extensions.api import UserError

from . import ip_adapter
from .preprocessors import Extras, find, pixel_perfect_resolution
from .units import MODULES, ControlUnit


def preprocess(picture: Image.Image, module: str, resolution: float = -1, threshold_a: float = -1,
               threshold_b: float = -1, extras: Extras | None = None) -> Image.Image:
    """The preprocessor's output (RGB; RGBA for inpaint_only); UserError for an unknown module or one that needs a
    missing library or weights. An IP-Adapter module shows the picture as its CLIP encoder sees it (resized and
    centre-cropped)."""
    if ip_adapter.is_module(module):
        return ip_adapter.encoder_view(picture)
    preprocessor = find(module)
    if preprocessor is None:
        raise UserError(f"ControlNet: preprocessor {module!r} is not available; available: {', '.join(MODULES)}.")
    return preprocessor(picture, resolution, threshold_a, threshold_b, extras)


def unit_map(unit: ControlUnit, width: int, height: int) -> Image.Image:
    """The unit's preprocessed control image for a generation of width x height (before fitting to that size)."""
    assert unit.picture is not None
    resolution: float = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(unit.picture.width, unit.picture.height, width, height,
                                              unit.resize_mode)
    return preprocess(unit.picture, unit.module, resolution, unit.threshold_a, unit.threshold_b,
                      Extras(seed=unit.seed, mask=unit.mask, annotators=unit.annotators))


def fit(picture: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """The control image at the generation size: stretched, cropped to cover, or fitted with black borders."""
    if picture.size == (width, height) or mode == "Just Resize":
        return picture.resize((width, height), Image.Resampling.LANCZOS) if picture.size != (width, height) \
            else picture
    ratio = (max if mode == "Crop and Resize" else min)(width / picture.width, height / picture.height)
    scaled = picture.resize((max(1, round(picture.width * ratio)), max(1, round(picture.height * ratio))),
                            Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA" if picture.mode == "RGBA" else "RGB", (width, height))  # RGBA: borders masked
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def control_tensor(unit: ControlUnit, width: int, height: int, device: Any, dtype: Any) -> Any:
    """The unit's control image as a (1, 3, height, width) tensor in [0, 1] (as diffusers' ControlNet pipelines
    prepare it), made once per size; an RGBA map (inpaint_only) is -1 where transparent (A1111's inpaint hint)."""
    import numpy as np
    import torch

    key = (width, height, str(device), dtype)
    if key not in unit._tensors:
        picture = fit(unit_map(unit, width, height), width, height, unit.resize_mode)
        array = np.asarray(picture, dtype=np.float32) / 255.0
        if array.shape[2] == 4:
            array = np.where(array[..., 3:] < 0.5, np.float32(-1.0), array[..., :3])
        unit._tensors[key] = torch.from_numpy(array).permute(2, 0, 1)[None].to(device, dtype)
    return unit._tensors[key]




def inpaint_blend(image: Image.Image, unit: ControlUnit, sigma: int) -> Image.Image:
    """inpaint_only's final blend (A1111's extension): the decoded picture is kept inside the unit's mask, grown by
    a `sigma` x `sigma` square and box-blurred with that size, and the control image (at the picture's size) comes
    back outside it: `m * picture + (1 - m) * control`, rounded to 8 bits."""
    import numpy as np

    width, height = image.size
    feed = np.asarray(fit(unit_map(unit, width, height), width, height, unit.resize_mode).convert("RGBA"),
                      dtype=np.float64) / 255.0
    size = max(1, int(sigma))
    mask = _box_blur(_dilate(1.0 - feed[..., 3], size), size)[..., None]
    picture = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    blended = mask * picture + (1.0 - mask) * feed[..., :3]
    return Image.fromarray(np.round(blended.clip(0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


def _windows(array: Any, size: int, mode: str) -> Any:
    """size x size windows around each pixel, anchored at the centre as OpenCV anchors them (an even size reaches
    one pixel further up and left); `mode` pads the borders ("reflect" is OpenCV's default BORDER_REFLECT_101)."""
    import numpy as np

    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(array, ((before, after), (before, after)), mode=mode)  # type: ignore[call-overload]
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size))


def _dilate(mask: Any, size: int) -> Any:
    """The largest value of each size x size square (`cv2.dilate` with a square of ones; borders add nothing)."""
    return _windows(mask, size, "constant").max(axis=(2, 3))


def _box_blur(mask: Any, size: int) -> Any:
    """The mean of each size x size square (`cv2.blur`, mirrored borders)."""
    return _windows(mask, size, "reflect").mean(axis=(2, 3))
