"""diffusers components -> original LDM / A1111 single-file checkpoints (the reverse of diffusers' single-file loader).

diffusers ships only the forward direction (`diffusers.loaders.single_file_utils.convert_*`). This module writes
the original layout (prefixes in `modules.models.keys`) so that other programs recognise the file, and so that
diffusers' own forward conversion turns it back into exactly the state dict we started from (tested). Each
`*_to_original` function documents its part of the layout. v-prediction models get an empty `v_pred` tensor.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import save_file

from modules.errors import UnsupportedModel
from modules.models.components import ComponentSet
from modules.models.configs import sidecar_path
from modules.models.identity import ModelIdentity, Prediction
from modules.models.keys import CONFIGS_METADATA_KEY, UNET_PREFIX, V_PRED_KEY, VAE_PREFIX, text_encoder_layouts
from modules.models.loaders import load_diffusers_folder
from modules.models.state_dict import StateDict

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- UNet

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "class_embedding.linear_1.": "label_emb.0.0.",
    "class_embedding.linear_2.": "label_emb.0.2.",
}
_UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _unet_block_prefixes(config: Mapping[str, Any], keys: set[str]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, original prefix, is_resnet) for every down/mid/up sub-module."""
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        raise UnsupportedModel(f"A UNet with per-block layer counts ({per_block}) has no A1111 single-file layout.")
    n_blocks = len(config["block_out_channels"])
    rows: list[tuple[str, str, bool]] = []
    for i in range(n_blocks):
        for j in range(per_block):
            slot = 1 + i * (per_block + 1) + j
            rows.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{slot}.0.", True))
            rows.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{slot}.1.", False))
        slot = 1 + i * (per_block + 1) + per_block
        rows.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{slot}.0.op.", False))
    rows.append(("mid_block.resnets.0.", "middle_block.0.", True))
    rows.append(("mid_block.attentions.0.", "middle_block.1.", False))
    rows.append(("mid_block.resnets.1.", "middle_block.2.", True))
    for i in range(n_blocks):
        for j in range(per_block + 1):
            slot = i * (per_block + 1) + j
            rows.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{slot}.0.", True))
            rows.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{slot}.1.", False))
        has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys)
        slot = i * (per_block + 1) + per_block
        upsampler = f"output_blocks.{slot}.{2 if has_attention else 1}.conv."
        rows.append((f"up_blocks.{i}.upsamplers.0.conv.", upsampler, False))
    return rows


def _unet_key(key: str, rows: list[tuple[str, str, bool]]) -> str:
    for new, old in _UNET_TOP_LEVEL.items():
        if key.startswith(new):
            return old + key[len(new) :]
    for new, old, is_resnet in rows:
        if key.startswith(new):
            rest = key[len(new) :]
            if is_resnet:
                head, _, tail = rest.partition(".")
                rest = f"{_UNET_RESNET_NAMES.get(head, head)}.{tail}"
            return old + rest
    raise UnsupportedModel(f"The UNet parameter '{key}' has no place in the A1111 single-file layout.")


def unet_to_original(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> StateDict:
    """diffusers UNet2DConditionModel state dict -> `model.diffusion_model.*` keys.

    diffusers `down_blocks.i.{resnets,attentions}.j` are `input_blocks.(1 + i*(L+1) + j).{0,1}` with
    L = layers_per_block; each downsampler takes the slot after its block's layers (`input_blocks.N.0.op`). Up
    blocks have L+1 layers; the upsampler sits after the attention (`.2.conv`) or the resnet (`.1.conv`).
    Transformer blocks keep their inner names; SDXL's `add_embedding` is `label_emb.0`.
    """
    rows = _unet_block_prefixes(config, set(state_dict))
    return {UNET_PREFIX + _unet_key(key, rows): value for key, value in state_dict.items()}


# ---------------------------------------------------------------- VAE

_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae_key(key: str, n_up: int) -> str:
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"^(encoder|decoder)\.conv_norm_out\.(.*)$", lambda m: f"{m[1]}.norm_out.{m[2]}"),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)$", lambda m: f"encoder.down.{m[1]}.downsample.{m[2]}"),
        (
            r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$",
            lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3]}",
        ),
        (
            r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$",
            lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.{m[2]}",
        ),
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)$", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"),
        (
            r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)$",
            lambda m: f"{m[1]}.mid.attn_1.{_VAE_ATTENTION_NAMES[m[2]]}.{m[3]}",
        ),
    ]
    for pattern, build in patterns:
        match = re.match(pattern, key)
        if match:
            return build(match).replace("conv_shortcut", "nin_shortcut")
    if re.match(r"^(encoder\.conv_(in|out)|decoder\.conv_(in|out)|quant_conv|post_quant_conv)\.", key):
        return key
    raise UnsupportedModel(f"The VAE parameter '{key}' has no place in the A1111 single-file layout.")


def vae_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str = VAE_PREFIX) -> StateDict:
    """diffusers AutoencoderKL state dict -> original keys.

    Decoder up blocks are stored in reverse order; the mid-block attention uses `q/k/v/proj_out` 1x1 convs
    ([C, C, 1, 1]) where diffusers uses linear layers ([C, C]).
    """
    n_up = len({k.split(".")[2] for k in state_dict if k.startswith("decoder.up_blocks.")})
    out: StateDict = {}
    for key, value in state_dict.items():
        new_key = _vae_key(key, n_up)
        if ".mid.attn_1." in new_key and new_key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[prefix + new_key] = value
    return out


# ---------------------------------------------------------------- text encoders

_OPENCLIP_TOP_LEVEL = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _strip_text_model(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers 5 flattens CLIPTextModel (no `text_model.`); CLIPTextModelWithProjection keeps it."""
    return {key.removeprefix("text_model."): value for key, value in state_dict.items()}


def clip_l_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """HF CLIPTextModel -> `<prefix>text_model.*` (the layout of SD1 and SDXL's first encoder)."""
    out: StateDict = {}
    for key, value in _strip_text_model(state_dict).items():
        if key.startswith("text_projection"):
            raise UnsupportedModel("A CLIP-L text encoder with a projection has no A1111 single-file layout.")
        out[f"{prefix}text_model.{key}"] = value
    return out


def openclip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """HF CLIPTextModel[WithProjection] -> OpenCLIP `<prefix>{transformer.resblocks.N,token_embedding,...}`.

    q/k/v are fused into `attn.in_proj_{weight,bias}`; `text_projection` is stored transposed (x @ P). The layers
    the model has are written: diffusers keeps one resblock less than SD2's original 24 (the last never runs).
    """
    flat = _strip_text_model(state_dict)
    out: StateDict = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        if key in _OPENCLIP_TOP_LEVEL:
            out[prefix + _OPENCLIP_TOP_LEVEL[key]] = value
            continue
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
            continue
        match = re.match(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
        if not match:
            raise UnsupportedModel(f"The text encoder parameter '{key}' has no place in the OpenCLIP layout.")
        layer, module, kind = match.groups()
        block = f"{prefix}transformer.resblocks.{layer}."
        qkv = re.match(r"^self_attn\.([qkv])_proj$", module)
        if qkv:
            fused.setdefault(f"{block}attn.in_proj_{kind}", {})[qkv[1]] = value
        elif module in _OPENCLIP_LAYER_NAMES:
            out[f"{block}{_OPENCLIP_LAYER_NAMES[module]}.{kind}"] = value
        else:
            raise UnsupportedModel(f"The text encoder parameter '{key}' has no place in the OpenCLIP layout.")
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# ---------------------------------------------------------------- whole checkpoints


def _plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready copy of a diffusers config without private bookkeeping keys."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}))


def component_configs(components: ComponentSet) -> dict[str, dict[str, Any]]:
    """Configs of every component, keyed like a diffusers folder (the shape of `tiny.tiny_configs()`)."""
    configs: dict[str, dict[str, Any]] = {
        "unet": _plain_config(components.unet.config),
        "vae": _plain_config(components.vae.config),
        "scheduler": dict(json.loads(json.dumps(dict(components.scheduler_config)))),
    }
    for layout, encoder in zip(text_encoder_layouts(components.identity), components.text_encoders, strict=True):
        configs[layout.component] = json.loads(encoder.config.to_json_string(use_diff=False))
    return configs


def to_original_state_dict(components: ComponentSet) -> StateDict:
    """All weights of `components` under their original LDM / A1111 single-file names."""
    identity = components.identity
    out = unet_to_original(components.unet.state_dict(), components.unet.config)
    out.update(vae_to_original(components.vae.state_dict()))
    layouts = text_encoder_layouts(identity)
    if len(layouts) != len(components.text_encoders):
        raise UnsupportedModel(
            f"{identity.describe()} needs {len(layouts)} text encoder(s), got {len(components.text_encoders)}."
        )
    for layout, encoder in zip(layouts, components.text_encoders):
        convert = clip_l_to_original if layout.kind == "clip_l" else openclip_to_original
        out.update(convert(encoder.state_dict(), layout.prefix))
    if identity.prediction is Prediction.V:
        out[V_PRED_KEY] = torch.tensor([])
    return out


def save_single_file(
    components: ComponentSet, path: Path, *, embed_configs: bool = True, dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write `components` as one A1111-layout checkpoint (`.safetensors`, or `.ckpt` as {"state_dict": ...}).

    With `embed_configs`, the component configs go into the safetensors metadata under "sdwebui.configs" (JSON),
    or for `.ckpt` into `<stem>.configs.json`; loaders prefer them over the bundled family configs, which is how
    models with a non-standard architecture (tiny test models, the demo model) stay loadable. `dtype` optionally
    casts floating-point weights (e.g. torch.float16 for a half-size file). `metadata` adds header entries to a
    `.safetensors` file (e.g. {"modelspec.resolution": "64x64"}).
    """
    path = Path(path)
    state_dict = {}
    for key, tensor in to_original_state_dict(components).items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state_dict[key] = tensor.contiguous()
    configs = json.dumps(component_configs(components), sort_keys=True) if embed_configs else None
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        header = {"format": "pt", **(metadata or {})}
        if configs is not None:
            header[CONFIGS_METADATA_KEY] = configs
        save_file(state_dict, str(path), metadata=header)
    elif suffix == ".ckpt":
        torch.save({"state_dict": state_dict}, path)
        if configs is not None:
            sidecar_path(path).write_text(configs, encoding="utf-8")
    else:
        raise UnsupportedModel(f"Cannot write '{path.name}': use a .safetensors or .ckpt file name.")
    log.info("Wrote %s (%s, %d tensors)", path, components.identity.describe(), len(state_dict))


def save_diffusers_folder_as_single_file(
    folder: Path,
    path: Path,
    *,
    identity: ModelIdentity | None = None,
    embed_configs: bool = True,
    dtype: torch.dtype | None = None,
) -> ModelIdentity:
    """Convert a diffusers folder (model_index.json) into one A1111 checkpoint; returns the identity used."""
    components = load_diffusers_folder(Path(folder), identity)
    save_single_file(components, Path(path), embed_configs=embed_configs, dtype=dtype)
    return components.identity
