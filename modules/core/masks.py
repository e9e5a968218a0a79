"""Init-image and mask operations of img2img/inpaint, as AUTOMATIC1111 performs them; pure PIL/numpy.

- `binary_mask`: an RGBA mask with transparency uses its alpha (> 128 = repaint), anything else its luminance.
- `blur_mask`: A1111's mask blur, a Gaussian with kernel size 2 * int(2.5 * r + 0.5) + 1 and sigma r, run along x
  then y with mirrored borders (OpenCV's `GaussianBlur` defaults, which A1111 calls).
- `crop_region` / `expand_crop_region`: "inpaint only masked": the bounding box of the mask plus padding, grown to
  the processing aspect ratio (A1111 `masking.get_crop_region` / `expand_crop_region`).
- `resize_image`: just resize / crop and resize / resize and fill (stretching the edge rows or columns into the
  empty bands), with Lanczos resampling (A1111 `images.resize_image` without an upscaler).
- `fill_masked`: "fill" masked content: the masked area takes the colours of the surrounding image, blurred with
  decreasing radii (A1111 `masking.fill`).
- `make_overlay` / `paste_back`: the original is laid over the result wherever the mask is not fully white
  (A1111 `apply_overlay`), so unmasked pixels come back unchanged.
- `extend_canvas`: Inpaint's "Extend canvas": the picture grown on chosen sides (edge pixels repeated), the new
  area masked.
- `inpaint_sketch`: img2img's "Inpaint sketch": the mask is where the painted picture differs from the original,
  dimmed by "Mask transparency", and the init image the painted picture blended into the original through that
  mask (A1111 `img2img` mode 3).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageEnhance, ImageFilter, ImageOps

from modules.errors import InvalidRequest
from modules.types import ResizeMode

CropBox = tuple[int, int, int, int]  # x1, y1, x2, y2 (x2/y2 exclusive)
FILL_PASSES: tuple[tuple[int, int], ...] = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def binary_mask(mask: Image.Image) -> Image.Image:
    """Mode "L" mask; for RGBA with any transparency the alpha channel thresholded at 128 (A1111)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        return mask.getchannel("A").point(lambda value: 255 if value > 128 else 0)
    return mask.convert("L")


def _gaussian_kernel(radius: int) -> np.ndarray:
    size = 2 * int(2.5 * radius + 0.5) + 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(x * x) / (2.0 * radius * radius))
    return kernel / kernel.sum()


def _blur_axis(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    half = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (half, half)
    padded = np.pad(values, pad, mode="reflect")  # reflect = OpenCV BORDER_REFLECT_101
    out = np.zeros_like(values)
    length = values.shape[axis]
    for offset, weight in enumerate(kernel):
        window = padded[offset:offset + length, :] if axis == 0 else padded[:, offset:offset + length]
        out += weight * window
    return out


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    """A1111 mask blur of an "L" mask; radius 0 returns the mask unchanged."""
    if radius <= 0:
        return mask
    kernel = _gaussian_kernel(radius)
    values = np.asarray(mask, dtype=np.float64)
    values = _blur_axis(values, kernel, axis=1)
    values = np.floor(values + 0.5)  # A1111 blurs x and y as two 8-bit passes
    values = _blur_axis(values, kernel, axis=0)
    return Image.fromarray(np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8), mode="L")


def crop_region(mask: np.ndarray, pad: int) -> CropBox | None:
    """Bounding box of the non-zero pixels of a 2-D mask grown by `pad` (clipped), or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    h, w = mask.shape
    return (
        int(max(cols[0] - pad, 0)),
        int(max(rows[0] - pad, 0)),
        int(min(cols[-1] + 1 + pad, w)),
        int(min(rows[-1] + 1 + pad, h)),
    )


def _grow_span(lo: int, hi: int, grow: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) by `grow` split around it, then shift it back inside [0, limit)."""
    lo -= grow // 2
    hi += grow - grow // 2
    if hi >= limit:
        lo -= hi - limit
        hi = limit
    if lo < 0:
        hi -= lo
        lo = 0
    return lo, min(hi, limit)


def expand_crop_region(box: CropBox, width: int, height: int, image_width: int, image_height: int) -> CropBox:
    """Grow `box` to the aspect ratio width:height of the processing size, staying inside the image."""
    x1, y1, x2, y2 = box
    ratio_box = (x2 - x1) / (y2 - y1)
    ratio_target = width / height
    if ratio_box > ratio_target:
        grow = int((x2 - x1) / ratio_target - (y2 - y1))
        y1, y2 = _grow_span(y1, y2, grow, image_height)
    else:
        grow = int((y2 - y1) * ratio_target - (x2 - x1))
        x1, x2 = _grow_span(x1, x2, grow, image_width)
    return x1, y1, x2, y2


def _fit(image: Image.Image, width: int, height: int, cover: bool) -> tuple[Image.Image, int, int]:
    """Resize keeping the aspect ratio so the image covers (crop) or fits inside (fill) width x height."""
    ratio = width / height
    src_ratio = image.width / image.height
    wide = ratio > src_ratio if cover else ratio < src_ratio
    src_w = width if wide else image.width * height // image.height
    src_h = height if not wide else image.height * width // image.width
    return image.resize((src_w, src_h), resample=Image.Resampling.LANCZOS), src_w, src_h


def _stretch_edges(canvas: Image.Image, resized: Image.Image, width: int, height: int) -> None:
    """Fill the empty bands of "resize and fill" by stretching the outermost row/column of the resized image."""
    src_w, src_h = resized.size
    if src_w == width and src_h < height:
        band = height // 2 - src_h // 2
        if band > 0:
            canvas.paste(resized.resize((width, band), box=(0, 0, width, 0)), box=(0, 0))
            bottom = resized.resize((width, band), box=(0, src_h, width, src_h))
            canvas.paste(bottom, box=(0, band + src_h))
    elif src_h == height and src_w < width:
        band = width // 2 - src_w // 2
        if band > 0:
            canvas.paste(resized.resize((band, height), box=(0, 0, 0, height)), box=(0, 0))
            canvas.paste(resized.resize((band, height), box=(src_w, 0, src_w, height)), box=(band + src_w, 0))


def resize_image(mode: ResizeMode, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111 `images.resize_image` for the three img2img resize modes (the result keeps the image's mode)."""
    if mode is ResizeMode.JUST_RESIZE:
        return image.resize((width, height), resample=Image.Resampling.LANCZOS)
    resized, src_w, src_h = _fit(image, width, height, cover=mode is ResizeMode.CROP_AND_RESIZE)
    canvas = Image.new(image.mode, (width, height))
    canvas.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode is ResizeMode.RESIZE_AND_FILL:
        _stretch_edges(canvas, resized, width, height)
    return canvas


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111 "fill": the masked area gets the colours around it, spread by Gaussian blurs of shrinking radius.

    The unmasked part is cut out as a premultiplied-alpha image; each blur smears colour (and alpha) into the hole,
    and compositing the blurs from widest to sharpest keeps the original pixels where they are opaque.
    """
    keep = ImageOps.invert(mask.convert("L"))
    cutout = Image.new("RGBa", image.size)
    cutout.paste(image.convert("RGBA").convert("RGBa"), mask=keep)
    result = Image.new("RGBA", image.size)
    for radius, repeats in FILL_PASSES:
        blurred = cutout.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def flatten(image: Image.Image, background: str) -> Image.Image:
    """RGB image; transparent parts are composited over `background` (A1111 `images.flatten`)."""
    if image.mode in ("RGBA", "LA", "P"):
        try:
            colour = ImageColor.getrgb(background)
        except ValueError:
            raise InvalidRequest(f"img2img_background_color {background!r} is not a colour: use #rrggbb or a colour "
                                 "name") from None
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, colour)
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def make_overlay(image: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """The original as RGBA, opaque where the mask is black and transparent where it is white."""
    overlay = image.convert("RGBA")
    overlay.putalpha(ImageOps.invert(overlay_mask.convert("L")))
    return overlay


def paste_back(result: Image.Image, overlay: Image.Image, paste_to: CropBox | None) -> Image.Image:
    """Lay the overlay over a generated image; with `paste_to` (x, y, w, h) the image is first fitted there."""
    if paste_to is not None:
        x, y, w, h = paste_to
        base = Image.new("RGBA", overlay.size)
        base.paste(resize_image(ResizeMode.CROP_AND_RESIZE, result, w, h), (x, y))
        result = base
    composed = result.convert("RGBA")
    composed.alpha_composite(overlay)
    return composed.convert("RGB")


def inpaint_sketch(original: Image.Image, painted: Image.Image, mask_alpha: float,
                   mask_blur: int) -> tuple[Image.Image, Image.Image]:
    """(init image RGB, mask "L") of an inpaint sketch, computed as A1111 does: the mask is 255 where `painted`
    differs from `original` in any channel, its brightness scaled by ``1 - mask_alpha / 100`` ("Mask transparency",
    0-100); the init image is `painted` blurred by `mask_blur` (PIL Gaussian) composited over `original` through
    the mask blurred likewise, so pixels away from the strokes keep the original. Both pictures are flattened over
    white first; a painted picture of another size is resized to the original's."""
    base = flatten(original, "#ffffff")
    paint = flatten(painted, "#ffffff")
    if paint.size != base.size:
        paint = paint.resize(base.size, Image.Resampling.LANCZOS)
    changed = np.any(np.asarray(paint) != np.asarray(base), axis=-1)
    mask = Image.fromarray(changed.astype(np.uint8) * 255, mode="L")
    mask = ImageEnhance.Brightness(mask).enhance(1 - float(mask_alpha) / 100)
    blur = ImageFilter.GaussianBlur(mask_blur)
    return Image.composite(paint.filter(blur), base, mask.filter(blur)), mask


EXTEND_SIDES = ("left", "right", "up", "down")


def extend_canvas(image: Image.Image, mask: Image.Image | None, pixels: int, sides: tuple[str, ...] | list[str],
                  scale: tuple[float, float] = (1.0, 1.0)) -> tuple[Image.Image, Image.Image]:
    """Inpaint's "Extend canvas": (image, mask "L") grown by `pixels` on each of `sides` (left/right/up/down), in
    generation pixels; `scale` is image pixels per generation pixel (x, y), for an image of another size than the
    generation's. The new area repeats the edge pixels (so "original" masked content starts from the border
    colours) and is masked (255); the given mask (None: nothing) keeps its pixels."""
    unknown = sorted(set(sides) - set(EXTEND_SIDES))
    if unknown:
        raise InvalidRequest(f"Extend canvas: unknown side(s) {', '.join(unknown)}; "
                             f"choose from {', '.join(EXTEND_SIDES)}.")
    if pixels <= 0 or not sides:
        return image, mask if mask is not None else Image.new("L", image.size, 0)
    left, right = (round(pixels * scale[0]) if side in sides else 0 for side in ("left", "right"))
    top, bottom = (round(pixels * scale[1]) if side in sides else 0 for side in ("up", "down"))
    pixels_array = np.asarray(image.convert("RGB"))
    grown = np.pad(pixels_array, ((top, bottom), (left, right), (0, 0)), mode="edge")
    old = np.asarray(mask.convert("L").resize(image.size)) if mask is not None else np.zeros(pixels_array.shape[:2],
                                                                                              np.uint8)
    new_mask = np.pad(old, ((top, bottom), (left, right)), mode="constant", constant_values=255)
    return Image.fromarray(grown), Image.fromarray(new_mask.astype(np.uint8), mode="L")
