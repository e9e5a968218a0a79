"""Low-VRAM placement (A1111 --medvram / --lowvram) with accelerate's offload hooks.

The model manager is the only owner of device memory, so this is applied by it at load time: weights stay in CPU
RAM and accelerate hooks move them to the execution device when they run.
- "model" (--medvram): a whole component (text encoder, UNet, VAE) moves to the device for its forward pass and
  the previous one goes back to the CPU — the same chaining diffusers' `enable_model_cpu_offload` uses.
- "sequential" (--lowvram): submodules move one at a time (`accelerate.cpu_offload`): least memory, slowest.
`components.device` stays the execution device, so the core puts its tensors there as usual.
"""

from __future__ import annotations

import logging

import torch
from accelerate import cpu_offload, cpu_offload_with_hook

from modules.devices import OFFLOAD_MODEL, OFFLOAD_NONE, OFFLOAD_SEQUENTIAL
from modules.models.components import ComponentSet

log = logging.getLogger(__name__)


def apply_offload(components: ComponentSet, mode: str, execution_device: torch.device) -> ComponentSet:
    """Attach offload hooks to the components (loaded on the CPU) and return them, set to run on the device."""
    if mode == OFFLOAD_NONE:
        return components
    modules = [*components.text_encoders, components.unet, components.vae]
    if mode == OFFLOAD_MODEL:
        previous_hook = None
        for module in modules:
            _, previous_hook = cpu_offload_with_hook(module, execution_device, prev_module_hook=previous_hook)
    elif mode == OFFLOAD_SEQUENTIAL:
        for module in modules:
            cpu_offload(module, execution_device, offload_buffers=True)
    else:
        raise ValueError(f"unknown offload mode {mode!r}")
    components.device = torch.device(execution_device)
    log.info("Offload %s: weights stay in RAM, run on %s", mode, execution_device)
    return components
