"""Tiny, randomly initialised models with the real Stable Diffusion architectures, built in-process.

Tests, benchmarks of overhead and the launch command (when no checkpoint is installed) use these: every family
(SD1, SD2 epsilon/v, SDXL, SDXL refiner, and the 9-channel inpaint variants) with the same component classes,
key layout and conditioning as the real thing, but ~1 M parameters per component. The real CLIP tokenizer files
bundled in `models/configs/tokenizers/` are used, so token ids are those of real checkpoints.

Weights are deterministic: `build_tiny_components(identity, seed)` gives the same tensors for the same seed.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from modules.models.components import ComponentSet
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.loaders import load_tokenizer

TINY_HIDDEN = 32
TINY_TIME_EMBED = 8

BASE_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "timestep_spacing": "leading",
}


def tiny_text_encoder_config(openclip: bool, with_projection: bool = False) -> dict[str, Any]:
    """CLIP text config: quick_gelu like OpenAI CLIP-L (SD1), gelu like OpenCLIP (SD2, SDXL's second encoder)."""
    return {
        "vocab_size": 49408,
        "hidden_size": TINY_HIDDEN,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 3,
        "max_position_embeddings": 77,
        "projection_dim": TINY_HIDDEN,
        "hidden_act": "gelu" if openclip else "quick_gelu",
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 0 if openclip else 49407,
        "layer_norm_eps": 1e-5,
    }


def tiny_vae_config(identity: ModelIdentity) -> dict[str, Any]:
    """Four blocks, so the VAE scale factor is 8 as in real checkpoints."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [16, 16, 32, 32],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 64,
        "scaling_factor": 0.13025 if identity.is_sdxl else 0.18215,
    }


def tiny_unet_config(identity: ModelIdentity) -> dict[str, Any]:
    """UNet config mirroring the real family's block layout and conditioning at tiny width."""
    cfg: dict[str, Any] = {
        "sample_size": 8,
        "in_channels": 9 if identity.variant is Variant.INPAINT else 4,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": [32, 64],
        "norm_num_groups": 16,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": TINY_HIDDEN,
        "attention_head_dim": 8,
    }
    if identity.family is Family.SD2:
        cfg.update(attention_head_dim=[2, 4], use_linear_projection=True)
    if identity.is_sdxl:
        refiner = identity.family is Family.SDXL_REFINER
        cfg.update(
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            transformer_layers_per_block=[1, 2],
            attention_head_dim=[2, 4],
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=TINY_TIME_EMBED,
            projection_class_embeddings_input_dim=(5 if refiner else 6) * TINY_TIME_EMBED + TINY_HIDDEN,
            cross_attention_dim=TINY_HIDDEN if refiner else 2 * TINY_HIDDEN,
        )
    return cfg


def tiny_scheduler_config(identity: ModelIdentity) -> dict[str, Any]:
    cfg = dict(BASE_SCHEDULER_CONFIG)
    cfg["prediction_type"] = identity.prediction.value
    return cfg


def tiny_configs(identity: ModelIdentity) -> dict[str, dict[str, Any]]:
    """All component configs of a tiny model, keyed like a diffusers folder (unet, vae, text_encoder[_2], scheduler)."""
    configs: dict[str, dict[str, Any]] = {
        "unet": tiny_unet_config(identity),
        "vae": tiny_vae_config(identity),
        "scheduler": tiny_scheduler_config(identity),
    }
    if identity.family is Family.SD1:
        configs["text_encoder"] = tiny_text_encoder_config(openclip=False)
    elif identity.family is Family.SD2:
        configs["text_encoder"] = tiny_text_encoder_config(openclip=True)
    elif identity.family is Family.SDXL:
        configs["text_encoder"] = tiny_text_encoder_config(openclip=False)
        configs["text_encoder_2"] = tiny_text_encoder_config(openclip=True, with_projection=True)
    else:
        configs["text_encoder_2"] = tiny_text_encoder_config(openclip=True, with_projection=True)
    return configs


def build_tiny_components(identity: ModelIdentity, seed: int = 0) -> ComponentSet:
    """Build a deterministic tiny `ComponentSet` for `identity` on the CPU in fp32."""
    return build_random_components(identity, tiny_configs(identity), seed)


def build_random_components(identity: ModelIdentity, configs: Mapping[str, Mapping[str, Any]], seed: int = 0,
                            device: torch.device | str = "cpu") -> ComponentSet:
    """A `ComponentSet` of `identity` with random weights (seeded) from component `configs` (tiny ones, or the
    bundled full-size ones for benchmarks), created on `device` in fp32."""
    with torch.device(device):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(dict(configs["unet"]))
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL.from_config(dict(configs["vae"]))
        encoders: list[Any] = []
        tokenizers: list[CLIPTokenizer] = []
        if "text_encoder" in configs:
            torch.manual_seed(seed + 2)
            encoders.append(CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])))
            tokenizers.append(load_tokenizer("clip_l" if identity.family is not Family.SD2 else "openclip"))
        if "text_encoder_2" in configs:
            torch.manual_seed(seed + 3)
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"])))
            tokenizers.append(load_tokenizer("openclip"))
    for module in [unet, vae, *encoders]:
        module.eval().requires_grad_(False)
    components = ComponentSet(
        identity=identity,
        unet=unet,
        vae=vae,
        text_encoders=tuple(encoders),
        tokenizers=tuple(tokenizers),
        scheduler_config=configs["scheduler"],
    )
    components.device = torch.device(device)
    return components


ALL_TINY_IDENTITIES: tuple[ModelIdentity, ...] = (
    ModelIdentity(Family.SD1),
    ModelIdentity(Family.SD1, Variant.INPAINT),
    ModelIdentity(Family.SD2),
    ModelIdentity(Family.SD2, prediction=Prediction.V),
    ModelIdentity(Family.SD2, Variant.INPAINT),
    ModelIdentity(Family.SDXL),
    ModelIdentity(Family.SDXL, Variant.INPAINT),
    ModelIdentity(Family.SDXL_REFINER),
)
