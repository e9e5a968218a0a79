"""Test helpers for the core: cached tiny models, sample images/masks, and diffusers reference pipelines built
from the same components (schedulers come from the sampler registry, so the oracle uses the same config)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import SchedulerMixin
from PIL import Image

from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.tiny import build_tiny_components

SD1 = ModelIdentity(Family.SD1)
SD1_INPAINT = ModelIdentity(Family.SD1, Variant.INPAINT)
SD2_V = ModelIdentity(Family.SD2, prediction=Prediction.V)
SDXL = ModelIdentity(Family.SDXL)
SDXL_REFINER = ModelIdentity(Family.SDXL_REFINER)


def write_tiny_checkpoint(data_dir: Path, name: str = "tiny.safetensors") -> Path:
    """A tiny SD 1.x single-file checkpoint in `<data_dir>/models/Stable-diffusion/` (for a real application)."""
    from modules.models.convert import save_single_file

    folder = data_dir / "models" / "Stable-diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    save_single_file(build_tiny_components(SD1, seed=0), folder / name)
    return folder / name


@lru_cache(maxsize=None)
def tiny(identity: ModelIdentity) -> ComponentSet:
    """Tiny components, built once per test session (they are never mutated)."""
    return build_tiny_components(identity, seed=0)


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def sample_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A smooth deterministic RGB picture (gradients plus a few blobs)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [np.sin(x / (5 + 3 * c) + rng.uniform(0, 6)) + np.cos(y / (7 + 2 * c)) for c in range(3)]
    array = (np.stack(channels, -1) * 60 + 128).clip(0, 255).astype(np.uint8)
    return Image.fromarray(array)


def block_mask(width: int = 64, height: int = 64, box: tuple[int, int, int, int] = (16, 16, 48, 40)) -> Image.Image:
    """Mode "L" mask, white (repaint) inside `box` (x1, y1, x2, y2)."""
    array = np.zeros((height, width), dtype=np.uint8)
    x1, y1, x2, y2 = box
    array[y1:y2, x1:x2] = 255
    return Image.fromarray(array, mode="L")


def reference_scheduler(sampler: Any, components: ComponentSet) -> SchedulerMixin:
    """A fresh scheduler of the same class and config as `sampler.build` makes, for a diffusers pipeline."""
    return sampler.scheduler_cls.from_config(sampler.scheduler_config(components.scheduler_config))


def sd_pipeline(components: ComponentSet, scheduler: SchedulerMixin, cls: Any = None) -> Any:
    """diffusers SD1/SD2 pipeline (txt2img by default) sharing `components`' modules."""
    from diffusers import StableDiffusionPipeline

    pipeline = (cls or StableDiffusionPipeline)(
        vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
        unet=components.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sdxl_pipeline(components: ComponentSet, scheduler: SchedulerMixin, cls: Any = None, **extra: Any) -> Any:
    """diffusers SDXL pipeline (txt2img by default) sharing `components`' modules; the refiner has one encoder."""
    from diffusers import StableDiffusionXLPipeline

    encoders, tokenizers = components.text_encoders, components.tokenizers
    refiner = components.identity.family is Family.SDXL_REFINER
    pipeline = (cls or StableDiffusionXLPipeline)(
        vae=components.vae,
        text_encoder=None if refiner else encoders[0],
        text_encoder_2=encoders[-1],
        tokenizer=None if refiner else tokenizers[0],
        tokenizer_2=tokenizers[-1],
        unet=components.unet,
        scheduler=scheduler,
        add_watermarker=False,
        **extra,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class LatentCapture:
    """Records the latents the core hands to the VAE (monkeypatches `modules.core.vae.decode_latents`)."""

    def __init__(self, monkeypatch: Any) -> None:
        import modules.core.vae as vae

        self.latents: list[torch.Tensor] = []
        original = vae.decode_latents

        def capture(vae: Any, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            self.latents.append(latents.clone())
            return original(vae, latents, dtype)

        monkeypatch.setattr(vae, "decode_latents", capture)

    @property
    def last(self) -> torch.Tensor:
        return self.latents[-1]
