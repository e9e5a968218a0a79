"""Outpainting mk2 (A1111's built-in img2img script, rewritten on the extension API): make the picture larger one
side at a time, each new strip started from noise matched to the picture and then inpainted.

Controls, in A1111 1.10's positional `script_args` order (named `mk2_...` where Poor man's outpainting, in the
same extension, has a control of that name): `info` (a text; any value), `mk2_pixels` (Pixels to expand,
8..256, 128), `mk2_mask_blur` (0..64, 8), `mk2_direction` (any of "left", "right", "up", "down"; all four), `noise_q`
(Fall-off exponent (lower=higher detail), 0..4, 1.0), `color_variation` (0..1, 0.05).

What it does, per picture: one pass per chosen side, in the order left, right, up, down. A pass puts the current
picture on a canvas `pixels` larger on that side; the new strip (the mask, exactly the new area) is filled with
matched noise (`outpaint/noise.py`: noise shaped by the FFT of the picture, `noise_q` its fall-off exponent,
`color_variation` its colour spread, seeded by seed + j for picture j and the pass number, so the same request
gives the same pictures), then the part of the canvas at that side, as wide (for left/right) or as high (for up/down) as
the img2img width / height (at least the strip, at most the canvas) and the canvas' full other side, is inpainted
with masked content "original" (the noise is its init) at the request's denoising strength, prompt, sampler and
steps, the mask blurred by `mask_blur`, and put back. The next pass starts from that picture. Sizes: `pixels` is
rounded up to a multiple of 8; a side of the init image that is not a multiple of 8 is made one in the first pass
(the missing pixels on the first chosen side of that axis, or at the right / bottom, as new area too), so the
result is width + pixels x (left + right) by height + pixels x (up + down), rounded up to multiples of 8.

Seeds: the seed (and variation seed) are fixed once (a random one for -1); picture j of batch count x batch size
uses seed + j (seed with a variation strength above 0) and subseed + j for every one of its passes, as A1111 does
within a batch (A1111 keeps `p.seed` for every pass too). A1111 repeats the same seeds for every batch count, and
draws a new random seed for every pass when the seed is -1; here each picture has its own seed, fixed for all its
passes. Every pass is made alone (batch size 1) and is not saved; the finished pictures are (when samples are
saved), each with its first pass's infotext (A1111's). With more than one picture a grid (round(sqrt(n)) rows, as
A1111's) comes first when "Show grid in gallery" is on, and is saved when grids are saved.

Deliberate differences from A1111: its mask reaches `mask_blur` pixels into the old picture (which gets noise
there) and is blurred by 4 x mask_blur, with a separate latent mask; here the mask is the new area exactly, blurred
by `mask_blur`, so the old picture is kept where the mask is 0. Its canvas is rounded to multiples of 64 (and cut
back after each pass); here to multiples of 8, which stay. Its matched noise uses a fixed seed 0 and scikit-image's
histogram matching; here the noise is seeded per picture and pass, matched with numpy. An inpaint mask of the
request is refused. An interrupt stops between passes and returns the finished pictures; a pass skipped before it
produced a picture leaves its strip as noise.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any, Iterable

import numpy as np
from PIL import Image

from modules.extensions.api import (
    CombinedResult,
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    UiBuilder,
    flatten_image,
)

from ..outpaint.canvas import (
    BLUR_RANGE,
    PIXELS_RANGE,
    SIDES,
    check_request,
    directions_of,
    number,
    padded,
    padding,
    round8,
)
from ..outpaint.noise import matched_noise

TITLE = "Outpainting mk2"
FALLOFF_RANGE = (0.0, 4.0)

log = logging.getLogger("extensions.outpainting")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls, in its positional order (`info` is the first positional value)."""
    import gradio as gr

    return {
        "info": gr.HTML("<p style=\"margin-bottom:0.75em\">Settings that work well: Sampling Steps 80-100, "
                        "Sampler Euler a, Denoising strength 0.8</p>"),
        "mk2_pixels": gr.Slider(*PIXELS_RANGE, value=128, step=8, label="Pixels to expand",
                            elem_id=builder.elem_id("mk2_pixels")),
        "mk2_mask_blur": gr.Slider(*BLUR_RANGE, value=8, step=1, label="Mask blur",
                                   elem_id=builder.elem_id("mk2_mask_blur")),
        "mk2_direction": gr.CheckboxGroup(list(SIDES), value=list(SIDES), label="Outpainting direction",
                                      elem_id=builder.elem_id("mk2_direction")),
        "noise_q": gr.Slider(*FALLOFF_RANGE, value=1.0, step=0.01, label="Fall-off exponent (lower=higher detail)",
                             elem_id=builder.elem_id("noise_q")),
        "color_variation": gr.Slider(0.0, 1.0, value=0.05, step=0.01, label="Color variation",
                                     elem_id=builder.elem_id("color_variation")),
    }


# -- geometry (no model) ----------------------------------------------------------------------------------------


def passes(size: tuple[int, int], pixels: int, directions: Iterable[str]) -> list[tuple[str, dict[str, int]]]:
    """(side, padding of the pass) of each pass: one per chosen side in A1111's order; the first pass also adds the
    pixels that make both axes multiples of 8 (so every pass's canvas is one). They add up to `padding`."""
    chosen = [side for side in SIDES if side in set(directions)]
    total = padding(size, pixels, chosen)
    step = round8(pixels)
    result = []
    for index, side in enumerate(chosen):
        pad = {name: 0 for name in SIDES}
        pad[side] = step
        if index == 0:
            for name in SIDES:
                pad[name] += total[name] - (step if name in chosen else 0)
        result.append((side, pad))
    return result


def region(canvas: tuple[int, int], side: str, pad: dict[str, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) a pass on `side` inpaints: at that side of the canvas, as wide (left/right) or high
    (up/down) as `size` (the img2img width, height), at least the pass's new strip and at most the canvas; the
    canvas' full extent along the other axis."""
    width, height = canvas
    if side in ("left", "right"):
        span = min(width, max(size[0], round8(pad[side])))
        return (0, 0, span, height) if side == "left" else (width - span, 0, width, height)
    span = min(height, max(size[1], round8(pad[side])))
    return (0, 0, width, span) if side == "up" else (0, height - span, width, height)


def noised(canvas: Image.Image, mask: Image.Image, seed: int, pass_no: int, falloff: float,
           color_variation: float) -> Image.Image:
    """The canvas with its new area (mask 255) filled with matched noise seeded by (seed, pass_no)."""
    pixels = np.asarray(canvas.convert("RGB"), dtype=np.float64) / 255.0
    weights = (np.asarray(mask, dtype=np.float64) > 127).astype(np.float64)
    filled = matched_noise(pixels, weights, [seed, pass_no], falloff, color_variation)
    return Image.fromarray(np.clip(np.round(filled * 255.0), 0, 255).astype(np.uint8), "RGB")


# -- controls ---------------------------------------------------------------------------------------------------


def _settings(ctx: RunContext, request: GenerationRequest) -> tuple[Image.Image, int, int, tuple[str, ...], float,
                                                                      float]:
    """(init image, pixels, mask blur, directions, fall-off exponent, colour variation) after the checks that need
    no model."""
    init = check_request(request, TITLE)
    pixels = int(number(ctx.args.get("mk2_pixels", 128), "pixels to expand", PIXELS_RANGE, TITLE))
    blur = int(number(ctx.args.get("mk2_mask_blur", 8), "mask blur", BLUR_RANGE, TITLE))
    directions = directions_of(ctx.args.get("mk2_direction", list(SIDES)), TITLE)
    falloff = number(ctx.args.get("noise_q", 1.0), "the fall-off exponent", FALLOFF_RANGE, TITLE, whole=False)
    variation = number(ctx.args.get("color_variation", 0.05), "the color variation", (0.0, 1.0), TITLE, whole=False)
    return init, pixels, blur, directions, falloff, variation


def _random_seed() -> int:
    return random.randrange(4294967294)


# -- running ----------------------------------------------------------------------------------------------------


class _Outpainter:
    """The passes of one job: `picture(...)` outpaints one picture, collecting the passes' comments."""

    def __init__(self, ctx: RunContext, request: GenerationRequest, pixels: int, blur: int,
                 directions: tuple[str, ...], falloff: float, variation: float) -> None:
        self.ctx, self.request = ctx, request
        self.pixels, self.blur, self.directions = pixels, blur, directions
        self.falloff, self.variation = falloff, variation
        self.comments: dict[str, None] = {}
        self.interrupted = False

    def picture(self, init: Image.Image, seed: int, subseed: int, noise_seed: int, part: int,
                total: int) -> tuple[Image.Image, GenerationResult] | None:
        """(the outpainted picture, its first pass's result) of picture `part` of `total`; None when interrupted
        (`self.interrupted`) or when every pass was skipped. The matched noise of pass k is seeded by
        (noise_seed, k)."""
        fill = type(self.request.inpainting_fill)(1)  # masked content: original (the matched noise)
        current, first = init, None
        steps = passes(init.size, self.pixels, self.directions)
        for pass_no, (side, pad) in enumerate(steps):
            if self.ctx.interrupted():
                self.interrupted = True
                return None
            canvas, mask = padded(current, pad)
            canvas = noised(canvas, mask, noise_seed, pass_no, self.falloff, self.variation)
            box = region(canvas.size, side, pad, (self.request.width, self.request.height))
            job = self.request.with_changes(
                mode="inpaint", init_image=canvas.crop(box), mask=mask.crop(box), mask_blur=self.blur,
                inpainting_fill=fill, inpaint_full_res=False, invert_mask=False, width=box[2] - box[0],
                height=box[3] - box[1], seed=seed, subseed=subseed, batch_size=1, n_iter=1)
            result = self.ctx.generate(job, save=False, part=(part * len(steps) + pass_no, total * len(steps)))
            self.comments.update(dict.fromkeys(result.comments))
            if result.interrupted or (not result.images and self.ctx.interrupted()):
                self.interrupted = True
                return None
            if result.images:  # a pass skipped before its first step keeps the noise
                canvas.paste(result.images[0].convert("RGB"), box[:2])
                first = first or result
            current = canvas
        if first is None:  # every pass skipped
            return None
        return current, first


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """Every picture (batch count x batch size), one pass per chosen side (see the module doc)."""
    init, pixels, blur, directions, falloff, variation = _settings(ctx, request)
    picture = flatten_image(init, str(ctx.options.get("img2img_background_color", "#ffffff")))
    seed = _random_seed() if request.seed == -1 else request.seed
    subseed = _random_seed() if request.subseed == -1 else request.subseed
    count = max(1, request.n_iter) * max(1, request.batch_size)
    log.info("%s: %d picture(s), passes %s, %d pixels each", TITLE, count, ", ".join(directions), pixels)
    outpainter = _Outpainter(ctx, request, pixels, blur, directions, falloff, variation)
    pictures: list[Image.Image] = []
    kept: list[tuple[int, int, GenerationResult]] = []
    for index in range(count):
        own_seed = seed + (index if request.subseed_strength == 0 else 0)
        done = outpainter.picture(picture, own_seed, subseed + index, seed + index, index, count)
        if done is None:
            if outpainter.interrupted:
                break
            continue
        pictures.append(done[0])
        kept.append((own_seed, subseed + index, done[1]))
        ctx.save_image(done[0], done[1].infotexts[0], own_seed)
    combined = CombinedResult()
    for (own, sub, result), done_picture in zip(kept, pictures, strict=True):
        combined.add(done_picture, own, sub, result.prompts[0], result.negative_prompts[0], result.infotexts[0])
    combined.add_comments(outpainter.comments)
    if len(pictures) > 1:
        grid = image_grid(pictures)
        ctx.save_grid(grid, kept[0][2].infotexts[0])
        if bool(ctx.options.get("return_grid", True)):
            combined.put_first([grid])
    return combined.result(request, interrupted=outpainter.interrupted)


def image_grid(pictures: list[Image.Image]) -> Image.Image:
    """Pictures of one size in round(sqrt(n)) rows, left to right, top to bottom (A1111's default grid)."""
    rows = min(len(pictures), max(1, round(math.sqrt(len(pictures)))))
    columns = math.ceil(len(pictures) / rows)
    width, height = pictures[0].size
    grid = Image.new("RGB", (columns * width, rows * height))
    for index, picture in enumerate(pictures):
        grid.paste(picture.convert("RGB"), (index % columns * width, index // columns * height))
    return grid


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run, modes=("img2img",))
