"""Live preview: AUTOMATIC1111's "Approx cheap" latent-to-RGB projection (no VAE, no weights to download); its
"Full" method (a VAE decode of the estimate) is made by the batch loop (`modules.core.batch`).

Each RGB channel is a fixed linear combination of the four latent channels; the result is treated as an image in
[-1, 1] at latent resolution (1/8 of the output size). The factors are the published SD1/SD2 and SDXL ones that
A1111's `sd_vae_approx.cheap_approximation` uses.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

PREVIEW_FULL = "Full"
PREVIEW_CHEAP = "Approx cheap"
PREVIEW_METHODS: tuple[str, ...] = (PREVIEW_FULL, PREVIEW_CHEAP)
"""Values of `show_progress_type` (A1111's Approx NN and TAESD need downloaded weights and are not offered)."""

SD_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
SDXL_FACTORS = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)


def cheap_preview(latent: torch.Tensor, is_sdxl: bool) -> Image.Image:
    """RGB preview of one (4, h, w) latent (the current estimate of the clean latent works best)."""
    factors = torch.tensor(SDXL_FACTORS if is_sdxl else SD_FACTORS, dtype=torch.float32)
    rgb = torch.einsum("lhw,lr->rhw", latent.detach().float().cpu(), factors)
    rgb = torch.clamp((rgb + 1.0) / 2.0, 0.0, 1.0)
    return Image.fromarray((255.0 * rgb.permute(1, 2, 0).numpy()).astype(np.uint8))
