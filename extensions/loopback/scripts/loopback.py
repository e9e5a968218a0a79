"""Loopback (A1111's built-in img2img script, rewritten on the extension API): img2img a picture, then img2img the
result again, `loops` times, moving the denoising strength from the request's towards a final one.

Controls, in A1111's positional `script_args` order: `loops` (4), `final_denoising_strength` (0.5),
`denoising_curve` ("Aggressive", "Linear" or "Lazy"), `append_interrogation` ("None" or "CLIP": a caption of each
loop's input picture is appended to the prompt; "CLIP" is a BLIP caption from the captioning model in models/BLIP,
as the interrogate button gives it. A1111's "DeepBooru" is refused: it is not available here).

As in A1111: the seed (and variation seed) are fixed once; each loop's picture is the next loop's init image and
its seed is the previous loop's + 1 (also across batch counts); every picture is made one at a time (batch size 1);
loop i of n uses the strength initial + (final - initial) * curve(i / (n - 1)), with curve(x) = x (Linear),
sin(x * pi / 2) (Aggressive: changes fast at first) or 1 - cos(x * pi / 2) (Lazy: changes slowly at first); after
the first loop an inpaint mask's masked content is "original". With batch count 1 every loop's picture is returned,
with batch count n > 1 the last picture of each of the n runs (each starting again from the init image and the
initial strength). When more than one picture is returned, a grid of them (one row) comes first when "Show grid in
gallery" is on, and is saved when grids are saved. Every infotext has "Final denoising strength" and "Denoising
curve"; unlike A1111 (which gives every picture the first loop's infotext), each picture's infotext is its own,
with the denoising strength and prompt it was made with.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from PIL import Image

from modules.extensions.api import (
    CombinedResult,
    ExtensionContext,
    GenerationRequest,
    GenerationResult,
    RunContext,
    UiBuilder,
    UserError,
    with_infotext_params,
)

TITLE = "Loopback"
CURVES = ("Aggressive", "Linear", "Lazy")
INTERROGATORS = ("None", "CLIP")

log = logging.getLogger("extensions.loopback")


def ui(builder: UiBuilder) -> dict[str, Any]:
    """A1111's controls in its positional order (only the interrogators that run here)."""
    import gradio as gr

    return {
        "loops": gr.Slider(1, 32, value=4, step=1, label="Loops", elem_id=builder.elem_id("loops")),
        "final_denoising_strength": gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Final denoising strength",
                                              elem_id=builder.elem_id("final_denoising_strength")),
        "denoising_curve": gr.Dropdown(list(CURVES), value="Linear", label="Denoising strength curve",
                                       elem_id=builder.elem_id("denoising_curve")),
        "append_interrogation": gr.Dropdown(list(INTERROGATORS), value="None",
                                            label="Append interrogated prompt at each iteration",
                                            elem_id=builder.elem_id("append_interrogation")),
    }


def denoising_strength(loop: int, loops: int, initial: float, final: float, curve: str = "Linear") -> float:
    """The denoising strength of loop `loop` (0-based) of `loops` (A1111's formulas, see the module doc)."""
    if loops <= 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        shape = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        shape = 1 - math.cos(progress * math.pi * 0.5)
    else:
        shape = progress
    return initial + (final - initial) * shape


def _choice(value: Any, default: str, allowed: tuple[str, ...], what: str) -> str:
    wanted = str(value if value is not None else default).strip()
    for name in allowed:
        if name.lower() == wanted.lower():
            return name
    if what == "interrogator" and wanted.lower() == "deepbooru":
        raise UserError(f"{TITLE}: DeepBooru is not available here; append an interrogated prompt with \"CLIP\" (a "
                        f"BLIP caption from the captioning model in models/BLIP) or choose \"None\".")
    raise UserError(f"{TITLE}: unknown {what} {value!r}; choose one of: {', '.join(allowed)}.")


def _settings(ctx: RunContext, request: GenerationRequest) -> tuple[int, float, str, str]:
    """(loops, final strength, curve, interrogator) after the checks that need no generation."""
    if request.mode == "txt2img" or request.init_image is None:
        raise UserError(f"{TITLE} works in img2img only: it feeds each result back as the next init image.")
    try:
        loops_value, final = float(ctx.args.get("loops", 4)), float(ctx.args.get("final_denoising_strength", 0.5))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{TITLE}: loops and final denoising strength must be numbers ({exc}).") from None
    if not loops_value.is_integer() or loops_value < 1:
        raise UserError(f"{TITLE}: loops must be a whole number of at least 1, got {ctx.args.get('loops')!r}.")
    if not 0.0 <= final <= 1.0:
        raise UserError(f"{TITLE}: the final denoising strength must be between 0 and 1, got {final}.")
    curve = _choice(ctx.args.get("denoising_curve"), "Linear", CURVES, "denoising strength curve")
    interrogator = _choice(ctx.args.get("append_interrogation"), "None", INTERROGATORS, "interrogator")
    return int(loops_value), final, curve, interrogator


def _caption(ctx: RunContext, image: Image.Image) -> str:
    try:
        return ctx.interrogate(image, "clip")
    except UserError as exc:
        raise UserError(f"{TITLE}: cannot append an interrogated prompt: {exc}") from None


def _random_seed() -> int:
    return random.randrange(4294967294)


def run(ctx: RunContext, request: GenerationRequest) -> GenerationResult:
    """`loops` img2imgs per batch count, each on the previous one's picture (see the module doc)."""
    loops, final, curve, interrogator = _settings(ctx, request)
    batch_count = max(1, request.n_iter)
    seed = _random_seed() if request.seed == -1 else request.seed
    subseed = _random_seed() if request.subseed == -1 else request.subseed
    params = {"Final denoising strength": final, "Denoising curve": curve}
    log.info("%s: %d loop(s) x %d batch(es), denoising strength %s -> %s (%s)", TITLE, loops, batch_count,
             request.denoising_strength, final, curve)
    kept: list[GenerationResult] = []
    texts: list[str] = []
    comments: dict[str, None] = {}
    interrupted = False
    for n in range(batch_count):
        init, fill, last = request.init_image, request.inpainting_fill, None
        for loop in range(loops):
            if ctx.interrupted():
                interrupted = True
                break
            assert init is not None  # checked by _settings, then always a finished picture
            prompt = request.prompt
            if interrogator == "CLIP":
                prompt = (f"{request.prompt}, " if request.prompt else "") + _caption(ctx, init)
            job = request.with_changes(
                init_image=init, inpainting_fill=fill, prompt=prompt, seed=seed, subseed=subseed, batch_size=1,
                n_iter=1, denoising_strength=denoising_strength(loop, loops, request.denoising_strength, final, curve))
            result = ctx.generate(job, part=(n * loops + loop, batch_count * loops))
            comments.update(dict.fromkeys(result.comments))
            if result.interrupted or ctx.interrupted():  # A1111 keeps no picture of an interrupted loop
                interrupted = True
                break
            seed = result.seeds[0] + 1 if result.seeds else seed + 1
            if not result.images:  # skipped: this run of loops ends
                break
            last = result
            init, fill = result.images[0], type(request.inpainting_fill)(1)  # masked content: original
            if batch_count == 1:
                kept.append(result)
                texts.append(with_infotext_params(result.infotexts[0], params))
        if batch_count > 1 and last is not None and not interrupted:
            kept.append(last)
            texts.append(with_infotext_params(last.infotexts[0], params))
        if interrupted:
            break
    return _assemble(ctx, request, kept, texts, comments, interrupted)


def _assemble(ctx: RunContext, request: GenerationRequest, kept: list[GenerationResult], texts: list[str],
              comments: dict[str, None], interrupted: bool) -> GenerationResult:
    """The kept pictures, after their one-row grid when there are several (see the module doc)."""
    combined = CombinedResult()
    for result, text in zip(kept, texts, strict=True):
        combined.add(result.images[0], result.seeds[0], result.subseeds[0], result.prompts[0],
                     result.negative_prompts[0], text)
    combined.add_comments(comments)
    if len(kept) > 1:
        pictures = [result.images[0] for result in kept]
        width, height = pictures[0].size
        grid = Image.new("RGB", (width * len(pictures), height))
        for index, picture in enumerate(pictures):
            grid.paste(picture.convert("RGB").resize((width, height)), (index * width, 0))
        ctx.save_grid(grid, texts[0])
        if bool(ctx.options.get("return_grid", True)):
            combined.put_first([grid])
    return combined.result(request, interrupted=interrupted)


def register(ext: ExtensionContext) -> None:
    ext.add_script(TITLE, ui=ui, run=run, modes=("img2img",))
