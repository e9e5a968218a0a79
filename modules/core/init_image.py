"""img2img/inpaint inputs: the processed init image, mask, overlay and the latent-space tensors made from them.

`prepare_init_image` follows AUTOMATIC1111's `StableDiffusionProcessingImg2Img.init` step by step (mask to binary,
invert, blur; whole picture or only masked with padding; masked content fill; the overlay used for the final
paste-back). The tensor helpers build the per-step inpaint blend mask and the 9-channel inpainting conditioning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image, ImageOps

from modules.core import masks
from modules.core.latents import encode_images
from modules.core.plan import CoreOptions
from modules.types import GenerationRequest, InpaintFill, ResizeMode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitImage:
    """The init image at processing size, and for inpaint the (blurred) mask and what the paste-back needs.

    `paste_to` is (x, y, w, h) of the region that was processed at full size ("only masked"); the overlay is the
    original at its own size (only masked) or at processing size (whole picture).
    """

    image: Image.Image
    mask: Image.Image | None = None
    overlay: Image.Image | None = None
    paste_to: tuple[int, int, int, int] | None = None


def _request_mask(request: GenerationRequest) -> Image.Image:
    assert request.mask is not None  # validated
    mask = masks.binary_mask(request.mask)
    if request.invert_mask:
        mask = ImageOps.invert(mask)
    return masks.blur_mask(mask, request.mask_blur)


def _only_masked_region(request: GenerationRequest, mask: Image.Image) -> masks.CropBox | None:
    if not request.inpaint_full_res:
        return None
    region = masks.crop_region(np.asarray(mask), request.inpaint_full_res_padding)
    if region is None:
        log.warning("inpaint 'only masked' needs a non-empty mask; processing the whole picture instead")
        return None
    return masks.expand_crop_region(region, request.width, request.height, mask.width, mask.height)


def prepare_init_image(request: GenerationRequest, options: CoreOptions) -> InitImage:
    """Processed init image (and mask/overlay for inpaint) for a validated img2img/inpaint request."""
    assert request.init_image is not None  # validated
    width, height = request.width, request.height
    image = masks.flatten(request.init_image, options.img2img_background_color)
    if request.mode != "inpaint":
        return InitImage(masks.resize_image(request.resize_mode, image, width, height))
    # 1. mask: binary, inverted, blurred (at the init image's size)
    mask = _request_mask(request)
    region = _only_masked_region(request, mask)
    # 2. processing-size mask; the overlay mask is the blurred mask (only masked) or twice it (whole picture)
    if region is not None:
        overlay_mask = mask
        mask = masks.resize_image(ResizeMode.RESIZE_AND_FILL, mask.crop(region), width, height)
        paste_to = (region[0], region[1], region[2] - region[0], region[3] - region[1])
    else:
        mask = masks.resize_image(request.resize_mode, mask, width, height)
        doubled = np.clip(np.asarray(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
        overlay_mask = Image.fromarray(doubled, mode="L")
        image = masks.resize_image(request.resize_mode, image, width, height)
        paste_to = None
    # 3. overlay of the original, then the processed image (crop of the region, masked content fill)
    overlay = masks.make_overlay(image, overlay_mask) if options.overlay_inpaint else None
    if region is not None:
        image = masks.resize_image(ResizeMode.RESIZE_AND_FILL, image.crop(region), width, height)
    if request.inpainting_fill is not InpaintFill.ORIGINAL:
        image = masks.fill_masked(image, mask)
    return InitImage(image, mask, overlay, paste_to)


def latent_repaint_mask(mask: Image.Image, latent_height: int, latent_width: int) -> torch.Tensor:
    """(1, 1, h, w) float32 mask at latent size, 1 = repaint: bicubic downscale then rounded (A1111 `latmask`)."""
    small = mask.convert("L").resize((latent_width, latent_height), resample=Image.Resampling.BICUBIC)
    values = np.around(np.asarray(small, dtype=np.float32) / 255.0)
    return torch.from_numpy(values)[None, None]


def inpaint_conditioning(
    vae: AutoencoderKL,
    pixels: torch.Tensor | None,
    mask: Image.Image | None,
    pixel_size: tuple[int, int],
    mask_weight: float,
    vae_dtype: torch.dtype,
) -> torch.Tensor:
    """(1, 5, h, w) extra UNet input of 9-channel inpainting models: the mask and the masked image's latents.

    `pixels` is the (1, 3, H, W) init image in [-1, 1]; `pixel_size` (H, W) is used when it is None.

    As A1111: txt2img (`pixels` None) conditions on a black image with a full mask; img2img without a mask on a
    full mask; the masked image is `lerp(image, image * (1 - mask), mask_weight)` with the mask rounded to 0/1
    at pixel size, and the mask is brought to latent size by nearest-neighbour interpolation (as diffusers).
    """
    if pixels is None:
        height, width = pixel_size
        masked = torch.full((1, 3, height, width), -1.0)
        pixel_mask = torch.ones(1, 1, height, width)
    else:
        if mask is None:
            pixel_mask = torch.ones(1, 1, *pixels.shape[-2:])
        else:
            values = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
            pixel_mask = torch.round(torch.from_numpy(values)[None, None])
        masked = torch.lerp(pixels, pixels * (1.0 - pixel_mask), mask_weight)
    masked_latents = encode_images(vae, masked, vae_dtype)
    latent_mask = torch.nn.functional.interpolate(pixel_mask, size=masked_latents.shape[-2:])
    return torch.cat([latent_mask, masked_latents], dim=1)
