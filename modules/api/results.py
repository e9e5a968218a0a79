"""Finished jobs -> API JSON: A1111's `info` object, base64 images, the echoed request parameters.

`info_object` builds what A1111's `Processed.js()` returns (the API sends it as the JSON text `info`), plus
`interrupted`, `comments` and `timings` (seconds per stage of the core). Values the core resolved (sampler label,
schedule, model, VAE, version) are read back from the first image's infotext, which was written from the values
really used. Keys of A1111 features this program does not have (face restoration) are present with their "off"
value so clients find every key. A job's grid (`return_grid`, only with `save_images` as in A1111) is the first
image and has the first infotext; `index_of_first_image` says so and the `all_*` lists leave it out, as A1111's.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Sequence

from modules import infotext
from modules.api.codec import encode_png
from modules.api.schemas import GenerationFields, GenerationResponse, InitImageFields
from modules.jobs import Job
from modules.types import GenerationResult

# Infotext keys that `info_object` reports as top-level fields; the others form `extra_generation_params`.
_CORE_KEYS = frozenset({
    "Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Clip skip", "Version",
})


def job_timestamp(job: Job) -> str:
    """A1111's `job_timestamp`: local start time of the job as YYYYmmddHHMMSS."""
    started = job.started if job.started is not None else job.created
    return datetime.datetime.fromtimestamp(started).strftime("%Y%m%d%H%M%S")


def _first(values: tuple[Any, ...], fallback: Any) -> Any:
    return values[0] if values else fallback


def info_object(result: GenerationResult, timestamp: str, styles: Sequence[str] | None = None) -> dict[str, Any]:
    """A1111 `Processed.js()` as a dict (see the module doc). `styles`: the style names the client asked for (the
    result's request has them merged into the prompts already)."""
    request = result.request
    grids = result.grids
    parsed = infotext.parse(result.infotexts[0]) if result.infotexts else None
    params = parsed.written_params() if parsed is not None else {}
    resize_w, resize_h = request.seed_resize_from_w, request.seed_resize_from_h
    return {
        "prompt": _first(result.prompts, request.prompt),
        "all_prompts": list(result.prompts[grids:]),
        "negative_prompt": _first(result.negative_prompts, request.negative_prompt),
        "all_negative_prompts": list(result.negative_prompts[grids:]),
        "seed": _first(result.seeds, request.seed),
        "all_seeds": list(result.seeds[grids:]),
        "subseed": _first(result.subseeds, request.subseed),
        "all_subseeds": list(result.subseeds[grids:]),
        "subseed_strength": request.subseed_strength,
        "width": request.width,
        "height": request.height,
        "sampler_name": params.get("Sampler", request.sampler),
        "scheduler": params.get("Schedule type", request.schedule),
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": params.get("Model"),
        "sd_model_hash": params.get("Model hash"),
        "sd_vae_name": params.get("VAE"),
        "sd_vae_hash": params.get("VAE hash"),
        "seed_resize_from_w": resize_w if resize_w > 0 else -1,
        "seed_resize_from_h": resize_h if resize_h > 0 else -1,
        "denoising_strength": request.denoising_strength if request.mode != "txt2img" or request.enable_hr else None,
        "extra_generation_params": {key: text for key, text in params.items() if key not in _CORE_KEYS},
        "index_of_first_image": grids,
        "infotexts": list(result.infotexts),
        "styles": list(styles if styles is not None else request.styles),
        "job_timestamp": timestamp,
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": "Conditional mask weight" in params,
        "version": params.get("Version"),
        "interrupted": result.interrupted,
        "comments": "".join(f"{comment}\n" for comment in result.comments),
        "timings": {stage: round(seconds, 4) for stage, seconds in result.timings.items()},
    }


def encode_images(result: GenerationResult, embed_infotext: bool) -> list[str]:
    """Base64 PNG of every image, each with its own infotext embedded when `embed_infotext`."""
    texts: list[str | None] = list(result.infotexts) if embed_infotext else []
    texts += [None] * (len(result.images) - len(texts))
    return [encode_png(image, text) for image, text in zip(result.images, texts)]


def echo_parameters(body: GenerationFields) -> dict[str, Any]:
    """The request as A1111 echoes it in `parameters`: every field with its value or default; init images and
    the mask only when `include_init_images` is set (they are large)."""
    echoed = body.model_dump()
    if isinstance(body, InitImageFields) and not body.include_init_images:
        echoed["init_images"] = None
        echoed["mask"] = None
    return echoed


def generation_response(body: GenerationFields, result: GenerationResult, job: Job, *, send_images: bool,
                        embed_infotext: bool) -> GenerationResponse:
    """The txt2img / img2img response for a finished job."""
    images = encode_images(result, embed_infotext) if send_images else []
    info = info_object(result, job_timestamp(job), styles=body.styles or [])
    return GenerationResponse(images=images, parameters=echo_parameters(body), info=json.dumps(info))
