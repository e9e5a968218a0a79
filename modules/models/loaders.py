"""Checkpoint files, diffusers folders and standalone VAE files -> diffusers components, offline.

A single file is read by `modules.models.state_dict`; each component is built from its config (`configs`) on the
meta device, its weights are converted with diffusers' own forward conversion
(`diffusers.loaders.single_file_utils.convert_*`) and assigned strictly: a missing or unexpected key is an
`UnsupportedModel` naming the file, never a half-random model. Tokenizers come from the bundled
`models/configs/tokenizers/` folders (model_max_length 77). Nothing is looked up on the hub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, ModelMixin, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from safetensors import SafetensorError
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, PreTrainedModel

from modules import paths
from modules.errors import CorruptFile, UnsupportedModel
from modules.models.components import ComponentSet
from modules.models.configs import Configs, bundled_configs, embedded_configs, read_json_object, resolve_configs
from modules.models.identity import ModelIdentity
from modules.models.keys import UNET_PREFIX, VAE_PREFIX, TextEncoderLayout, text_encoder_layouts
from modules.models.probe import identify_diffusers_folder
from modules.models.state_dict import StateDict, read_metadata, read_state_dict

log = logging.getLogger(__name__)

TOKENIZER_MAX_LENGTH = 77
TEXT_ENCODER_CLASSES: Mapping[str, type[PreTrainedModel]] = {
    "text_encoder": CLIPTextModel,
    "text_encoder_2": CLIPTextModelWithProjection,
}


@dataclass(frozen=True)
class RawCheckpoint:
    """What a file holds: tensors, plus component configs if the file carries its own."""

    state_dict: StateDict
    configs: Configs | None = None


def read_checkpoint(path: Path) -> RawCheckpoint:
    """The tensors of a single-file checkpoint and the configs it carries (metadata entry or sidecar)."""
    path = Path(path)
    state_dict = read_state_dict(path)
    return RawCheckpoint(state_dict, embedded_configs(path, read_metadata(path)))


# ---------------------------------------------------------------- configs and module construction


def build_empty(name: str, config: Mapping[str, Any]) -> ModelMixin | PreTrainedModel:
    """A component with its parameters on the meta device (no memory): unet, vae, text_encoder[_2]."""
    if name in ("unet", "vae"):
        return build_empty_diffusers(name, config)
    return build_empty_text_encoder(name, config)


def build_empty_text_encoder(name: str, config: Mapping[str, Any]) -> PreTrainedModel:
    """text_encoder or text_encoder_2 on the meta device."""
    with init_empty_weights():
        return TEXT_ENCODER_CLASSES[name](CLIPTextConfig.from_dict(dict(config)))


def build_empty_diffusers(name: str, config: Mapping[str, Any]) -> ModelMixin:
    """The unet or vae on the meta device."""
    with init_empty_weights():
        return (UNet2DConditionModel if name == "unet" else AutoencoderKL).from_config(dict(config))


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 5 else ''})"


def assign_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, label: str) -> None:
    """Strictly assign converted weights to a meta-initialised module (missing/unexpected -> UnsupportedModel)."""
    expected = set(module.state_dict())
    given = {key: value for key, value in state_dict.items() if value is not None}
    missing = sorted(expected - set(given))
    unexpected = sorted(set(given) - expected)
    if missing or unexpected:
        details = []
        if missing:
            details.append(f"missing {_describe_keys(missing)}")
        if unexpected:
            details.append(f"unexpected {_describe_keys(unexpected)}")
        raise UnsupportedModel(f"{label}: the {what} weights do not match its config: {'; '.join(details)}.")
    try:
        module.load_state_dict(given, strict=True, assign=True)
    except RuntimeError as exc:
        raise UnsupportedModel(f"{label}: the {what} weights do not match its config: {exc}") from exc
    module.eval().requires_grad_(False)


def _finish(module: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> Any:
    """Move and cast. diffusers' ModelMixin.to warns on every dtype cast even when no module is pinned to fp32
    (none is in SD UNets/VAEs), so the plain nn.Module cast is used: same result, no spurious warning."""
    return torch.nn.Module.to(module, device=device, dtype=dtype)


def _assemble(
    identity: ModelIdentity,
    modules: tuple[Any, Any, list[PreTrainedModel], list[CLIPTokenizer]],
    scheduler_config: dict[str, Any],
    device: torch.device | str,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
) -> ComponentSet:
    """The ComponentSet of (unet, vae, text encoders, tokenizers), moved to `device` and cast."""
    unet, vae, encoders, tokenizers = modules
    return ComponentSet(
        identity=identity,
        unet=_finish(unet, device, dtype),
        vae=_finish(vae, device, vae_dtype),
        text_encoders=tuple(_finish(encoder, device, dtype) for encoder in encoders),
        tokenizers=tuple(tokenizers),
        scheduler_config=scheduler_config,
        device=torch.device(device),
        dtype=dtype,
        vae_dtype=vae_dtype,
    )


def load_tokenizer(layout_or_name: TextEncoderLayout | str, folder: Path | None = None) -> CLIPTokenizer:
    """A CLIP tokenizer from `folder` if given, else the bundled one; model_max_length fixed to 77."""
    name = layout_or_name.tokenizer if isinstance(layout_or_name, TextEncoderLayout) else layout_or_name
    source = folder if folder is not None else paths.tokenizer_dir(name)
    tokenizer = CLIPTokenizer.from_pretrained(str(source), local_files_only=True)
    tokenizer.model_max_length = TOKENIZER_MAX_LENGTH
    return tokenizer


# ---------------------------------------------------------------- single files


def _subset(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {key: value for key, value in state_dict.items() if key.startswith(prefix)}


def _convert(label: str, what: str, convert: Callable[[], StateDict]) -> StateDict:
    """Run one diffusers conversion; its KeyErrors etc. on foreign layouts become UnsupportedModel."""
    try:
        return convert()
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise UnsupportedModel(f"{label}: the {what} weights are not in the expected layout ({exc!r}).") from exc


def _from_original(
    name: str, configs: Configs, weights: StateDict, convert: Callable[[StateDict, dict[str, Any]], StateDict],
    label: str,
) -> torch.nn.Module:
    """The unet or vae built from its config, with its original-layout `weights` converted by diffusers."""
    what = {"unet": "UNet", "vae": "VAE"}[name]
    module = build_empty_diffusers(name, configs[name])
    config = dict(module.config)
    assign_weights(module, _convert(label, what, lambda: convert(weights, config)), what, label)
    return module


def _text_encoder_from_original(
    layout: TextEncoderLayout, config: Mapping[str, Any], state_dict: StateDict, label: str
) -> PreTrainedModel:
    encoder = build_empty_text_encoder(layout.component, config)
    subset = _subset(state_dict, layout.prefix)
    if layout.kind == "clip_l":
        converted = _convert(label, layout.component, lambda: convert_ldm_clip_checkpoint(subset))
    else:
        converted = _convert(
            label, layout.component, lambda: convert_open_clip_checkpoint(encoder, subset, prefix=layout.prefix)
        )
    if not isinstance(encoder, CLIPTextModelWithProjection):
        converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    converted = {key: value for key, value in converted.items() if not key.endswith("embeddings.position_ids")}
    assign_weights(encoder, converted, layout.component, label)
    return encoder


def load_checkpoint(
    path: Path,
    identity: ModelIdentity,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
) -> ComponentSet:
    """Load an original-layout (A1111) single-file checkpoint as diffusers components, offline."""
    path = Path(path)
    raw = read_checkpoint(path)
    configs = resolve_configs(identity, raw.configs)
    label = path.name
    unet = _from_original("unet", configs, _subset(raw.state_dict, UNET_PREFIX), convert_ldm_unet_checkpoint, label)
    vae = _from_original("vae", configs, _subset(raw.state_dict, VAE_PREFIX), convert_ldm_vae_checkpoint, label)
    layouts = text_encoder_layouts(identity)
    encoders = [_text_encoder_from_original(lay, configs[lay.component], raw.state_dict, label) for lay in layouts]
    log.info("Loaded %s as %s", path, identity.describe())
    tokenizers = [load_tokenizer(layout) for layout in layouts]
    return _assemble(identity, (unet, vae, encoders, tokenizers), configs["scheduler"], device, dtype, vae_dtype)


# ---------------------------------------------------------------- diffusers folders


def _weights_variant(folder: Path) -> str | None:
    """"fp16" when a component folder only holds `*.fp16.*` weight files (diffusers' variant naming)."""
    weights = [
        p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")
    ]
    if weights and all(".fp16." in name for name in weights):
        return "fp16"
    return None


def _from_pretrained(cls: Any, folder: Path, label: str) -> Any:
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, variant=_weights_variant(folder))
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CorruptFile(f"{label}: cannot load {folder.name} ({str(exc).splitlines()[0]}).") from exc


def load_diffusers_folder(
    path: Path,
    identity: ModelIdentity | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
) -> ComponentSet:
    """Load a diffusers folder (model_index.json); the identity is inferred from its configs when not given."""
    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        raise UnsupportedModel(f"{folder.name}: not a diffusers model folder (no model_index.json).")
    identity = identity or identify_diffusers_folder(folder)
    label = folder.name
    layouts = text_encoder_layouts(identity)
    unet = _from_pretrained(UNet2DConditionModel, folder / "unet", label)
    vae = _from_pretrained(AutoencoderKL, folder / "vae", label)
    encoders = [_from_pretrained(TEXT_ENCODER_CLASSES[lay.component], folder / lay.component, label) for lay in layouts]
    tokenizers = []
    for layout in layouts:
        own = folder / layout.component.replace("text_encoder", "tokenizer")
        tokenizers.append(load_tokenizer(layout, own if (own / "vocab.json").is_file() else None))
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = read_json_object(scheduler_file) if scheduler_file.is_file() else bundled_configs(identity)["scheduler"]
    scheduler["prediction_type"] = identity.prediction.value
    for module in (unet, vae, *encoders):
        module.eval().requires_grad_(False)
    log.info("Loaded diffusers folder %s as %s", folder, identity.describe())
    return _assemble(identity, (unet, vae, encoders, tokenizers), scheduler, device, dtype, vae_dtype)


# ---------------------------------------------------------------- standalone VAE files

_DEPRECATED_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _diffusers_vae_weights(state_dict: StateDict) -> StateDict:
    """Diffusers-layout VAE weights, with the attention names of old diffusers releases renamed."""
    out: StateDict = {}
    for key, value in state_dict.items():
        for old, new in _DEPRECATED_VAE_ATTENTION.items():
            key = key.replace(old, new)
        out[key] = value
    return out


def load_vae(
    path: Path,
    base_vae_config: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> AutoencoderKL:
    """Load a standalone VAE file (models/VAE): A1111 original layout or diffusers layout.

    The architecture is the file's embedded VAE config when it has one, else `base_vae_config` (the config of
    the checkpoint the VAE is used with, e.g. `dict(components.vae.config)`).
    """
    path = Path(path)
    raw = read_checkpoint(path)
    config = dict(raw.configs["vae"]) if raw.configs and "vae" in raw.configs else dict(base_vae_config)
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    weights = {k: v for k, v in raw.state_dict.items() if not k.startswith(("loss.", "model_ema."))}
    vae = build_empty_diffusers("vae", config)
    if any(".down_blocks." in key or ".mid_block." in key for key in weights):
        converted = _diffusers_vae_weights(weights)
    else:
        converted = _convert(path.name, "VAE", lambda: convert_ldm_vae_checkpoint(weights, dict(vae.config)))
    assign_weights(vae, converted, "VAE", path.name)
    log.info("Loaded VAE %s", path)
    return _finish(vae, device, dtype)
