"""Per-image seeded noise (AUTOMATIC1111 semantics) and VAE encode/decode.

Noise: every image has its own `torch.Generator` seeded with its seed and draws its noise alone, with shape
(C, H/f, W/f), so an image does not depend on the batch it is in. The same generators then feed the per-step
noise of ancestral/SDE samplers (diffusers accepts a list of generators in `scheduler.step`), as A1111 keeps
drawing from each image's generator. Variation seeds blend two noises with A1111's `slerp`; "seed resize from"
pastes noise drawn at another size into the centre, as A1111's `ImageRNG.first` does. With the NV source the
streams are Philox generators (`modules.core.philox`), which only our own samplers take for per-step noise.

VAE: the scale factor comes from the VAE config (2 ** (len(block_out_channels) - 1)), latents are
`(mean - shift_factor) * scaling_factor`. Encoding uses the posterior mean (A1111 samples it with the global RNG,
whose spread for SD VAEs is far below one colour level; the mean keeps img2img deterministic and independent of
batch size). Decoding runs one image at a time, as A1111's `decode_latent_batch` does, to bound VAE memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from modules.core.philox import PhiloxGenerator
from modules.devices import execution_device


@dataclass(frozen=True)
class NoiseSpec:
    """How the noise of one batch is drawn (the shape is per image: channels, latent height, latent width)."""

    shape: tuple[int, int, int]
    subseed_strength: float = 0.0
    seed_resize_from: tuple[int, int] = (0, 0)  # (width, height) in pixels; 0 disables
    eta_noise_seed_delta: int = 0
    generator_device: str = "cpu"


PHILOX = "nv"
"""`generator_device` of A1111's "NV" source: Philox streams (`modules.core.philox`) on the CPU."""

NoiseGenerator = torch.Generator | PhiloxGenerator
"""An image's noise stream: a seeded torch generator (CPU, GPU sources) or a Philox stream (NV)."""


def noise_generator_device(source: str, device: torch.device) -> str:
    """Where the seeded noise is drawn for A1111's "Random number generator source": "GPU" draws with a generator on
    a CUDA device (`torch.randn` there, A1111's default); "CPU", and "GPU" on a machine without CUDA, on the CPU (A1111
    too draws on the CPU for MPS); "NV" with Philox streams that give CUDA's numbers on any device (`PHILOX`)."""
    if source == "NV":
        return PHILOX
    return str(device) if source == "GPU" and device.type == "cuda" else "cpu"


def noise_source_label(generator_device: str) -> str:
    """A1111's "RNG" value of where the noise was drawn: "NV", "GPU" (its default, not written) or "CPU"."""
    if generator_device == PHILOX:
        return "NV"
    return "CPU" if generator_device == "cpu" else "GPU"


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation exactly as A1111's `rng.slerp` computes it on a (C, H, W) noise tensor.

    Norms and dot products are taken along dim 1 (image rows), so every (channel, column) pair is interpolated on
    its own great circle. When the directions are nearly parallel (mean cosine > 0.9995) A1111 falls back to the
    linear mix `low * val + high * (1 - val)`: note the weights are the other way round from the spherical branch,
    which only matters for nearly identical noises, where both give (almost) the same tensor.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    low_weight = (torch.sin((1.0 - val) * omega) / so).unsqueeze(1)
    high_weight = (torch.sin(val * omega) / so).unsqueeze(1)
    return low_weight * low + high_weight * high


def _generator(seed: int, device: str) -> NoiseGenerator:
    if device == PHILOX:
        return PhiloxGenerator(seed)
    return torch.Generator(device).manual_seed(int(seed))


def draw(generator: NoiseGenerator, shape: tuple[int, ...]) -> torch.Tensor:
    """The next `shape` of standard normal float32 noise from an image's stream."""
    if isinstance(generator, PhiloxGenerator):
        return generator.randn(shape)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)


def _paste_resized_noise(
    generator: NoiseGenerator, seed_noise: torch.Tensor, shape: tuple[int, int, int]
) -> torch.Tensor:
    """Centre `seed_noise` (drawn at another size) into noise of `shape` drawn from the image's generator."""
    x = draw(generator, shape)
    dx = (shape[2] - seed_noise.shape[2]) // 2
    dy = (shape[1] - seed_noise.shape[1]) // 2
    w = seed_noise.shape[2] if dx >= 0 else seed_noise.shape[2] + 2 * dx
    h = seed_noise.shape[1] if dy >= 0 else seed_noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    x[:, ty:ty + h, tx:tx + w] = seed_noise[:, sy:sy + h, sx:sx + w]
    return x


def image_noise(seed: int, subseed: int, spec: NoiseSpec) -> tuple[torch.Tensor, NoiseGenerator]:
    """Initial noise of one image (float32, on the generator's device) and its generator for per-step noise."""
    generator = _generator(seed, spec.generator_device)
    resize_w, resize_h = spec.seed_resize_from
    resized = resize_w > 0 and resize_h > 0
    noise_shape = (spec.shape[0], resize_h // 8, resize_w // 8) if resized else spec.shape
    if noise_shape != spec.shape:
        noise = draw(_generator(seed, spec.generator_device), noise_shape)
    else:
        noise = draw(generator, spec.shape)
    if spec.subseed_strength != 0:
        subnoise = draw(_generator(subseed, spec.generator_device), noise_shape)
        noise = slerp(spec.subseed_strength, noise, subnoise)
    if noise_shape != spec.shape:
        noise = _paste_resized_noise(generator, noise, spec.shape)
    if spec.eta_noise_seed_delta:
        generator = _generator(seed + spec.eta_noise_seed_delta, spec.generator_device)
    return noise, generator


def batch_noise(
    seeds: tuple[int, ...], subseeds: tuple[int, ...], spec: NoiseSpec
) -> tuple[torch.Tensor, list[NoiseGenerator]]:
    """Noise of a batch, stacked to (B, C, h, w) float32, and one generator per image."""
    pairs = [image_noise(seed, subseed, spec) for seed, subseed in zip(seeds, subseeds, strict=True)]
    return torch.stack([noise for noise, _ in pairs]), [generator for _, generator in pairs]


def seed_noise(seeds: tuple[int, ...], shape: tuple[int, int, int], device: str = "cpu") -> torch.Tensor:
    """First noise draw of each seed without variation (A1111 `create_random_tensors` for "latent noise" fill)."""
    return torch.stack([draw(_generator(seed, device), shape) for seed in seeds])


def vae_scale_factor(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _shift_factor(vae: AutoencoderKL) -> float:
    shift = vae.config.get("shift_factor", None)
    return float(shift) if shift is not None else 0.0


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images to a (B, 3, H, W) float32 tensor in [-1, 1] (A1111: x / 255 * 2 - 1)."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * 2.0 - 1.0


def encode_images(vae: AutoencoderKL, pixels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 3, H, W) pixels in [-1, 1] -> float32 latents scaled for the UNet (posterior mean, one image at a time)."""
    device = execution_device(vae)
    latents = []
    for pixel in pixels:
        posterior = vae.encode(pixel[None].to(device=device, dtype=dtype)).latent_dist
        latents.append(posterior.mode().float())
    return (torch.cat(latents) - _shift_factor(vae)) * vae.config.scaling_factor


def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """UNet latents -> (B, 3, H, W) float32 pixels in [0, 1] on the CPU, one image at a time."""
    shift = _shift_factor(vae)
    images = []
    for latent in latents:
        scaled = latent[None] / vae.config.scaling_factor + shift
        decoded = vae.decode(scaled.to(device=execution_device(vae), dtype=dtype), return_dict=False)[0]
        images.append(decoded.float().cpu())
    return torch.clamp((torch.cat(images) + 1.0) / 2.0, min=0.0, max=1.0)


def tensor_to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) floats in [0, 1] -> RGB images; 255 * x truncated to uint8 as A1111 does."""
    arrays = (255.0 * pixels.permute(0, 2, 3, 1).numpy()).astype(np.uint8)
    return [Image.fromarray(array) for array in arrays]
