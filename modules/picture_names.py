"""The name fields of a job's saved pictures (`modules.filenames.NameFields`, for A1111's file and folder name
patterns).

What made a picture is read from its own infotext (prompt, model, sampler, steps, CFG, VAE, denoising), so a
picture saved by a script (X/Y/Z plot, Loopback, SD upscale) or a grid is named by what made *it*; the job's
request adds what an infotext does not say: the batch (for `[batch_number]`, `[generation_number]`), the styles
picked and when the job started (`[job_timestamp]`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import PurePath
from typing import Sequence, TypeVar

from PIL import Image

from modules import infotext
from modules.filenames import NameFields
from modules.types import GenerationRequest

T = TypeVar("T")


@dataclass(frozen=True)
class JobNames:
    """What all pictures of one job share in their names; `fields` adds one picture's own."""

    request: GenerationRequest
    styles: tuple[str, ...] = ()
    style_prompts: tuple[str, ...] = ()
    """The prompt texts of `styles` (for `[prompt_no_styles]`)."""
    started: datetime.datetime | None = None
    max_prompt_words: int = 8

    def fields(self, image: Image.Image | None, text: str | None, seed: int | None, index: int = 0,
               all_seeds: Sequence[int] = ()) -> NameFields:
        """The fields of the job's `index`-th picture (in batch order), made as its infotext `text` says."""
        request = self.request
        parsed = infotext.parse(text) if text else None
        params = parsed.params if parsed is not None else {}
        batch = max(1, request.batch_size)
        vae = params.get("VAE", "")
        return NameFields(
            seed=seed,
            prompt=parsed.prompt if parsed is not None else request.prompt,
            negative_prompt=parsed.negative_prompt if parsed is not None else request.negative_prompt,
            styles=self.styles,
            style_prompts=self.style_prompts,
            steps=_or(infotext.to_int(params.get("Steps")), request.steps),
            cfg_scale=_or(infotext.to_float(params.get("CFG scale")), request.cfg_scale),
            sampler=params.get("Sampler", request.sampler),
            scheduler=params.get("Schedule type", request.schedule),
            model_name=params.get("Model", ""),
            model_hash=params.get("Model hash", ""),
            vae_name=PurePath(vae).stem if vae else "",
            clip_skip=_or(infotext.to_int(params.get("Clip skip")), request.clip_skip),
            denoising_strength=infotext.to_float(params.get("Denoising strength")),
            batch_size=batch,
            batch_index=index % batch,
            n_iter=max(1, request.n_iter),
            iteration=index // batch,
            all_seeds=tuple(all_seeds),
            job_timestamp=self.started.strftime("%Y%m%d%H%M%S") if self.started is not None else "",
            image=image,
            max_prompt_words=self.max_prompt_words,
        )


def _or(value: T | None, default: T) -> T:
    """`value`, or `default` where the infotext says nothing usable."""
    return default if value is None else value
