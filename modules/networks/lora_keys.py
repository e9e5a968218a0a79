"""Which module of a loaded model each tensor of a LoRA file belongs to.

LoRA files name layers in the kohya layout (`lora_unet_<path with '_'>.lora_down.weight`, `.lora_up.weight`,
`.alpha`, LoCon `.lora_mid.weight`; `lora_te_`, `lora_te1_`, `lora_te2_` for text encoders; UNet paths in diffusers
naming for SD1/SD2 and LDM naming for SDXL) or the diffusers/PEFT layout (`unet.<path>.lora_A.weight`,
`text_encoder.<path>...`, and older spellings). Rather than rewrite names, `ModuleIndex` lists every Linear/Conv2d
of our model under each name a LoRA may use for it: the diffusers path, the same path flattened with '_', and for
the UNet the LDM path from `convert.unet_to_original`, so it follows any config, tiny models included. The
prefixes come from `modules.models.keys`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Iterator

import torch
from diffusers import ModelMixin

from modules.errors import UnsupportedModel
from modules.models.components import ComponentSet
from modules.models.convert import unet_to_original
from modules.models.identity import ModelIdentity
from modules.models.keys import (
    LORA_TEXT_PREFIXES,
    LORA_UNET_PREFIX,
    PEFT_UNET_PREFIX,
    UNET_PREFIX,
    text_encoder_layouts,
)

log = logging.getLogger(__name__)

UNET = "unet"
TEXT_ENCODER = "text_encoder"

# Tensor roles inside one LoRA module: "down" (A), "up" (B), "alpha", "mid" (LoCon CP decomposition).
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_mid.weight", "mid"),
    (".lora_A.default.weight", "down"),
    (".lora_B.default.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".down.weight", "down"),
    (".up.weight", "up"),
    (".alpha", "alpha"),
)
# diffusers attention processors: "attn1.processor.to_q_lora" -> "attn1.to_q", "to_out_lora" -> "to_out.0".
_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora$")


@dataclass
class LoraModule:
    """The tensors a LoRA file holds for one layer, under the name the file uses for it."""

    name: str
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    mid: torch.Tensor | None = None
    alpha: float | None = None


@dataclass
class GroupedKeys:
    """LoRA tensors grouped per layer, plus the keys that are not LoRA up/down/alpha tensors (DoRA scales, ...)."""

    modules: dict[str, LoraModule] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def _split(key: str) -> tuple[str, str] | None:
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            name = key[: -len(suffix)]
            processor = _PROCESSOR.search(name)
            if processor:
                target = "to_out.0" if processor.group(1) == "to_out" else processor.group(1)
                name = f"{name[: processor.start()]}.{target}"
            return name, role
    return None


def group_lora_keys(state_dict: dict[str, torch.Tensor]) -> GroupedKeys:
    """Group a LoRA state dict by layer name (as written in the file)."""
    grouped = GroupedKeys()
    for key, tensor in state_dict.items():
        split = _split(key)
        if split is None:
            grouped.unknown.append(key)
            continue
        name, role = split
        module = grouped.modules.setdefault(name, LoraModule(name))
        if role == "alpha":
            module.alpha = float(tensor.float().reshape(-1)[0].item())
        else:
            setattr(module, role, tensor)
    return grouped


@dataclass(frozen=True)
class Target:
    """A layer of our model that a LoRA can change: which component, its module path there, and the module."""

    component: str  # "unet" | "text_encoder"
    index: int  # text encoder index in ComponentSet.text_encoders (0 for the UNet)
    path: str
    module: torch.nn.Module

    @property
    def weight(self) -> torch.nn.Parameter:
        weight = self.module.weight
        assert isinstance(weight, torch.nn.Parameter)
        return weight


FUSED_LAYERS = frozenset({"to_qkv", "to_kv", "to_added_qkv"})
"""Projections the `fused_qkv` setting builds from to_q/to_k/to_v: LoRAs merge into those, never into these."""


def _layers(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    for path, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            yield path, module


def _flat(path: str) -> str:
    return path.replace(".", "_")


def _ldm_paths(unet: ModelMixin, paths: list[str]) -> dict[str, str]:
    """diffusers UNet module path -> original LDM path ("input_blocks.1.1.proj_in"), where one exists."""
    try:
        original = unet_to_original({f"{p}.weight": torch.empty(0) for p in paths}, dict(unet.config))
    except UnsupportedModel as exc:
        log.debug("No LDM names for this UNet: %s", exc)
        return {}
    ldm = [key[len(UNET_PREFIX) : -len(".weight")] for key in original]
    return dict(zip(paths, ldm, strict=True))


def _text_encoder_prefixes(identity: ModelIdentity) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """Per text encoder (ComponentSet order): (kohya prefixes, diffusers prefixes)."""
    layouts = text_encoder_layouts(identity)
    kohya = LORA_TEXT_PREFIXES[identity.family]
    return tuple(((prefix,), (layout.component,)) for prefix, layout in zip(kohya, layouts, strict=True))


class ModuleIndex:
    """Every LoRA-targetable layer of a ComponentSet under each name a LoRA file may give it."""

    def __init__(self, components: ComponentSet) -> None:
        self._targets: dict[str, Target] = {}
        self._index_unet(components.unet)
        prefixes = _text_encoder_prefixes(components.identity)
        for index, (encoder, (kohya, diffusers)) in enumerate(zip(components.text_encoders, prefixes, strict=True)):
            self._index_text_encoder(index, encoder, kohya, diffusers)

    def _add(self, names: list[str], target: Target) -> None:
        for name in names:
            self._targets.setdefault(name, target)

    def _index_unet(self, unet: torch.nn.Module) -> None:
        layers = {path: module for path, module in _layers(unet) if path.rpartition(".")[2] not in FUSED_LAYERS}
        ldm = _ldm_paths(unet, list(layers))
        for path, module in layers.items():
            target = Target(UNET, 0, path, module)
            names = [f"{LORA_UNET_PREFIX}{_flat(path)}", f"{PEFT_UNET_PREFIX}{path}"]
            if path in ldm:
                names.append(f"{LORA_UNET_PREFIX}{_flat(ldm[path])}")
            self._add(names, target)

    def _index_text_encoder(
        self, index: int, encoder: torch.nn.Module, kohya: tuple[str, ...], diffusers: tuple[str, ...]
    ) -> None:
        for path, module in _layers(encoder):
            target = Target(TEXT_ENCODER, index, path, module)
            inner = path.removeprefix("text_model.")  # CLIPTextModelWithProjection nests the transformer
            names = [f"{prefix}text_model_{_flat(inner)}" for prefix in kohya]
            names += [f"{prefix}{_flat(inner)}" for prefix in kohya if inner.startswith("text_projection")]
            names += [f"{prefix}.text_model.{inner}" for prefix in diffusers]
            names += [f"{prefix}.{inner}" for prefix in diffusers]
            self._add(names, target)

    def find(self, name: str) -> Target | None:
        """The layer a LoRA module name refers to, or None when this model has no such layer."""
        return self._targets.get(name)

    def __len__(self) -> int:
        return len(self._targets)
