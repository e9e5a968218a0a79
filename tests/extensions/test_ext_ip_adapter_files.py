"""IP-Adapter files and CLIP vision encoders of the ControlNet extension, in process: the bundled ViT-H/14 and
ViT-bigG/14 configs and image processor, single-file encoders (safetensors and .pth) loading as the transformers
folder does, the encoder chosen by the adapter's width and the module's kind, clear errors for wrong files and a
checkpoint of the other family, and an SDXL unit equal to diffusers' StableDiffusionXLPipeline with
`load_ip_adapter`."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from modules.errors import UserError
from tests.core.helpers import SD1, SDXL, sample_image, tiny
from tests.extensions.ip_adapter_helpers import ENCODER, adapter_state, save_adapter, tiny_encoder, write_encoder


@pytest.fixture(scope="module")
def ipa() -> ModuleType:
    from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
    from modules.extensions.loader import ExtensionRoot

    ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)]).load()
    return sys.modules["sdwebui_extensions.controlnet.cnlib.ip_adapter"]


def test_bundled_configs_are_vit_h_and_vit_bigg(ipa: ModuleType) -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    expected = {(1280, 1024): (32, 5120), (1664, 1280): (48, 8192)}
    for (hidden, projection), (layers, intermediate) in expected.items():
        config = ipa.bundled_config(hidden, projection)
        assert (config["num_hidden_layers"], config["intermediate_size"], config["patch_size"],
                config["image_size"], config["num_attention_heads"]) == (layers, intermediate, 14, 224, 16)
        with torch.device("meta"):
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
        shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        assert shapes["visual_projection.weight"] == (projection, hidden)
        assert shapes["vision_model.embeddings.position_embedding.weight"] == (257, hidden)  # 16 x 16 patches + 1
    assert ipa.bundled_config(32, 24) is None
    assert ipa.image_processor(224).to_dict() == CLIPImageProcessor().to_dict()  # diffusers' default processor


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_single_file_encoder_loads_as_its_folder(ipa: ModuleType, tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file

    model = tiny_encoder()
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    path = tmp_path / f"clip_tiny{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, str(path))
    configs = tmp_path / "configs"
    (configs / "tiny").mkdir(parents=True)
    (configs / "tiny" / "config.json").write_text(json.dumps(ENCODER))
    shutil.copy(ipa.BUNDLED / "preprocessor_config.json", configs)
    loaded = ipa.load_encoder(path, configs)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).image_embeds, model(pixels).image_embeds)
    with pytest.raises(UserError, match="matches no bundled config"):
        ipa.load_encoder(path)


def test_the_encoder_is_chosen_by_width_and_kind(ipa: ModuleType, tmp_path: Path) -> None:
    unet = tiny(SD1).unet
    files = ipa.IPAdapterFiles()
    files.set_data_dir(tmp_path)
    adapter = ipa.read_adapter(save_adapter(tmp_path / "a.safetensors", adapter_state(unet)))
    with pytest.raises(UserError, match=r"needs a CLIP vision encoder \(width 24\); none found in .*clip_vision"):
        files.encoder_for(adapter, "ip-adapter_clip_h")
    write_encoder(tmp_path / "models" / "ControlNet" / "clip_vision" / "wide", projection_dim=40)
    write_encoder(tmp_path / "models" / "clip_vision" / "fits")
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(**ENCODER)).save_pretrained(str(tmp_path / "models" / "clip_vision" / "a_bare"))
    assert files.encoder_for(adapter, "ip-adapter-auto").path.name == "fits"
    plus = ipa.read_adapter(save_adapter(tmp_path / "p.safetensors", adapter_state(unet, width=32, plus=True)))
    assert plus.hidden_states and files.encoder_for(plus, "ip-adapter_clip_sdxl_plus_vith").path.name == "fits"
    vit_h = dataclasses.replace(adapter, encoder_width=1024)
    with pytest.raises(UserError, match="takes the ViT-H/14 image encoder: use the ip-adapter_clip_h preprocessor"):
        files.encoder_for(vit_h, "ip-adapter_clip_sdxl")
    with pytest.raises(UserError, match=r"\(ViT-H/14, e.g. clip_h.pth or CLIP-ViT-H-14"):
        files.encoder_for(vit_h, "ip-adapter_clip_h")


def test_wrong_files_are_refused_clearly(ipa: ModuleType, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    unet = tiny(SD1).unet
    save_file({"control_model.input_blocks.0.weight": torch.zeros(2)}, str(tmp_path / "cn.safetensors"))
    with pytest.raises(UserError, match="cn.safetensors is not an IP-Adapter file"):
        ipa.read_adapter(tmp_path / "cn.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="bad.safetensors cannot be read"):
        ipa.read_adapter(tmp_path / "bad.safetensors")
    face = {key: value for key, value in adapter_state(unet).items() if not key.startswith("image_proj")}
    face.update({"image_proj.proj.0.weight": torch.zeros(8, 4), "image_proj.norm.weight": torch.zeros(32)})
    with pytest.raises(UserError, match="is a FaceID model"):
        ipa.read_adapter(save_adapter(tmp_path / "faceid.bin", face))


@pytest.mark.slow
def test_an_adapter_for_the_other_family_is_a_clear_error(ipa: ModuleType, tmp_path: Path) -> None:
    attention = sys.modules["sdwebui_extensions.controlnet.cnlib.ip_attention"]
    adapter = ipa.read_adapter(save_adapter(tmp_path / "sd1.safetensors", adapter_state(tiny(SD1).unet)))
    with pytest.raises(UserError, match="for a UNet of cross-attention width 32; this checkpoint's is 64"):
        attention.build_adapter(adapter, tiny(SDXL).unet)


@pytest.mark.slow
def test_sdxl_unit_equals_diffusers_sdxl_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The extension's hooks around `generate()` on a tiny SDXL give the latents of diffusers' own IP-Adapter path."""
    from fastapi import FastAPI

    from modules.core.generate import generate
    from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
    from modules.extensions.loader import ExtensionRoot
    from modules.samplers.registry import default_registry
    from modules.types import GenerationRequest
    from tests.core.helpers import LatentCapture, reference_scheduler, sdxl_pipeline

    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], data_dir=tmp_path)
    host.load()
    components = tiny(SDXL)
    folder = tmp_path / "models" / "ControlNet"
    save_adapter(folder / "ip-adapter_xl.safetensors", adapter_state(components.unet, seed=4))
    write_encoder(tmp_path / "models" / "clip_vision" / "tiny_g", seed=5)
    host.hooks.app_started(FastAPI())  # the extension learns the models folders from the data directory
    picture = sample_image(40, 56, seed=3)
    request = GenerationRequest(prompt="a red cube", negative_prompt="blurry", seed=11, steps=4, width=64, height=64,
                                cfg_scale=6.0, sampler="Euler", extension_args={"controlnet": {"units": [
                                    {"enabled": True, "module": "ip-adapter_clip_sdxl", "model": "ip-adapter_xl",
                                     "weight": 0.7, "image": picture}]}})
    request = host.hooks.before_job(request, {})
    sampler = default_registry().resolve("Euler")
    capture = LatentCapture(monkeypatch)
    generate(request, components, sampler, unet_hooks=host.hooks.unet_hooks(request))
    ours = capture.last
    reference_set = dataclasses.replace(components, unet=copy.deepcopy(components.unet))
    pipeline: Any = sdxl_pipeline(reference_set, reference_scheduler(sampler, components))
    pipeline.load_ip_adapter(str(folder), subfolder="", weight_name="ip-adapter_xl.safetensors",
                             image_encoder_folder=str(tmp_path / "models" / "clip_vision" / "tiny_g"),
                             local_files_only=True)
    pipeline.set_ip_adapter_scale(0.7)
    reference = pipeline("a red cube", negative_prompt="blurry", ip_adapter_image=picture, height=64, width=64,
                         num_inference_steps=4, guidance_scale=6.0, generator=[torch.Generator().manual_seed(11)],
                         output_type="latent").images
    generate(GenerationRequest(prompt="a red cube", negative_prompt="blurry", seed=11, steps=4, width=64, height=64,
                               cfg_scale=6.0, sampler="Euler"), components, sampler)
    assert not torch.equal(ours, capture.last)  # the unit changed the latents
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
