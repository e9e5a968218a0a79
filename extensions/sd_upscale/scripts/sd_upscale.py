"""SD upscale (A1111's img2img script, rewritten on the extension API): enlarge the init image with an upscaler,
cut it into overlapping tiles of the img2img width x height, img2img every tile with the request's prompt and
denoising strength, and blend the tiles back together.

Controls, in A1111's positional `script_args` order: `info` (a text; any value), `overlap` (Tile overlap, 64),
`upscaler_index` (Upscaler: a name, or an index into A1111's list of image upscalers: None, Lanczos, Nearest, then
the model files by name), `scale_factor` (2.0). The upscaler "None" leaves the picture at its size (A1111).

As in A1111: the seed (and variation seed) are fixed once; batch count n makes n pictures, the n-th starting at
seed + n; the tiles of one picture run in batches of the batch size, whose seeds `upscale.tiles.tile_seeds` gives;
each picture's infotext is its first tile's with "SD upscale overlap" and "SD upscale upscaler" added; tiles are not
saved, the finished pictures are (when samples are saved). Here every tile is its own generation (with its seed as
A1111's batch would give it), so progress counts tiles and an interrupt stops between tiles: the picture is then
put together from the tiles done, the others left as upscaled (and not saved). A skip ends the current tile only; a
tile skipped before it produced a picture stays as upscaled.
"""

from __future__ import annotations

import logging
import random
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
    with_infotext_params,
)

from ..upscale.tiles import TileGrid, combine, split, tile_seeds

TITLE = "SD upscale"
log = logging.getLogger("extensions.sd_upscale")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls, in its order (`info` is the first positional value)."""
    import gradio as gr

    names = builder.choices("upscalers") or ["None"]
    return {
        "info": gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the selected scale factor; use "
                        "width and height sliders to set tile size</p>"),
        "overlap": gr.Slider(0, 256, value=64, step=16, label="Tile overlap", elem_id=builder.elem_id("overlap")),
        "upscaler_index": gr.Radio(names, value=names[0], label="Upscaler", elem_id=builder.elem_id("upscaler_index")),
        "scale_factor": gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Scale Factor",
                                  elem_id=builder.elem_id("scale_factor")),
    }


def upscaler_name(ctx: RunContext, choice: Any) -> str:
    """The upscaler a control value names: an index into the image upscalers (A1111's `type="index"` radio, and what
    its API clients send) or a name (any case). Latent modes and unknown names are refused."""
    names = ctx.choices("upscalers")
    if isinstance(choice, float) and choice.is_integer():
        choice = int(choice)
    if isinstance(choice, int) and not isinstance(choice, bool):
        if not 0 <= choice < len(names):
            raise UserError(f"SD upscale: upscaler index {choice} is out of range; the upscalers are: "
                            f"{', '.join(f'{i}: {name}' for i, name in enumerate(names))}.")
        return names[choice]
    wanted = str(choice if choice is not None else "None").strip()
    for name in names:
        if name.lower() == wanted.lower():
            return name
    if wanted.lower() in (name.lower() for name in ctx.choices("hires_upscalers")):
        raise UserError(f"SD upscale cannot use {wanted!r}: latent upscale modes work in Hires. fix only; choose "
                        f"an image upscaler: {', '.join(names)}.")
    raise UserError(f"SD upscale: unknown upscaler {wanted!r}; choose one of: {', '.join(names)}.")


def _checked(ctx: RunContext, request: GenerationRequest) -> tuple[Image.Image, int, str, float]:
    """(init image, overlap, upscaler name, scale factor) after the checks that need no generation."""
    if request.init_image is None:
        raise UserError("SD upscale needs an init image: it upscales the img2img input picture.")
    if request.mask is not None:
        raise UserError("SD upscale works on the whole picture: use it in img2img, without an inpaint mask.")
    try:
        overlap, scale = int(ctx.args.get("overlap", 64)), float(ctx.args.get("scale_factor", 2.0))
    except (TypeError, ValueError) as exc:
        raise UserError(f"SD upscale: tile overlap and scale factor must be numbers ({exc}).") from exc
    if not 0 <= overlap < min(request.width, request.height):
        raise UserError(f"SD upscale: the tile overlap ({overlap}) must be at least 0 and less than the tile size "
                        f"({request.width}x{request.height}, the img2img width and height).")
    if not scale > 0:
        raise UserError(f"SD upscale: the scale factor must be above 0, got {scale}.")
    return request.init_image, overlap, upscaler_name(ctx, ctx.args.get("upscaler_index", 0)), scale


def _grid(picture: Image.Image, request: GenerationRequest, overlap: int) -> TileGrid:
    if picture.width < request.width or picture.height < request.height:
        raise UserError(f"SD upscale: the upscaled picture ({picture.width}x{picture.height}) is smaller than a "
                        f"tile ({request.width}x{request.height}); lower the img2img width/height or raise the "
                        f"scale factor.")
    return split(picture, request.width, request.height, overlap)


def _random_seed() -> int:
    return random.randrange(4294967294)


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """Upscale, then img2img every tile of every picture (batch count) and blend them (see the module doc)."""
    init, overlap, upscaler, scale = _checked(ctx, request)
    seed = _random_seed() if request.seed == -1 else request.seed
    subseed = _random_seed() if request.subseed == -1 else request.subseed
    flat = flatten_image(init, str(ctx.options.get("img2img_background_color", "#ffffff")))
    picture = flat if upscaler == "None" else ctx.upscale(flat, upscaler, scale)
    if picture is None:  # interrupted while the upscaler ran
        return GenerationResult((), (), (), (), (), (), request, interrupted=True)
    grid = _grid(picture, request, overlap)
    count = grid.count
    log.info("SD upscaling will process %d tiles (%dx%d) per picture, %d picture(s)", count, grid.columns,
             len(grid.rows), request.n_iter)
    params = {"SD upscale overlap": overlap, "SD upscale upscaler": upscaler}
    pictures: list[Image.Image] = []
    infotexts: list[str] = []
    seeds: list[int] = []
    first: GenerationResult | None = None
    comments: dict[str, None] = {}
    interrupted = False
    for n in range(max(1, request.n_iter)):
        start = seed + n
        seeds_of_tiles = tile_seeds(start, subseed, request.subseed_strength, count, request.batch_size)
        done, info, interrupted = _tiles(ctx, request, grid, seeds_of_tiles, n, comments)
        if info is None:
            break
        first = first or info
        combined = combine(grid.with_pictures(done))
        text = with_infotext_params(info.infotexts[0], params)
        pictures.append(combined)
        infotexts.append(text)
        seeds.append(start)
        if interrupted:
            break
        ctx.save_image(combined, text, start)
    if first is None:
        return GenerationResult((), (), (), (), (), (), request, interrupted=True)
    n_out = len(pictures)
    return GenerationResult(tuple(pictures), tuple(seeds), (subseed,) * n_out, (first.prompts[0],) * n_out,
                            (first.negative_prompts[0],) * n_out, tuple(infotexts), request,
                            interrupted=interrupted, comments=tuple(comments))


def _tiles(ctx: RunContext, request: GenerationRequest, grid: TileGrid, seeds: list[tuple[int, int]], n: int,
           comments: dict[str, None]) -> tuple[list[Image.Image], GenerationResult | None, bool]:
    """img2img of every tile of picture `n`: (the finished tiles in order, the first tile's result, interrupted);
    the tiles' comments are collected in `comments`."""
    done: list[Image.Image] = []
    first: GenerationResult | None = None
    total = grid.count * max(1, request.n_iter)
    for index, (tile, (seed, subseed)) in enumerate(zip(grid.pictures(), seeds)):
        if ctx.interrupted():
            return done, first, True
        tile_request = request.with_changes(init_image=tile, seed=seed, subseed=subseed, batch_size=1, n_iter=1)
        result = ctx.generate(tile_request, save=False, part=(n * grid.count + index, total))
        comments.update(dict.fromkeys(result.comments))
        if not result.images:  # skipped before its first step: the tile stays as upscaled
            if result.interrupted or ctx.interrupted():
                return done, first, True
            done.append(tile)
            continue
        first = first or result
        done.append(result.images[0])
        if result.interrupted:
            return done, first, True
    return done, first, False


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run, modes=("img2img",))
