"""Typed request and result objects that flow between the UI/API adapters and the generation core.

This module imports no torch: adapters (Gradio, FastAPI) build a `GenerationRequest`, the core returns a
`GenerationResult`. Field names and defaults follow AUTOMATIC1111's `StableDiffusionProcessing` so that the
`/sdapi/v1` adapter and the infotext parser map onto them one to one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

from PIL import Image

Mode = Literal["txt2img", "img2img", "inpaint"]


class ResizeMode(enum.IntEnum):
    """How an init image is fitted to the requested size (A1111 `resize_mode` numbers)."""

    JUST_RESIZE = 0
    CROP_AND_RESIZE = 1
    RESIZE_AND_FILL = 2


class InpaintFill(enum.IntEnum):
    """What the masked area starts from (A1111 `inpainting_fill` numbers)."""

    FILL = 0
    ORIGINAL = 1
    LATENT_NOISE = 2
    LATENT_NOTHING = 3


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation job needs; validated once by `validate()` in the core.

    `seed`/`subseed` of -1 mean "pick a random one" (resolved when the job is planned).
    `checkpoint` is an A1111 checkpoint title/name/hash or None for the current one.
    With `enable_hr` (txt2img only), `denoising_strength` is the second pass's; `hr_resize_x/y` of 0 mean "from
    `hr_scale`", `hr_second_pass_steps` 0 means the first pass's steps.
    `extension_args` is keyed by extension name; `overrides` holds A1111 `override_settings` for this job only.
    """

    mode: Mode = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "DPM++ 2M"
    schedule: str = "Automatic"
    eta: float | None = None
    width: int = 512
    height: int = 512
    batch_size: int = 1
    n_iter: int = 1
    checkpoint: str | None = None
    vae: str | None = None
    clip_skip: int = 1
    # img2img / inpaint
    init_image: Image.Image | None = None
    denoising_strength: float = 0.75
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE
    # inpaint (mask: white = repaint)
    mask: Image.Image | None = None
    mask_blur: int = 4
    inpainting_fill: InpaintFill = InpaintFill.ORIGINAL
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = 32
    invert_mask: bool = False
    # txt2img hires fix (A1111 names; empty sampler/schedule/prompts = the first pass's)
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0
    hr_sampler_name: str = ""
    hr_scheduler: str = ""
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_checkpoint_name: str = ""
    """The second pass's checkpoint (a title or name the catalog matches); empty = the first pass's."""
    firstpass_image: Image.Image | None = None
    """A1111's `firstpass_image`: a finished picture that stands in for the first pass (the "Upscale" action); the
    job then runs only the upscale and the second pass."""
    # SDXL
    refiner_checkpoint: str | None = None
    refiner_switch_at: float = 0.8
    styles: tuple[str, ...] = ()
    extension_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def with_changes(self, **changes: Any) -> "GenerationRequest":
        """Return a copy with some fields replaced (requests are immutable)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class GenerationResult:
    """What a finished (or interrupted) job produced: one entry per image in each tuple."""

    images: tuple[Image.Image, ...]
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    infotexts: tuple[str, ...]
    request: GenerationRequest
    timings: Mapping[str, float] = field(default_factory=dict)
    interrupted: bool = False
    comments: tuple[str, ...] = ()  # notes for the user about the job (A1111's `Processed.comments`)
    grids: int = 0
    """How many of the first pictures are grids of the others (A1111's `index_of_first_image`): a plain job's grid
    of its pictures (`return_grid`), labelled as its first picture. Scripts' results put their grids in front as
    labelled pictures of their own and leave this 0."""


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report from the denoise loop: image `job_no` of `job_count`, `step` of `total_steps`."""

    step: int
    total_steps: int
    job_no: int = 0
    job_count: int = 1
    preview: Image.Image | None = None
    textinfo: str = ""
