"""Job admission: the working memory a job will need, estimated before it runs, against what the device has.

The estimate adds the parts of a job that grow with its size, for the pass that needs most (hires fix: the second
pass at the target size):
- the UNet's activations: per batch row (two rows per image with CFG) and latent pixel, plus a fixed workspace;
- the VAE decode (and encode, for img2img and image upscalers), one image at a time, at most one 512x512 tile's
  worth (the VAE falls back to tiles when the whole picture would not fit);
- the text conditioning (prompt and negative prompt embeddings of every image of a batch);
- the latents and the scheduler's copies of them;
- the finished pictures of the whole job, which stay in memory until it ends (and are encoded once more for the
  API or the gallery).
The per-pixel figures were measured on the real SD 1.x architecture in fp32 with `bench/memory_model.py` (peak
resident memory above the weights; docs/performance.md has the table) and are rounded up; they scale with the bytes
of the compute dtype. An estimate is a bound for refusing what cannot fit, not a promise that what passes fits.

Two checks use it: when a job is submitted, against the device's total memory (an impossible job is refused at
once, whatever else is running); when it starts, against the memory free at that moment (the models are loaded
then), so a job that would not fit fails with a message instead of an out-of-memory kill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import psutil
import torch

from modules.core.plan import hires_target
from modules.errors import JobTooLarge
from modules.models.identity import Family, ModelIdentity
from modules.types import GenerationRequest

MiB = 2**20
GiB = 2**30

UNET_BYTES_PER_PIXEL_ROW = 32 * 1024
"""UNet activation peak per latent pixel and batch row, fp32 (measured on SD 1.x above a ~150 MiB base: 8 KiB at
one row, 18 KiB at two rows of 64x64; SDXL's widest blocks run at half resolution, so the bound holds there)."""
UNET_WORKSPACE = 256 * MiB
"""Fixed working memory of a UNet call (thread buffers, kernel workspaces; measured ~150 MiB on the CPU)."""
VAE_DECODE_BYTES_PER_PIXEL = 8 * 1024
"""VAE decode peak per output pixel, fp32 (measured 3.9-4.1 KiB at 256 and 512 px)."""
VAE_ENCODE_BYTES_PER_PIXEL = 4 * 1024
"""VAE encode peak per input pixel, fp32 (measured 2.7 KiB at 256 px)."""
VAE_TILE_PIXELS = 512 * 512
"""The VAE's working set is bounded by one tile: a picture that does not fit whole is decoded in tiles of at most
512x512 (`modules.core.vae`); its float output (12 bytes per pixel) is counted on top."""
LATENT_COPIES = 12
"""Latent-sized tensors alive during a step: latents, noise, model outputs (x2 with CFG), denoised, the
multistep schedulers' history, previews."""
PICTURE_COPIES = 3
"""Each finished RGB picture: the image, its gallery/API copy, its encoded file."""
TOKENS_PER_CHUNK = 77
CHARS_PER_CHUNK = 300
"""About 75 CLIP tokens of English text: a prompt's chunk count is estimated from its length."""

SAFETY_MARGIN = 0.9
"""Share of the device memory a job may plan to use."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of working memory by part, and the total."""

    parts: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        largest = sorted(self.parts.items(), key=lambda item: -item[1])[:3]
        return f"{format_bytes(self.total)} ({', '.join(f'{name} {format_bytes(size)}' for name, size in largest)})"


def format_bytes(size: float) -> str:
    return f"{size / GiB:.1f} GiB" if size >= GiB else f"{size / MiB:.0f} MiB"


def _text_width(identity: ModelIdentity) -> int:
    """Width of one token of the UNet's text conditioning."""
    return {Family.SD1: 768, Family.SD2: 1024, Family.SDXL: 2048, Family.SDXL_REFINER: 1280}[identity.family]


def _largest_pass(request: GenerationRequest, factor: int) -> tuple[int, int]:
    """(width, height) of the pass that needs most: the hires target with hires fix, else the request's size."""
    if request.mode == "txt2img" and request.enable_hr:
        try:
            target = hires_target(request.width, request.height, request.hr_scale, request.hr_resize_x,
                                  request.hr_resize_y, factor)
        except (ValueError, ZeroDivisionError):
            return request.width, request.height
        return target.upscale_to
    return request.width, request.height


def estimate_job(request: GenerationRequest, identity: ModelIdentity, dtype: torch.dtype,
                 vae_dtype: torch.dtype | None = None, factor: int = 8) -> MemoryEstimate:
    """The working memory of `request` on a model of `identity` computing in `dtype` (see the module doc)."""
    scale = torch.finfo(dtype).bits / 32
    vae_scale = torch.finfo(vae_dtype or dtype).bits / 32
    width, height = _largest_pass(request, factor)
    latent_pixels = max(1, width // factor) * max(1, height // factor)
    batch = max(1, request.batch_size)
    rows = batch * (2 if request.cfg_scale != 1.0 else 1)
    chunks = 1 + max(len(request.prompt), len(request.negative_prompt)) // CHARS_PER_CHUNK
    pictures = batch * max(1, request.n_iter)
    vae_pixels = min(width * height, VAE_TILE_PIXELS)  # larger pictures go through the VAE in tiles when needed
    encode = request.mode != "txt2img" or (request.enable_hr and not request.hr_upscaler.lower().startswith("latent"))
    parts = {
        "UNet": int(rows * latent_pixels * UNET_BYTES_PER_PIXEL_ROW * scale) + UNET_WORKSPACE,
        "VAE decode": int(vae_pixels * VAE_DECODE_BYTES_PER_PIXEL * vae_scale) + width * height * 12,
        "VAE encode": int(vae_pixels * VAE_ENCODE_BYTES_PER_PIXEL * vae_scale) if encode else 0,
        "text conditioning": rows * chunks * TOKENS_PER_CHUNK * _text_width(identity) * 4 * 3,
        "latents": batch * 4 * latent_pixels * 4 * LATENT_COPIES,
        "finished pictures": pictures * width * height * 3 * PICTURE_COPIES,
    }
    return MemoryEstimate(parts)


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes a device has in all and free now (for CUDA: free on the device plus the allocator's unused cache)."""

    name: str
    total: int
    available: int


def device_memory(device: torch.device) -> DeviceMemory:
    """Memory of the device jobs run on: the GPU's for CUDA, system RAM otherwise (the CPU, and MPS's unified
    memory)."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return DeviceMemory(f"GPU {torch.cuda.get_device_name(device)}", int(total), int(free + cached))
    memory = psutil.virtual_memory()
    return DeviceMemory("system memory", int(memory.total), int(memory.available))


def _fitting_batch(request: GenerationRequest, fits: Callable[[GenerationRequest], bool]) -> int:
    """The largest batch size (at most the request's) whose estimate fits, 0 if none."""
    low, high = 0, request.batch_size
    while low < high:
        middle = (low + high + 1) // 2
        if fits(request.with_changes(batch_size=middle)):
            low = middle
        else:
            high = middle - 1
    return low


def check_fits(request: GenerationRequest, identity: ModelIdentity, dtype: torch.dtype, limit: int, where: str,
               vae_dtype: torch.dtype | None = None) -> MemoryEstimate:
    """Raise JobTooLarge when the estimate of `request` exceeds `limit` bytes (`where`: what the limit is, for the
    message), saying what would fit; returns the estimate otherwise."""
    estimate = estimate_job(request, identity, dtype, vae_dtype)
    if estimate.total <= limit:
        return estimate

    def fits(changed: GenerationRequest) -> bool:
        return estimate_job(changed, identity, dtype, vae_dtype).total <= limit

    batch = _fitting_batch(request, fits)
    if batch:
        hint = f"a batch size of {batch} fits"
    elif fits(request.with_changes(batch_size=1, n_iter=1)):
        hint = "make fewer pictures per job (batch count)"
    else:
        hint = "lower the image size (or the hires fix target)"
    raise JobTooLarge(
        f"This job would need about {estimate.describe()} of working memory, more than the {format_bytes(limit)} "
        f"{where}: {hint}.")


def admit(request: GenerationRequest, identity: ModelIdentity, device: torch.device, dtype: torch.dtype,
          vae_dtype: torch.dtype | None = None, *, now: bool) -> MemoryEstimate:
    """Admission on `device`: the job may plan for a share of the device's total memory (`now=False`, at
    submission) or of what is free (`now=True`, when it starts); JobTooLarge otherwise (see `check_fits`)."""
    memory = device_memory(device)
    limit = int((memory.available if now else memory.total) * SAFETY_MARGIN)
    where = f"free in {memory.name} now" if now else f"that the {memory.name} has in all"
    return check_fits(request, identity, dtype, limit, where, vae_dtype)

