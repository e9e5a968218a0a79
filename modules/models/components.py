"""The loaded pieces of one checkpoint, as the generation core consumes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTokenizer, PreTrainedModel

from modules.models.identity import ModelIdentity


@dataclass
class ComponentSet:
    """diffusers/transformers modules of one checkpoint.

    text_encoders/tokenizers are ordered as in diffusers pipelines:
      SD1/SD2: (CLIPTextModel,)
      SDXL: (CLIPTextModel, CLIPTextModelWithProjection)
      SDXL refiner: (CLIPTextModelWithProjection,)
    `scheduler_config` is the checkpoint's base scheduler config (prediction_type already applied); the sampler
    registry builds a fresh scheduler from it for every job.
    """

    identity: ModelIdentity
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: tuple[PreTrainedModel, ...]
    tokenizers: tuple[CLIPTokenizer, ...]
    scheduler_config: Mapping[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    vae_dtype: torch.dtype = torch.float32

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, *self.text_encoders]

    def to(self, device: torch.device) -> "ComponentSet":
        """Move every module to `device` in place (dtype unchanged) and return self."""
        for module in self.modules():
            module.to(device)
        self.device = torch.device(device)
        return self

    def nbytes(self) -> int:
        """Bytes held by parameters and buffers of all modules."""
        total = 0
        for module in self.modules():
            for tensor in list(module.parameters()) + list(module.buffers()):
                total += tensor.numel() * tensor.element_size()
        return total
