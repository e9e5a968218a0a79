"""The VAE's decode and encode as a job runs them: one image at a time, in tiles when that is needed, and in 32-bit
floats again when half precision produced NaNs.

- **Tiles** (diffusers' `tiled_decode`/`tiled_encode`: tiles of the VAE config's `sample_size`, blended over a
  quarter of a tile) when the `tiled_vae` option asks for it, when the estimated working memory of one image
  (`modules.core.memory`) exceeds what is free, or after an out-of-memory error in the whole-image pass (then retried
  in tiles, as Forge and ComfyUI do). Tiled pixels differ slightly from whole-image ones.
- **NaNs** (the SDXL VAE overflows in fp16): with A1111's `auto_vae_precision` ("Automatically revert VAE to 32-bit
  floats", on by default) a half-precision result with NaNs is thrown away, the model's VAE is converted to fp32 for
  good (as A1111 does) and the image is done again.
Each fallback adds a note to `VaePolicy.notes`, which the job reports to the user with its result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch

from modules.core.latents import decode_latents, encode_images
from modules.core.memory import VAE_DECODE_BYTES_PER_PIXEL, VAE_ENCODE_BYTES_PER_PIXEL, device_memory
from modules.devices import empty_cache, execution_device
from modules.models.components import ComponentSet

log = logging.getLogger(__name__)

TILE = 512
"""Largest VAE tile side in pixels (diffusers' default is the VAE config's `sample_size`)."""
NAN_NOTE = ("The VAE produced NaNs in half precision; it was converted to 32-bit floats and the image made again "
            "(setting: Automatically revert VAE to 32-bit floats).")
OOM_NOTE = "The VAE ran out of memory on the whole image; it was done in tiles."


@dataclass
class VaePolicy:
    """How a job's VAE passes run (`tiled`: always in tiles; `auto_precision`: the NaN fallback) and the notes of
    the fallbacks taken."""

    tiled: bool = False
    auto_precision: bool = True
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            log.warning(text)
            self.notes.append(text)


class _Tiling:
    """Turns diffusers' tiling on for the `with` block (its `decode`/`encode` then tile images above a tile), with
    tiles of at most `TILE` pixels (SDXL's config asks for 1024, which would not save memory at 1024x1024)."""

    def __init__(self, components: ComponentSet, on: bool) -> None:
        vae = components.vae
        self._vae, self._on, self._was = vae, on, bool(getattr(vae, "use_tiling", False))
        self._sizes = (getattr(vae, "tile_sample_min_size", TILE), getattr(vae, "tile_latent_min_size", TILE // 8))

    def __enter__(self) -> None:
        self._vae.use_tiling = self._on or self._was
        if self._on and isinstance(self._sizes[0], int) and self._sizes[0] > TILE:
            factor = max(1, self._sizes[0] // max(1, int(self._sizes[1])))
            self._vae.tile_sample_min_size, self._vae.tile_latent_min_size = TILE, TILE // factor

    def __exit__(self, *exc_info: object) -> None:
        self._vae.use_tiling = self._was
        self._vae.tile_sample_min_size, self._vae.tile_latent_min_size = self._sizes


def _too_large(components: ComponentSet, pixels: int, bytes_per_pixel: int) -> bool:
    """Whether one image's whole-image pass is estimated to exceed the memory free on the VAE's device."""
    scale = torch.finfo(components.vae_dtype).bits / 32
    needed = pixels * bytes_per_pixel * scale
    return needed > device_memory(execution_device(components.vae)).available


def _run(components: ComponentSet, policy: VaePolicy, pixels: int, bytes_per_pixel: int,
         run: Callable[[], torch.Tensor]) -> torch.Tensor:
    tiled = policy.tiled or _too_large(components, pixels, bytes_per_pixel)
    try:
        with _Tiling(components, tiled):
            return run()
    except torch.OutOfMemoryError:
        if tiled:
            raise
    # out of memory on the whole image: leave the except block (its traceback holds the tensors), then tile
    empty_cache(execution_device(components.vae))
    policy.note(OOM_NOTE)
    with _Tiling(components, True):
        return run()


def _with_fallbacks(components: ComponentSet, policy: VaePolicy, pixels: int, bytes_per_pixel: int,
                    run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`run` (which reads the VAE's dtype when called) in tiles where needed, and again in fp32 after NaNs."""
    result = _run(components, policy, pixels, bytes_per_pixel, run)
    if policy.auto_precision and components.vae_dtype != torch.float32 and torch.isnan(result).any():
        _to_fp32(components, policy)
        result = _run(components, policy, pixels, bytes_per_pixel, run)
    return result


def _to_fp32(components: ComponentSet, policy: VaePolicy) -> None:
    torch.nn.Module.to(components.vae, torch.float32)  # (diffusers' `to` warns about a plain dtype change)
    components.vae_dtype = torch.float32
    policy.note(NAN_NOTE)


def decode(components: ComponentSet, latents: torch.Tensor, policy: VaePolicy) -> torch.Tensor:
    """UNet latents -> (B, 3, H, W) float32 pixels in [0, 1] on the CPU (see the module doc)."""
    factor = 2 ** (len(components.vae.config.block_out_channels) - 1)
    pixels = latents.shape[-1] * latents.shape[-2] * factor * factor

    def run() -> torch.Tensor:
        return decode_latents(components.vae, latents, components.vae_dtype)

    return _with_fallbacks(components, policy, pixels, VAE_DECODE_BYTES_PER_PIXEL, run)


def encode(components: ComponentSet, pixels: torch.Tensor, policy: VaePolicy) -> torch.Tensor:
    """(B, 3, H, W) pixels in [-1, 1] -> float32 latents scaled for the UNet (see the module doc)."""
    count = pixels.shape[-1] * pixels.shape[-2]

    def run() -> torch.Tensor:
        return encode_images(components.vae, pixels, components.vae_dtype)

    return _with_fallbacks(components, policy, count, VAE_ENCODE_BYTES_PER_PIXEL, run)
