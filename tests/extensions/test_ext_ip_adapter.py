"""IP-Adapter units of the ControlNet extension, over real HTTP on a tiny SD 1.x model with a tiny CLIP vision
encoder and IP-Adapter files in the released layout (random weights): txt2img equals diffusers' StableDiffusionPipeline
with `load_ip_adapter` (local folder, local_files_only), `ip_adapter_image` and `set_ip_adapter_scale`, for the plain
and the "plus" adapter, from .safetensors and .bin; weight 0 and an empty guidance window give exactly the plain
picture; the UNet is left as it was (the next job equals one before); a missing encoder and wrong files are 4xx
errors naming the folder; the routes list the IP-Adapter preprocessors."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.samplers.registry import default_registry
from tests.core.helpers import reference_scheduler, sample_image, write_tiny_checkpoint
from tests.extensions.helpers import b64_pixels, png_b64, served_app
from tests.extensions.ip_adapter_helpers import ENCODER, adapter_state, save_adapter, tiny_controlnet, write_encoder

pytestmark = pytest.mark.slow

BASE = {"prompt": "a red cube", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 4,
        "sampler_name": "Euler", "scheduler": "Automatic", "cfg_scale": 6.0, "seed": 11}
PICTURE = sample_image(48, 40, seed=7)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client, Path]]:
    data = tmp_path_factory.mktemp("ipadapter")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with app.models.get() as components:
        unet = components.unet
        folder = data / "models" / "ControlNet"
        save_adapter(folder / "ip-adapter_tiny.safetensors", adapter_state(unet))
        save_adapter(folder / "ip-adapter_tiny_bin.bin", adapter_state(unet))
        save_adapter(folder / "ip-adapter-plus_tiny.safetensors",
                     adapter_state(unet, width=ENCODER["hidden_size"], plus=True, tokens=6, seed=2))
        save_adapter(folder / "ip-adapter_wide.safetensors", adapter_state(unet, width=40))  # no encoder has 40
        net = tiny_controlnet(unet)
    net.save_pretrained(str(folder / "tinycn"))
    write_encoder(data / "models" / "clip_vision" / "tiny_clip")
    with served_app(app) as client:
        yield app, client, data


def _unit(**fields: Any) -> dict[str, Any]:
    return {"enabled": True, "module": "ip-adapter_clip_sd15", "model": "ip-adapter_tiny", "weight": 0.8,
            "image": png_b64(PICTURE), **fields}


def _txt2img(client: httpx.Client, units: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = dict(BASE)
    if units is not None:
        body["alwayson_scripts"] = {"controlnet": {"args": units}}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _reference(app: App, data: Path, weight_name: str | list[str], scale: float | list[float],
               pictures: Any = PICTURE, control: Image.Image | None = None) -> np.ndarray:
    """diffusers' own IP-Adapter path on a copy of the app's UNet (load_ip_adapter changes the UNet it gets), with
    the ControlNet of `models/ControlNet/tinycn` when a control image is given."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    with app.models.get() as components:
        scheduler = reference_scheduler(default_registry().resolve("Euler"), components)
        parts = dict(vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
                     unet=copy.deepcopy(components.unet), scheduler=scheduler, safety_checker=None,
                     feature_extractor=None, image_encoder=None, requires_safety_checker=False)
        extra: dict[str, Any] = {}
        if control is None:
            pipeline = StableDiffusionPipeline(**parts)
        else:
            net = ControlNetModel.from_pretrained(str(data / "models" / "ControlNet" / "tinycn"), local_files_only=True)
            pipeline, extra = StableDiffusionControlNetPipeline(**parts, controlnet=net), {"image": control}
        pipeline.set_progress_bar_config(disable=True)
        subfolder = [""] * len(weight_name) if isinstance(weight_name, list) else ""
        pipeline.load_ip_adapter(str(data / "models" / "ControlNet"), subfolder=subfolder, weight_name=weight_name,
                                 image_encoder_folder=str(data / "models" / "clip_vision" / "tiny_clip"),
                                 local_files_only=True)
        pipeline.set_ip_adapter_scale(scale)
        images = pipeline(BASE["prompt"], negative_prompt=BASE["negative_prompt"], ip_adapter_image=pictures,
                          height=64, width=64, num_inference_steps=4, guidance_scale=6.0,
                          generator=[torch.Generator().manual_seed(11)], output_type="np", **extra).images
    return (255.0 * images[0]).astype(np.uint8)  # A1111 truncates to uint8, as the app does


@pytest.mark.parametrize(("model", "module", "weight_name"), [
    ("ip-adapter_tiny", "ip-adapter_clip_sd15", "ip-adapter_tiny.safetensors"),
    ("ip-adapter_tiny_bin", "ip-adapter_clip_h", "ip-adapter_tiny_bin.bin"),
    ("ip-adapter-plus_tiny", "ip-adapter-auto", "ip-adapter-plus_tiny.safetensors"),
])
def test_txt2img_with_an_ip_adapter_unit_equals_diffusers(served: Any, model: str, module: str,
                                                          weight_name: str) -> None:
    app, client, data = served
    result = _txt2img(client, [_unit(model=model, module=module)])
    ours = b64_pixels(result["images"][0])
    assert not np.array_equal(ours, b64_pixels(_txt2img(client)["images"][0]))  # the unit changes the picture
    assert np.array_equal(ours, _reference(app, data, weight_name, 0.8))
    info = json.loads(result["info"])["infotexts"][0]
    canonical = "ip-adapter-auto" if module == "ip-adapter-auto" else "ip-adapter_clip_h"
    assert f'ControlNet 0: "Module: {canonical}, Model: {model} [' in info


def test_two_units_equal_diffusers_with_two_adapters(served: Any) -> None:
    app, client, data = served
    other = sample_image(64, 64, seed=8)
    result = _txt2img(client, [_unit(), _unit(model="ip-adapter-plus_tiny", weight=0.5, image=png_b64(other))])
    expected = _reference(app, data, ["ip-adapter_tiny.safetensors", "ip-adapter-plus_tiny.safetensors"],
                          [0.8, 0.5], [PICTURE, other])
    assert np.array_equal(b64_pixels(result["images"][0]), expected)


def test_with_a_controlnet_unit_equals_diffusers_controlnet_pipeline(served: Any) -> None:
    app, client, data = served
    control = sample_image(64, 64, seed=5)
    units = [{"enabled": True, "module": "none", "model": "tinycn", "image": png_b64(control)}, _unit()]
    result = _txt2img(client, units)
    assert np.array_equal(b64_pixels(result["images"][0]),
                          _reference(app, data, "ip-adapter_tiny.safetensors", 0.8, control=control))


def test_a_unit_that_never_acts_and_the_next_job_leave_the_picture_exactly(served: Any) -> None:
    app, client, _ = served
    with app.models.get() as components:
        processors = {name: type(p) for name, p in components.unet.attn_processors.items()}
        hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in components.unet.modules())
    before = b64_pixels(_txt2img(client)["images"][0])
    for unit in ({"weight": 0.0}, {"guidance_start": 1.0, "guidance_end": 1.0}, {"enabled": False}):
        assert np.array_equal(b64_pixels(_txt2img(client, [_unit(**unit)])["images"][0]), before), unit
    _txt2img(client, [_unit()])
    assert np.array_equal(b64_pixels(_txt2img(client)["images"][0]), before)  # nothing of the unit stays behind
    with app.models.get() as components:
        assert {name: type(p) for name, p in components.unet.attn_processors.items()} == processors
        assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in components.unet.modules()) == hooks


def test_the_guidance_window_switches_it_on_and_off(served: Any) -> None:
    _, client, _ = served
    full = b64_pixels(_txt2img(client, [_unit()])["images"][0])
    plain = b64_pixels(_txt2img(client)["images"][0])
    half = b64_pixels(_txt2img(client, [_unit(guidance_start=0.5)])["images"][0])
    assert not np.array_equal(half, full) and not np.array_equal(half, plain)


def test_missing_encoder_and_wrong_files_are_4xx_naming_the_folder(served: Any) -> None:
    _, client, data = served
    cases = [
        ({"model": "ip-adapter_wide"}, f"needs a CLIP vision encoder (width 40); none found in "
                                       f"{data / 'models' / 'clip_vision'}"),
        ({"model": "nothing"}, "ControlNet model 'nothing' not found"),
        ({"module": "ip-adapter_clip_g", "model": "ip-adapter_tiny"}, None),  # tiny widths: no kind to check
    ]
    for unit, message in cases:
        response = client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"controlnet": {"args": [
            _unit(**unit)]}}})
        if message is None:
            assert response.status_code == 200, response.text
            continue
        assert 400 <= response.status_code < 500, response.text
        assert message in response.text


def test_routes_list_the_ip_adapter_preprocessors(served: Any) -> None:
    _, client, _ = served
    modules = client.get("/controlnet/module_list").json()
    assert modules["module_list"][-3:] == ["ip-adapter-auto", "ip-adapter_clip_h", "ip-adapter_clip_g"]
    assert modules["module_detail"]["ip-adapter_clip_h"] == {"model_free": False, "sliders": []}
    models = [title.split(" [")[0] for title in client.get("/controlnet/model_list").json()["model_list"]]
    assert "ip-adapter_tiny" in models and "ip-adapter-plus_tiny" in models
    detected = client.post("/controlnet/detect", json={"controlnet_module": "ip-adapter_clip_sdxl",
                                                       "controlnet_input_images": [png_b64(PICTURE)]})
    assert detected.status_code == 200, detected.text
    assert Image.open(io.BytesIO(base64.b64decode(detected.json()["images"][0]))).size == (224, 224)
