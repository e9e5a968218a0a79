"""Poor man's outpainting (A1111's built-in img2img script, rewritten on the extension API): make the picture larger
on the chosen sides and inpaint the new area.

Controls, in A1111 1.10's positional `script_args` order: `pixels` (Pixels to expand, 8..256, 128), `mask_blur`
(0..64, 4), `inpainting_fill` (Masked content: "fill", "original", "latent noise" or "latent nothing", or its index
0..3 as A1111's API clients send it; "fill"), `direction` (any of "left", "right", "up", "down"; all four).

What it does: the init image (transparent parts flattened over the img2img background colour) is put on a black
canvas that is `pixels` larger on each chosen side, so the new width is width + pixels x (left + right) and the new
height height + pixels x (up + down). The mask is exactly the new area (white = repaint) before it is blurred by
`mask_blur`; the padded picture and that mask become one inpaint job ("whole picture", the chosen masked content,
the request's prompt, sampler, steps and denoising strength) at the padded size, which is the size of the result.

Sizes: multiples of 8, as `outpaint/canvas.py` pads (shared with Outpainting mk2).

Deliberate differences from A1111, which cuts the padded picture into tiles of the img2img width x height
(overlapping by `pixels`) and inpaints every tile that touches the new area, each with the next seed:
- here the whole padded picture is inpainted in one pass at its own size (one seed, the request's; the img2img
  width and height are not used). The picture is more coherent, but a large one needs more memory than a tile;
- A1111 rounds the canvas up to a multiple of 64 and splits the extra between the two sides; here to 8 (above);
- A1111's mask reaches 2 x mask_blur into the old picture and is blurred by 2 x mask_blur; here the mask is the new
  area exactly and is blurred by `mask_blur`, so the old picture is kept where the mask is 0;
- an inpaint mask of the request is refused (A1111 silently replaces it);
- as A1111, it makes one picture (batch size and batch count are set to 1); the picture is saved when samples
  are saved, with the infotext of its inpaint job.
"""

from __future__ import annotations

import logging
from typing import Any

from PIL import Image

from modules.extensions.api import (
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    UiBuilder,
    UserError,
    flatten_image,
)

from ..outpaint.canvas import BLUR_RANGE, PIXELS_RANGE, SIDES, check_request, directions_of, number, padded, padding

TITLE = "Poor man's outpainting"
FILLS = ("fill", "original", "latent noise", "latent nothing")

log = logging.getLogger("extensions.outpainting")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls, in its positional order."""
    import gradio as gr

    return {
        "pixels": gr.Slider(*PIXELS_RANGE, value=128, step=8, label="Pixels to expand",
                            elem_id=builder.elem_id("pixels")),
        "mask_blur": gr.Slider(*BLUR_RANGE, value=4, step=1, label="Mask blur", elem_id=builder.elem_id("mask_blur")),
        "inpainting_fill": gr.Radio(list(FILLS), value="fill", label="Masked content",
                                    elem_id=builder.elem_id("inpainting_fill")),
        "direction": gr.CheckboxGroup(list(SIDES), value=list(SIDES), label="Outpainting direction",
                                      elem_id=builder.elem_id("direction")),
    }


# -- controls ---------------------------------------------------------------------------------------------------


def fill_index(value: Any) -> int:
    """Masked content as A1111's index 0..3, from the index or the name."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(FILLS):
            return value
    else:
        wanted = str(value if value is not None else "fill").strip().lower()
        if wanted in FILLS:
            return FILLS.index(wanted)
    raise UserError(f"{TITLE}: unknown masked content {value!r}; choose one of: "
                    f"{', '.join(f'{i}: {name}' for i, name in enumerate(FILLS))}.")


def _settings(ctx: RunContext, request: GenerationRequest) -> tuple[Image.Image, int, int, int, tuple[str, ...]]:
    """(init image, pixels, mask blur, masked content index, directions) after the checks that need no model."""
    init = check_request(request, TITLE)
    pixels = int(number(ctx.args.get("pixels", 128), "pixels to expand", PIXELS_RANGE, TITLE))
    blur = int(number(ctx.args.get("mask_blur", 4), "mask blur", BLUR_RANGE, TITLE))
    fill = fill_index(ctx.args.get("inpainting_fill", "fill"))
    directions = directions_of(ctx.args.get("direction", list(SIDES)), TITLE)
    return init, pixels, blur, fill, directions


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """Pad the init image on the chosen sides and inpaint the new area in one pass (see the module doc)."""
    init, pixels, blur, fill, directions = _settings(ctx, request)
    picture = flatten_image(init, str(ctx.options.get("img2img_background_color", "#ffffff")))
    pad = padding(picture.size, pixels, directions)
    canvas, mask = padded(picture, pad)
    log.info("%s: %dx%d -> %dx%d (%s)", TITLE, picture.width, picture.height, canvas.width, canvas.height,
             ", ".join(f"{side} {pad[side]}" for side in SIDES if pad[side]))
    job = request.with_changes(
        mode="inpaint", init_image=canvas, mask=mask, mask_blur=blur,
        inpainting_fill=type(request.inpainting_fill)(fill), inpaint_full_res=False, invert_mask=False,
        width=canvas.width, height=canvas.height, batch_size=1, n_iter=1)
    result = ctx.generate(job)
    return GenerationResult(result.images, result.seeds, result.subseeds, result.prompts, result.negative_prompts,
                            result.infotexts, request.with_changes(batch_size=1, n_iter=1), timings=result.timings,
                            interrupted=result.interrupted, comments=result.comments)


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run, modes=("img2img",))
