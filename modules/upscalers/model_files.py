"""Upscaler model files (ESRGAN, Real-ESRGAN, SwinIR, SCUNet, DAT, HAT, ...): identify, load and run with spandrel.

Files are read by the project's one tensor reader (`modules.models.state_dict`: safetensors, or pickles through
the weights-only unpickler), then spandrel detects the architecture from the keys and builds the network; no
architecture is written here. `probe_file` identifies a file without building it (cheap enough to run on every
listing); `load_model` builds it on a device; `run_model` upscales one PIL picture by the model's own scale, in
tiles (`modules.upscalers.tiling`). Face restoration and inpainting networks that spandrel also knows (GFPGAN,
RestoreFormer, CodeFormer, LaMa, MAT) are not upscalers and are reported as such.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import spandrel
import torch
from PIL import Image

from modules.errors import UnsupportedModel, UserError
from modules.models.state_dict import StateDict, is_safetensors, read_pickle, read_state_dict
from modules.upscalers.tiling import run_tiled

log = logging.getLogger(__name__)

NOT_UPSCALERS = {"GFPGAN": "a face restoration model", "RestoreFormer": "a face restoration model",
                 "CodeFormer": "a face restoration model", "LaMa": "an inpainting model", "MAT": "an inpainting model"}
"""spandrel architectures (by id) that are not image upscalers, and what they are."""


@dataclass(frozen=True)
class Probe:
    """What a file is: the spandrel architecture's name, or why it cannot be used (`error`, shown to the user)."""

    architecture: str | None = None
    error: str | None = None


def _tensors(path: Path) -> StateDict:
    """The file's state dict in spandrel's canonical form (known wrappers and prefixes removed), tensors only."""
    raw: Any = read_state_dict(path) if is_safetensors(path) else read_pickle(path)
    if not isinstance(raw, dict):
        raise UnsupportedModel(f"{path}: the file holds a {type(raw).__name__}, not a dictionary of tensors.")
    canonical = spandrel.canonicalize_state_dict(raw)
    return {key: value for key, value in canonical.items() if isinstance(value, torch.Tensor)}


def _detect(state_dict: StateDict) -> spandrel.ArchSupport | None:
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        try:
            if support.detect(state_dict):
                return support
        except Exception:  # a detector that trips over foreign keys has not detected its architecture
            continue
    return None


def probe_file(path: Path) -> Probe:
    """Identify `path` without building the network; never raises."""
    try:
        state_dict = _tensors(path)
    except UserError as error:
        return Probe(error=str(error))
    support = _detect(state_dict)
    if support is None:
        return Probe(error=f"{path.name}: unknown architecture (spandrel {spandrel.__version__} recognises none of "
                           f"its {len(state_dict)} tensors).")
    arch = support.architecture
    if arch.id in NOT_UPSCALERS:
        return Probe(arch.name, f"{path.name}: {NOT_UPSCALERS[arch.id]} ({arch.name}), not an upscaler.")
    return Probe(arch.name)


def load_model(path: Path, device: torch.device, dtype: torch.dtype) -> spandrel.ImageModelDescriptor:
    """The network in `path` on `device`, in eval mode; in `dtype` (float16/bfloat16) only off the CPU and where
    the architecture supports it, else float32. UnsupportedModel (the message names the file) if it is not an
    image upscaler or spandrel cannot build it."""
    probe = probe_file(path)
    if probe.error is not None:
        raise UnsupportedModel(probe.error)
    try:
        model = spandrel.MAIN_REGISTRY.load(_tensors(path))
    except Exception as error:  # shapes that match no variant of the detected architecture
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsupportedModel(f"{path.name}: spandrel could not build the {probe.architecture} network: {first}")
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose not in ("SR", "Restoration"):
        raise UnsupportedModel(f"{path.name}: a {model.purpose} model ({probe.architecture}), not an upscaler.")
    if model.input_channels not in (1, 3):
        raise UnsupportedModel(f"{path.name}: takes {model.input_channels}-channel pictures; only grey or RGB "
                               "models can upscale pictures.")
    model.eval()
    if device.type != "cpu" and dtype == torch.float16 and model.supports_half:
        model.half()
    elif device.type != "cpu" and dtype == torch.bfloat16 and model.supports_bfloat16:
        model.bfloat16()
    else:
        model.float()
    return model.to(device)


def _to_tensor(image: Image.Image, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype)


def _to_image(tensor: torch.Tensor) -> Image.Image:
    array = (tensor[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3])


def run_model(model: spandrel.ImageModelDescriptor, image: Image.Image, tile: int, overlap: int,
              should_stop: Any = lambda: False, on_progress: Any = None) -> Image.Image:
    """`image` enlarged by the model's scale (RGB; a grey model's output is grey). An alpha channel is enlarged
    with Lanczos and put back."""
    tensor = _to_tensor(image, model.input_channels, model.device, model.dtype)
    output = _to_image(run_tiled(model, tensor, tile, overlap, should_stop, on_progress))
    if output.mode == "L":
        output = output.convert("RGB")
    if "A" in image.getbands():
        alpha = image.getchannel("A").resize(output.size, resample=Image.Resampling.LANCZOS)
        output.putalpha(alpha)
    return output
