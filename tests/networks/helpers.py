"""Tiny LoRA files in kohya and PEFT layouts, built from the module names of tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.models.components import ComponentSet
from modules.models.convert import unet_to_original
from modules.models.identity import Family
from modules.models.keys import UNET_PREFIX


def flat(path: str) -> str:
    return path.replace(".", "_")


def kohya_unet_name(components: ComponentSet, path: str) -> str:
    """kohya naming: diffusers paths for SD1/SD2, original LDM paths for SDXL."""
    if not components.identity.is_sdxl:
        return f"lora_unet_{flat(path)}"
    original = next(iter(unet_to_original({f"{path}.weight": torch.empty(0)}, dict(components.unet.config))))
    return f"lora_unet_{flat(original[len(UNET_PREFIX):-len('.weight')])}"


def kohya_te_name(components: ComponentSet, index: int, path: str) -> str:
    prefix = "lora_te_" if components.identity.family in (Family.SD1, Family.SD2) else f"lora_te{index + 1}_"
    return f"{prefix}text_model_{flat(path.removeprefix('text_model.'))}"


def low_rank_pair(weight_shape: torch.Size, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up): linear [r, in] / [out, r]; conv (LoCon) [r, in, k, k] / [out, r, 1, 1]."""
    out_features, in_features = weight_shape[0], weight_shape[1]
    kernel = tuple(weight_shape[2:])
    down = torch.randn((rank, in_features, *kernel), generator=generator) * 0.2
    up = torch.randn((out_features, rank, *([1] * len(kernel))), generator=generator) * 0.2
    return down, up


def kohya_state(
    components: ComponentSet, unet_paths: list[str], te_paths: list[tuple[int, str]], rank: int = 2, alpha: float = 1.0
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1234)
    state: dict[str, torch.Tensor] = {}
    modules = dict(components.unet.named_modules())
    rows = [(kohya_unet_name(components, p), modules[p].weight.shape) for p in unet_paths]
    for index, path in te_paths:
        te_modules = dict(components.text_encoders[index].named_modules())
        rows.append((kohya_te_name(components, index, path), te_modules[path].weight.shape))
    for name, shape in rows:
        down, up = low_rank_pair(shape, rank, generator)
        state[f"{name}.lora_down.weight"] = down
        state[f"{name}.lora_up.weight"] = up
        state[f"{name}.alpha"] = torch.tensor(alpha)
    return state


def write_lora(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, object] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(state, str(path), metadata=text or None)
    return path


def kohya_to_peft(components: ComponentSet, state: dict[str, torch.Tensor], unet_paths: list[str],
                  te_paths: list[tuple[int, str]]) -> dict[str, torch.Tensor]:
    """The same LoRA in diffusers/PEFT naming (lora_A = down, lora_B = up)."""
    peft: dict[str, torch.Tensor] = {}
    names = [(kohya_unet_name(components, p), f"unet.{p}") for p in unet_paths]
    te_prefix = ("text_encoder", "text_encoder_2")
    names += [(kohya_te_name(components, i, p), f"{te_prefix[i]}.text_model.{p.removeprefix('text_model.')}")
              for i, p in te_paths]
    for kohya, diffusers in names:
        peft[f"{diffusers}.lora_A.weight"] = state[f"{kohya}.lora_down.weight"]
        peft[f"{diffusers}.lora_B.weight"] = state[f"{kohya}.lora_up.weight"]
    return peft
