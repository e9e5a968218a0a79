"""The reverse key mapping (diffusers -> A1111 single file) against diffusers' own forward conversion."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from safetensors import safe_open

from modules.models.components import ComponentSet
from modules.models.configs import resolve_configs, sidecar_path
from modules.models.convert import component_configs, save_single_file, to_original_state_dict
from modules.models.identity import Family, ModelIdentity, Prediction, Variant
from modules.models.keys import CONFIGS_METADATA_KEY, V_PRED_KEY, text_encoder_layouts
from modules.models.loaders import build_empty
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def forward_convert(original: dict[str, torch.Tensor], components: ComponentSet) -> list[dict[str, torch.Tensor]]:
    """diffusers' single-file conversion of `original`, one state dict per module of `components`."""
    unet = convert_ldm_unet_checkpoint(original, dict(components.unet.config))
    vae_part = {k: v for k, v in original.items() if k.startswith("first_stage_model.")}
    dicts = [unet, convert_ldm_vae_checkpoint(vae_part, dict(components.vae.config))]
    for layout, encoder in zip(text_encoder_layouts(components.identity), components.text_encoders):
        part = {k: v for k, v in original.items() if k.startswith(layout.prefix)}
        if layout.kind == "clip_l":
            converted = convert_ldm_clip_checkpoint(part)
        else:
            converted = convert_open_clip_checkpoint(encoder, part, prefix=layout.prefix)
        if not hasattr(encoder, "text_model"):
            converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        dicts.append(converted)
    return dicts


@pytest.mark.slow
@pytest.mark.parametrize("identity", ALL_TINY_IDENTITIES, ids=lambda i: f"{i.config_name}-{i.prediction.value}")
def test_tiny_models_survive_the_round_trip_exactly(identity: ModelIdentity) -> None:
    components = build_tiny_components(identity)
    original = to_original_state_dict(components)
    for module, converted in zip(components.modules(), forward_convert(original, components), strict=True):
        expected = module.state_dict()
        assert set(converted) == set(expected)
        for key, tensor in expected.items():
            assert torch.equal(converted[key], tensor), key
    assert (V_PRED_KEY in original) is (identity.prediction is Prediction.V)


def empty_real_components(identity: ModelIdentity) -> ComponentSet:
    """Full-size components from the bundled configs, parameters on the meta device."""
    configs = resolve_configs(identity)
    layouts = text_encoder_layouts(identity)
    encoders = tuple(build_empty(layout.component, configs[layout.component]) for layout in layouts)
    return ComponentSet(
        identity=identity,
        unet=build_empty("unet", configs["unet"]),
        vae=build_empty("vae", configs["vae"]),
        text_encoders=encoders,
        tokenizers=(),
        scheduler_config=configs["scheduler"],
    )


# identity, diffusers' own guess for the written file, {famous key: shape}
REAL_CASES = [
    (ModelIdentity(Family.SD1), "v1", {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "first_stage_model.decoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
    }),
    (ModelIdentity(Family.SD1, Variant.INPAINT), "inpainting", {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
    }),
    (ModelIdentity(Family.SD2), "v2", {
        "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
        "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": (3072, 1024),
        "cond_stage_model.model.positional_embedding": (77, 1024),
        "cond_stage_model.model.ln_final.weight": (1024,),
    }),
    (ModelIdentity(Family.SD2, prediction=Prediction.V), "v2", {V_PRED_KEY: (0,)}),
    (ModelIdentity(Family.SD2, Variant.INPAINT), "inpainting_v2", {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
    }),
    (ModelIdentity(Family.SDXL), "xl_base", {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight": (640, 640),
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_fc.weight": (5120, 1280),
    }),
    (ModelIdentity(Family.SDXL, Variant.INPAINT), "xl_inpaint", {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3),
    }),
    (ModelIdentity(Family.SDXL_REFINER), "xl_refiner", {
        "model.diffusion_model.label_emb.0.0.weight": (1536, 2560),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight": (768, 1280),
        "conditioner.embedders.0.model.text_projection": (1280, 1280),
        "conditioner.embedders.0.model.token_embedding.weight": (49408, 1280),
    }),
]


@pytest.mark.slow
@pytest.mark.parametrize("identity,model_type,famous", REAL_CASES, ids=[case[0].config_name for case in REAL_CASES])
def test_bundled_configs_map_to_the_famous_original_keys(
    identity: ModelIdentity, model_type: str, famous: dict[str, tuple[int, ...]]
) -> None:
    components = empty_real_components(identity)
    original = to_original_state_dict(components)
    for key, shape in famous.items():
        assert tuple(original[key].shape) == shape, key
    assert infer_diffusers_model_type(original) == model_type
    for module, converted in zip(components.modules(), forward_convert(original, components), strict=True):
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in converted.items()} == expected


def test_safetensors_carry_configs_and_v_marker(tmp_path: Path) -> None:
    identity = ModelIdentity(Family.SD2, prediction=Prediction.V)
    components = build_tiny_components(identity)
    path = tmp_path / "model.safetensors"
    save_single_file(components, path)
    with safe_open(str(path), framework="pt") as handle:
        configs = json.loads(handle.metadata()[CONFIGS_METADATA_KEY])
        assert handle.get_tensor(V_PRED_KEY).numel() == 0
        assert all(handle.get_tensor(k).is_contiguous() for k in handle.keys())
    assert configs == component_configs(components)
    assert set(configs) == {"unet", "vae", "text_encoder", "scheduler"}
    assert configs["scheduler"]["prediction_type"] == "v_prediction"
    assert configs["unet"]["block_out_channels"] == [32, 64]


@pytest.mark.slow
def test_ckpt_keeps_state_dict_and_sidecar(tmp_path: Path) -> None:
    components = build_tiny_components(ModelIdentity(Family.SDXL_REFINER))
    path = tmp_path / "refiner.ckpt"
    save_single_file(components, path, dtype=torch.float16)
    data = torch.load(path, map_location="cpu", weights_only=True)
    assert "conditioner.embedders.0.model.text_projection" in data["state_dict"]
    assert data["state_dict"]["model.diffusion_model.out.2.weight"].dtype == torch.float16
    assert set(json.loads(sidecar_path(path).read_text())) == {"unet", "vae", "text_encoder_2", "scheduler"}

    bare = tmp_path / "bare.safetensors"
    save_single_file(components, bare, embed_configs=False)
    with safe_open(str(bare), framework="pt") as handle:
        assert CONFIGS_METADATA_KEY not in (handle.metadata() or {})
