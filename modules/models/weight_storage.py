"""FP8 weight storage (A1111's "FP8 weight" option, `fp8_storage`): the UNet's Linear and Conv weights are kept in
8-bit floats (`float8_e4m3fn`) and cast to the model's compute dtype layer by layer as it runs (diffusers'
layerwise casting; its default skip list keeps norms and embeddings in the compute dtype). The UNet then needs about
half of fp16's memory (a quarter of fp32's); pictures change slightly. Applied when a checkpoint is loaded.
"""

from __future__ import annotations

import logging

import torch

from modules.models.components import ComponentSet
from modules.models.identity import ModelIdentity

log = logging.getLogger(__name__)

FP8_CHOICES: tuple[str, ...] = ("Disable", "Enable for SDXL", "Enable")
"""A1111's values of `fp8_storage`."""


def fp8_applies(mode: str, identity: ModelIdentity) -> bool:
    """Whether `fp8_storage` = `mode` stores this model's UNet in fp8."""
    return mode == "Enable" or (mode == "Enable for SDXL" and identity.is_sdxl)


def parameter_bytes(module: torch.nn.Module) -> int:
    return sum(parameter.numel() * parameter.element_size() for parameter in module.parameters())


def store_unet_in_fp8(components: ComponentSet) -> int:
    """Store the UNet's weights in fp8 (compute stays in `components.dtype`); returns the bytes saved."""
    before = parameter_bytes(components.unet)
    components.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=components.dtype)
    saved = before - parameter_bytes(components.unet)
    log.info("FP8 weight: UNet stored in float8_e4m3fn (%.0f MiB saved)", saved / 2**20)
    return saved
