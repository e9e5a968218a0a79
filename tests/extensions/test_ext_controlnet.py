"""ControlNet (built-in extension) over real HTTP with the A1111 extension's API shape, on a tiny SD 1.x model and a
tiny ControlNet made from its UNet (output convolutions not zero, so it has an effect): txt2img equals diffusers'
StableDiffusionControlNetPipeline on the same weights, seed and control image; weight 0 and a guidance window
that excludes every step give exactly the picture without ControlNet; the routes, the infotext and the errors."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.samplers.registry import default_registry
from tests.core.helpers import reference_scheduler, sample_image, write_tiny_checkpoint
from tests.extensions.helpers import b64_pixels, png_b64, served_app
from tests.extensions.helpers import tiny_controlnet as _tiny_controlnet

BASE = {"prompt": "a red cube", "negative_prompt": "blurry", "width": 64, "height": 64, "steps": 4,
        "sampler_name": "Euler", "scheduler": "Automatic", "cfg_scale": 6.0, "seed": 11}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client, Any]]:
    from safetensors.torch import save_file

    data = tmp_path_factory.mktemp("controlnet")
    write_tiny_checkpoint(data)
    app = build_app(LaunchOptions(data_dir=data, api=True))
    with app.models.get() as components:
        net = _tiny_controlnet(components.unet)
    folder = data / "models" / "ControlNet"
    folder.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(folder / "tinycn.safetensors"))
    net.save_pretrained(str(folder / "tinycn_folder"))
    with served_app(app) as client:
        yield app, client, net


def _txt2img(client: httpx.Client, units: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**BASE, **fields}
    if units is not None:
        body["alwayson_scripts"] = {"controlnet": {"args": units}}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _unit(**fields: Any) -> dict[str, Any]:
    return {"enabled": True, "module": "none", "model": "tinycn", "weight": 1.0,
            "image": png_b64(sample_image(64, 64, seed=5)), **fields}


def _reference(app: App, net: Any, control: Image.Image) -> np.ndarray:
    from diffusers import StableDiffusionControlNetPipeline

    with app.models.get() as components:
        scheduler = reference_scheduler(default_registry().resolve("Euler"), components)
        pipeline = StableDiffusionControlNetPipeline(
            vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
            unet=components.unet, controlnet=net, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        images = pipeline(BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=control, height=64, width=64,
                          num_inference_steps=4, guidance_scale=6.0,
                          generator=[torch.Generator().manual_seed(11)], output_type="np").images
    return (255.0 * images[0]).astype(np.uint8)  # A1111 truncates to uint8, as the app does


def test_txt2img_with_a_unit_equals_diffusers_controlnet_pipeline(served: Any) -> None:
    app, client, net = served
    result = _txt2img(client, [_unit()])
    plain = _txt2img(client)
    ours = b64_pixels(result["images"][0])
    assert not np.array_equal(ours, b64_pixels(plain["images"][0]))  # the unit changes the picture
    assert np.array_equal(ours, _reference(app, net, sample_image(64, 64, seed=5)))
    info = json.loads(result["info"])
    assert 'ControlNet 0: "Module: none, Model: tinycn [' in info["infotexts"][0]


def test_folder_layout_loads_the_same_network(served: Any) -> None:
    _, client, _ = served
    single = b64_pixels(_txt2img(client, [_unit()])["images"][0])
    folder = b64_pixels(_txt2img(client, [_unit(model="tinycn_folder")])["images"][0])
    assert np.array_equal(single, folder)


@pytest.mark.parametrize("unit", [{"weight": 0.0}, {"guidance_start": 1.0, "guidance_end": 1.0},
                                  {"enabled": False}])
def test_a_unit_that_never_acts_leaves_the_picture_exactly(served: Any, unit: dict[str, Any]) -> None:
    _, client, _ = served
    plain = b64_pixels(_txt2img(client)["images"][0])
    assert np.array_equal(b64_pixels(_txt2img(client, [_unit(**unit)])["images"][0]), plain)


def test_control_modes_and_invert_change_the_picture(served: Any) -> None:
    _, client, _ = served
    balanced = b64_pixels(_txt2img(client, [_unit()])["images"][0])
    for fields in ({"control_mode": 1}, {"control_mode": "ControlNet is more important"}, {"module": "invert"}):
        assert not np.array_equal(b64_pixels(_txt2img(client, [_unit(**fields)])["images"][0]), balanced), fields


def test_routes_answer_as_the_a1111_extension(served: Any) -> None:
    _, client, _ = served
    assert client.get("/controlnet/version").json() == {"version": 2}
    models = client.get("/controlnet/model_list").json()["model_list"]
    assert [title.split(" [")[0] for title in models] == ["tinycn", "tinycn_folder"]
    assert all(len(title.split(" [")[1]) == 9 for title in models)  # 8 hex digits and "]"
    modules = client.get("/controlnet/module_list").json()
    assert modules["module_list"][:6] == ["none", "invert", "canny", "threshold", "scribble_xdog", "tile_resample"]
    assert {"shuffle", "inpaint_only", "depth", "normal_map", "segmentation", "ip-adapter-auto", "ip-adapter_clip_h",
            "ip-adapter_clip_g"} <= set(modules["module_list"])
    assert modules["module_detail"]["canny"]["sliders"] == [
        {"name": "Preprocessor Resolution", "value": 512, "min": 64, "max": 2048, "step": 1.0},
        {"name": "Canny Low Threshold", "value": 100, "min": 1, "max": 255, "step": 1.0},
        {"name": "Canny High Threshold", "value": 200, "min": 1, "max": 255, "step": 1.0}]
    assert modules["module_detail"]["none"]["sliders"] == []
    assert modules["module_detail"]["tile_resample"]["sliders"][0] is None
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}


@pytest.mark.parametrize(("unit", "message"), [
    ({"model": "nothing-here"}, "ControlNet model 'nothing-here' not found in"),
    ({"module": "openpose_full"}, "preprocessor 'openpose_full' is not available"),
    ({"image": "not base64 at all!"}, "is not a picture"),
    ({"weight": 5}, "weight must be between 0.0 and 2.0"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "guidance_start (0.8) is after guidance_end (0.2)"),
    ({"control_mode": "Loud"}, "control_mode 'Loud' is not one of"),
])
def test_bad_units_are_4xx_with_a_clear_message(served: Any, unit: dict[str, Any], message: str) -> None:
    _, client, _ = served
    response = client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"controlnet": {"args": [
        _unit(**unit)]}}})
    assert 400 <= response.status_code < 500, response.text
    assert message in response.text


def test_img2img_without_a_unit_image_uses_the_init_image(served: Any) -> None:
    _, client, _ = served
    body = {**BASE, "init_images": [png_b64(sample_image(64, 64, seed=9))], "denoising_strength": 0.6}
    unit = _unit()
    del unit["image"]
    plain = client.post("/sdapi/v1/img2img", json=body)
    controlled = client.post("/sdapi/v1/img2img", json={**body, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert plain.status_code == 200 and controlled.status_code == 200, controlled.text
    assert not np.array_equal(b64_pixels(plain.json()["images"][0]), b64_pixels(controlled.json()["images"][0]))
    missing = client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert missing.status_code == 400 and "no control image" in missing.text


def test_resize_modes_and_the_guidance_window() -> None:
    from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
    from modules.extensions.loader import ExtensionRoot

    ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)]).load()
    import sys

    script = sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]
    wide = Image.new("RGB", (128, 64), "white")
    assert script.fit(wide, 64, 64, "Just Resize").size == (64, 64)
    cropped = np.asarray(script.fit(wide, 64, 64, "Crop and Resize"))
    assert cropped.min() == 255  # covers: no border
    filled = np.asarray(script.fit(wide, 64, 64, "Resize and Fill"))
    assert filled[0, 32].tolist() == [0, 0, 0] and filled[32, 32].tolist() == [255, 255, 255]  # fitted, black bars
    unit = script.ControlUnit(guidance_start=0.25, guidance_end=0.5)
    assert [unit.active_at(step, 8) for step in range(8)] == [False, False, True, True, True, False, False, False]


def test_sdxl_unit_equals_diffusers_sdxl_controlnet_pipeline(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process on a tiny SDXL: the extension's hooks around `generate()` give the latents of diffusers'
    StableDiffusionXLControlNetPipeline (the SDXL ControlNet takes the size/crop conditioning too)."""
    import sys

    from diffusers import StableDiffusionXLControlNetPipeline
    from safetensors.torch import save_file

    from modules.core.generate import generate
    from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
    from modules.extensions.loader import ExtensionRoot
    from modules.types import GenerationRequest
    from tests.core.helpers import SDXL, LatentCapture, sdxl_pipeline, tiny

    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], data_dir=tmp_path)
    host.load()
    components = tiny(SDXL)
    net = _tiny_controlnet(components.unet)
    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(folder / "xlcn.safetensors"))
    host.hooks.app_started(FastAPI())  # the extension learns the models folder from the data directory
    assert "sdwebui_extensions.controlnet.scripts.controlnet" in sys.modules
    control = sample_image(64, 64, seed=5)
    request = GenerationRequest(prompt=BASE["prompt"], negative_prompt=BASE["negative_prompt"], seed=11, steps=4,
                                width=64, height=64, cfg_scale=6.0, sampler="Euler",
                                extension_args={"controlnet": {"units": [
                                    {"enabled": True, "model": "xlcn", "image": control}]}})
    request = host.hooks.before_job(request, {})
    sampler = default_registry().resolve("Euler")
    capture = LatentCapture(monkeypatch)
    generate(request, components, sampler, unet_hooks=host.hooks.unet_hooks(request))
    pipeline = sdxl_pipeline(components, reference_scheduler(sampler, components), StableDiffusionXLControlNetPipeline,
                             controlnet=net)
    reference = pipeline(BASE["prompt"], negative_prompt=BASE["negative_prompt"], image=control, height=64, width=64,
                         num_inference_steps=4, guidance_scale=6.0, generator=[torch.Generator().manual_seed(11)],
                         output_type="latent").images
    torch.testing.assert_close(capture.last, reference, rtol=0, atol=1e-5)


def _edge_picture() -> Image.Image:
    array = np.zeros((64, 96, 3), np.uint8)
    array[:, 48:] = 255
    return Image.fromarray(array)


def test_detect_answers_as_the_a1111_extension(served: Any) -> None:
    _, client, _ = served
    body = {"controlnet_module": "threshold", "controlnet_input_images": [png_b64(_edge_picture())] * 2,
            "controlnet_processor_res": 128, "controlnet_threshold_a": 100}
    response = client.post("/controlnet/detect", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["info"] == "Success" and len(answer["images"]) == 2
    detected = b64_pixels(answer["images"][0])
    assert detected.shape == (128, 192, 3)  # the short side at the processor resolution
    assert detected[:, :90].max() == 0 and detected[:, 100:].min() == 255
    inverted = client.post("/controlnet/detect", json={"controlnet_module": "invert",
                                                         "controlnet_input_images": [png_b64(_edge_picture())]})
    assert np.array_equal(b64_pixels(inverted.json()["images"][0]), 255 - np.asarray(_edge_picture()))


def test_detect_canny_over_http(served: Any) -> None:
    pytest.importorskip("cv2")
    _, client, _ = served
    response = client.post("/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [png_b64(_edge_picture())],
        "controlnet_processor_res": 64, "controlnet_threshold_a": 100, "controlnet_threshold_b": 200})
    assert response.status_code == 200, response.text
    edges = b64_pixels(response.json()["images"][0])
    assert edges.shape == (64, 96, 3)
    columns = np.nonzero(edges[..., 0].any(axis=0))[0]
    assert len(columns) > 0 and set(columns) <= {46, 47, 48, 49}


def test_detect_refuses_unknown_modules_and_no_images(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, client, _ = served
    unknown = client.post("/controlnet/detect", json={"controlnet_module": "openpose_full",
                                                        "controlnet_input_images": [png_b64(_edge_picture())]})
    assert unknown.status_code == 422
    assert "'openpose_full' is not available; available: none, invert, canny, threshold" in unknown.text
    empty = client.post("/controlnet/detect", json={"controlnet_module": "none", "controlnet_input_images": []})
    assert empty.status_code == 422 and "no image selected" in empty.text
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # as without opencv-python-headless
    missing = client.post("/controlnet/detect", json={"controlnet_module": "canny",
                                                        "controlnet_input_images": [png_b64(_edge_picture())]})
    assert missing.status_code == 400 and "pip install opencv-python-headless" in missing.text
    refused = client.post("/sdapi/v1/txt2img", json={**BASE, "alwayson_scripts": {"controlnet": {"args": [
        _unit(module="canny")]}}})
    assert refused.status_code == 400 and "pip install opencv-python-headless" in refused.text


def test_a_canny_unit_changes_the_picture_and_writes_its_settings(served: Any) -> None:
    pytest.importorskip("cv2")
    _, client, _ = served
    plain = b64_pixels(_txt2img(client, [_unit()])["images"][0])
    result = _txt2img(client, [_unit(module="canny", threshold_a=50, threshold_b=150, processor_res=64)])
    assert not np.array_equal(b64_pixels(result["images"][0]), plain)
    infotext = json.loads(result["info"])["infotexts"][0]
    assert 'ControlNet 0: "Module: canny, Model: tinycn [' in infotext
    assert "Processor Res: 64, Threshold A: 50, Threshold B: 150" in infotext
