"""txt2img's "Upscale" action (A1111's ✨ button under the gallery): hires fix on the selected finished picture.

The picture stands in for the first pass (`GenerationRequest.firstpass_image`), so only the upscale and the second
pass run, with the tab's current Hires. fix settings (on, even when the checkbox is off), the picture's own seed and
variation seed and its size as the first pass's. The upscaled picture replaces the selected one in the gallery; the
other pictures and their infotexts stay.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator

import gradio as gr
from PIL import Image

from modules.errors import UserError
from modules.types import GenerationRequest, GenerationResult
from modules.ui.progress import job_group, job_owner, stream_generation
from modules.ui.results import selected_index

if TYPE_CHECKING:
    from modules.ui.common import UiContext
    from modules.ui.generation import GenerationTab

def upscale_request(base: GenerationRequest, picture: Image.Image, seed: int, subseed: int) -> GenerationRequest:
    """The request that upscales `picture` (made with `seed`/`subseed`) with the hires settings of `base`."""
    overrides = {**base.overrides, "save_images_before_highres_fix": False}
    return base.with_changes(enable_hr=True, batch_size=1, n_iter=1, seed=seed, subseed=subseed,
                             width=picture.width, height=picture.height, firstpass_image=picture,
                             overrides=overrides)


def merged_result(previous: GenerationResult, index: int, upscaled: GenerationResult) -> GenerationResult:
    """`previous` with picture `index` replaced by the upscaled one (kept as it was when none was made)."""
    if not upscaled.images:
        return dataclasses.replace(previous, interrupted=upscaled.interrupted, comments=upscaled.comments)

    def put(values: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        return values[:index] + new[:1] + values[index + 1:] if index < len(values) else values

    return dataclasses.replace(
        previous, images=put(previous.images, upscaled.images), seeds=put(previous.seeds, upscaled.seeds),
        subseeds=put(previous.subseeds, upscaled.subseeds), prompts=put(previous.prompts, upscaled.prompts),
        negative_prompts=put(previous.negative_prompts, upscaled.negative_prompts),
        infotexts=put(previous.infotexts, upscaled.infotexts), timings=upscaled.timings,
        interrupted=upscaled.interrupted, comments=upscaled.comments)


def wire_upscale_action(ctx: "UiContext", tab: "GenerationTab", button: gr.Button) -> None:
    """Run the action from `button` with the tab's inputs, streaming progress like Generate."""
    app, panel = ctx.app, tab.panel

    def upscale(data: dict, request: gr.Request) -> Iterator[dict]:
        previous: GenerationResult | None = data[panel.result]
        index = selected_index(previous, data[panel.selected])
        if previous is None or index is None:
            raise gr.Error("Generate a picture first: Upscale runs hires fix on the selected picture.",
                           print_exception=False)
        if index < previous.grids:  # the batch's grid: the first picture unless the user picked the grid
            if data[panel.selected] is not None:
                raise gr.Error("That is the grid of the pictures: select one of the pictures to upscale.",
                               print_exception=False)
            index = previous.grids
        try:
            generation_request = upscale_request(tab.build_request(data), previous.images[index],
                                                 previous.seeds[index], previous.subseeds[index])
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from error
        yield from stream_generation(app, panel, tab.buttons, generation_request, job_owner(request),
                                     group=job_group(request),
                                     combine=lambda result: merged_result(previous, index, result), selected=index)

    inputs = {*tab.request_inputs(), panel.result, panel.selected}
    button.click(upscale, inputs=inputs, outputs=tab.outputs(), show_progress="hidden", concurrency_limit=None)
