"""Tiny IP-Adapter test material: a tiny CLIPVisionModelWithProjection and IP-Adapter state dicts in the released
files' layout (`image_proj.*` and `ip_adapter.<n>.to_k_ip/to_v_ip.weight`, n = the index of the cross-attention's
processor in the UNet's `attn_processors`), with random weights large enough to change a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ENCODER = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
           "image_size": 32, "patch_size": 8, "projection_dim": 24, "hidden_act": "gelu", "layer_norm_eps": 1e-5}


def tiny_encoder(seed: int = 0, **changes: Any) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**{**ENCODER, **changes})).eval()


def write_encoder(folder: Path, seed: int = 0, **changes: Any) -> Any:
    """A transformers encoder folder (config.json + model.safetensors); returns the model."""
    model = tiny_encoder(seed, **changes)
    model.save_pretrained(str(folder))
    return model


def _rand(generator: torch.Generator, *shape: int, scale: float = 0.3) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def adapter_state(unet: Any, width: int = ENCODER["projection_dim"], plus: bool = False, tokens: int = 4,
                  seed: int = 1) -> dict[str, torch.Tensor]:
    """A flat IP-Adapter state dict for `unet`: plain (ImageProjection of image embeds of `width`) or plus
    (a Resampler of hidden states of `width`)."""
    generator = torch.Generator().manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)
    state: dict[str, torch.Tensor] = {}
    if plus:
        inner, heads = 64, 1
        state.update({"image_proj.latents": _rand(generator, 1, tokens, inner),
                      "image_proj.proj_in.weight": _rand(generator, inner, width),
                      "image_proj.proj_in.bias": _rand(generator, inner),
                      "image_proj.proj_out.weight": _rand(generator, cross, inner),
                      "image_proj.proj_out.bias": _rand(generator, cross),
                      "image_proj.norm_out.weight": 1 + _rand(generator, cross),
                      "image_proj.norm_out.bias": _rand(generator, cross)})
        for depth in range(4):  # diffusers' Resampler has four layers
            layer = f"image_proj.layers.{depth}."
            for norm in ("0.norm1", "0.norm2", "1.0"):
                state[f"{layer}{norm}.weight"] = 1 + _rand(generator, inner)
                state[f"{layer}{norm}.bias"] = _rand(generator, inner)
            state.update({f"{layer}0.to_q.weight": _rand(generator, 64 * heads, inner),
                          f"{layer}0.to_kv.weight": _rand(generator, 2 * 64 * heads, inner),
                          f"{layer}0.to_out.weight": _rand(generator, inner, 64 * heads),
                          f"{layer}1.1.weight": _rand(generator, 4 * inner, inner),
                          f"{layer}1.3.weight": _rand(generator, inner, 4 * inner)})
    else:
        state.update({"image_proj.proj.weight": _rand(generator, tokens * cross, width),
                      "image_proj.proj.bias": _rand(generator, tokens * cross),
                      "image_proj.norm.weight": 1 + _rand(generator, cross),
                      "image_proj.norm.bias": _rand(generator, cross)})
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            attention = unet.get_submodule(name.removesuffix(".processor"))
            shape = tuple(attention.to_k.weight.shape)
            state[f"ip_adapter.{index}.to_k_ip.weight"] = _rand(generator, *shape)
            state[f"ip_adapter.{index}.to_v_ip.weight"] = _rand(generator, *shape)
    return state


def save_adapter(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """`.safetensors` (flat keys) or `.bin` (the two nested dicts), as IP-Adapter files are released."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    else:
        nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            nested[head][rest] = value
        torch.save(nested, str(path))
    return path


def tiny_controlnet(unet: Any, seed: int = 3) -> Any:
    """A ControlNet made from the UNet, its zero convolutions made non-zero so that it has an effect."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.3)
    return net.eval()
