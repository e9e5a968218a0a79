"""ControlNet in every mode, in process on the tiny SD 1.x model and the tiny ControlNet made from its UNet:
img2img and inpaint (4-channel UNet, an `inpaint_only` unit on the img2img image and mask) equal diffusers'
StableDiffusionControlNetImg2ImgPipeline / StableDiffusionControlNetInpaintPipeline running the same tail of the
schedule (A1111's step rule: 5 steps at 0.6 run 4, diffusers' strength 0.8); hires fix's second pass gets the
residuals, with the control image at the hires size; inpaint_only's final blend (A1111's extension) keeps the
control image outside the grown and blurred mask, and leaves an img2img inpaint to the core's paste-back."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from modules.core.generate import generate
from modules.core.latents import encode_images, pil_to_tensor
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest, InpaintFill
from tests.core.helpers import SD1, LatentCapture, block_mask, generators, reference_scheduler, sample_image, tiny
from tests.extensions.helpers import run_with_host, tiny_controlnet

pytestmark = pytest.mark.slow  # each test runs generations with a ControlNet beside the UNet

EULER = default_registry().resolve("Euler")
PROMPT, NEGATIVE = "a red cube", "blurry"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExtensionHost, Any]]:
    from safetensors.torch import save_file

    data = tmp_path_factory.mktemp("cn_modes")
    host = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], data_dir=data)
    host.load()
    net = tiny_controlnet(tiny(SD1).unet)
    folder = data / "models" / "ControlNet"
    folder.mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in net.state_dict().items()}, str(folder / "tinycn.safetensors"))
    host.hooks.app_started(FastAPI())  # the extension learns the models folder
    yield host, net


def _script() -> Any:
    return sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]


def _request(units: list[dict[str, Any]], **fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 3, "steps": 5, "width": 64,
                              "height": 64, "cfg_scale": 7.0, "sampler": "Euler",
                              "extension_args": {"controlnet": {"units": units}}, **fields}
    return GenerationRequest(**values)


def _generate(host: ExtensionHost, request: GenerationRequest) -> Any:
    request = host.hooks.before_job(request, {})
    return generate(request, tiny(SD1), EULER, unet_hooks=host.hooks.unet_hooks(request))


def _pipeline(cls: Any, net: Any) -> Any:
    components = tiny(SD1)
    return cls(vae=components.vae, text_encoder=components.text_encoders[0], tokenizer=components.tokenizers[0],
               unet=components.unet, controlnet=net, scheduler=reference_scheduler(EULER, components),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _init_latents(picture: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return encode_images(tiny(SD1).vae, pil_to_tensor([picture]), torch.float32)


def test_img2img_unit_equals_diffusers_controlnet_img2img(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    extension_host, net = host
    init, control = sample_image(seed=9), sample_image(seed=5)
    capture = LatentCapture(monkeypatch)
    _generate(extension_host, _request([{"model": "tinycn", "image": control}], mode="img2img", init_image=init,
                                       denoising_strength=0.6))
    reference = _pipeline(StableDiffusionControlNetImg2ImgPipeline, net)(
        PROMPT, negative_prompt=NEGATIVE, image=_init_latents(init), control_image=control, strength=0.8,
        num_inference_steps=5, guidance_scale=7.0, controlnet_conditioning_scale=1.0, generator=generators([3]),
        output_type="latent").images
    torch.testing.assert_close(capture.last, reference, rtol=0, atol=1e-5)


def test_inpaint_unit_equals_diffusers_controlnet_inpaint(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An inpaint_only unit without an image takes the img2img image and mask: the hint is the picture with -1 in
    the mask, as the extension's inpaint ControlNet expects."""
    from diffusers import StableDiffusionControlNetInpaintPipeline

    extension_host, net = host
    init, mask = sample_image(seed=9), block_mask()
    capture = LatentCapture(monkeypatch)
    _generate(extension_host, _request([{"model": "tinycn", "module": "inpaint_only"}], mode="inpaint",
                                       init_image=init, mask=mask, mask_blur=0, denoising_strength=0.6,
                                       inpainting_fill=InpaintFill.ORIGINAL))
    hint = np.asarray(init, np.float32) / 255.0
    hint[np.asarray(mask) > 127] = -1.0
    pipeline = _pipeline(StableDiffusionControlNetInpaintPipeline, net)
    latents = _init_latents(init)  # the core's VAE encode of the init image, where the pipeline encodes its own
    monkeypatch.setattr(pipeline, "_encode_vae_image", lambda image, generator: latents)
    reference = pipeline(
        PROMPT, negative_prompt=NEGATIVE, image=init, mask_image=mask,
        control_image=torch.from_numpy(hint).permute(2, 0, 1)[None], strength=0.8, num_inference_steps=5,
        guidance_scale=7.0, controlnet_conditioning_scale=1.0, generator=generators([3]), output_type="latent").images
    torch.testing.assert_close(capture.last, reference, rtol=0, atol=1e-5)


def _hires(units: list[dict[str, Any]]) -> GenerationRequest:
    return _request(units, steps=2, enable_hr=True, hr_scale=2.0, denoising_strength=0.6)


def test_the_hires_pass_gets_residuals_from_a_control_image_at_its_size(host: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    extension_host, _ = host
    unet, script = tiny(SD1).unet, _script()
    calls: list[tuple[int, bool]] = []
    real_forward, real_tensor = unet.forward, script.control_tensor

    def forward(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append((sample.shape[-1] * 8, kwargs.get("down_block_additional_residuals") is not None))
        return real_forward(sample, *args, **kwargs)

    sizes: list[tuple[int, int]] = []
    monkeypatch.setattr(unet, "forward", forward)
    monkeypatch.setattr(script, "control_tensor", lambda unit, w, h, *rest: sizes.append((w, h))
                        or real_tensor(unit, w, h, *rest))
    _generate(extension_host, _hires([{"model": "tinycn", "image": sample_image(seed=5)}]))
    assert {size for size, _ in calls} == {64, 128} and all(residuals for _, residuals in calls)
    assert sum(size == 128 for size, _ in calls) == 2  # the second pass: int(0.6 * 2) + 1 steps, one call each
    assert set(sizes) == {(64, 64), (128, 128)}


def test_a_hires_job_with_weight_zero_equals_the_plain_hires_job(host: Any) -> None:
    extension_host, _ = host
    plain = _generate(extension_host, _hires([])).images[0]
    unit = {"model": "tinycn", "image": sample_image(seed=5)}
    still = _generate(extension_host, _hires([{**unit, "weight": 0.0}])).images[0]
    controlled = _generate(extension_host, _hires([unit])).images[0]
    assert plain.size == (128, 128) and np.array_equal(np.asarray(plain), np.asarray(still))
    assert not np.array_equal(np.asarray(plain), np.asarray(controlled))


def _a1111_blend(picture: Image.Image, control: Image.Image, mask: Image.Image, sigma: int) -> np.ndarray:
    """The extension's rule, with OpenCV as it runs it: the mask dilated by a sigma x sigma square, then box-blurred."""
    cv2 = pytest.importorskip("cv2")
    grown = cv2.dilate((np.asarray(mask) > 127).astype(np.float32), np.ones((sigma, sigma), np.uint8))
    weight = cv2.blur(grown, (sigma, sigma))[..., None].astype(np.float64)
    blended = weight * (np.asarray(picture, np.float64) / 255) + (1 - weight) * (np.asarray(control, np.float64) / 255)
    return np.round(blended.clip(0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("sigma", [7, 4])
def test_inpaint_only_blends_the_finished_txt2img_picture_as_a1111(host: Any, sigma: int) -> None:
    extension_host, _ = host
    control, mask = sample_image(seed=5), block_mask()
    units = [{"model": "tinycn", "module": "inpaint_only", "image": {"image": control, "mask": mask}}]
    request = _request(units, steps=3)
    raw = _generate(extension_host, request).images[0]
    prepared = extension_host.hooks.before_job(request, {})
    (finished,), _ = extension_host.hooks.after_images(prepared, [raw], ("",), [3],
                                                        {"control_net_inpaint_blur_sigma": sigma})
    result = np.asarray(finished)
    assert np.array_equal(result, _a1111_blend(raw, control, mask, sigma))
    far = np.ones((64, 64), bool)
    far[16 - sigma:40 + sigma, 16 - sigma:48 + sigma] = False  # beyond the grown, blurred mask
    assert np.array_equal(result[far], np.asarray(control)[far])
    assert np.array_equal(result[20:36, 20:44], np.asarray(raw)[20:36, 20:44])  # deep inside: the generated pixels
    if sigma == 7:  # A1111's default, what a job without the setting uses
        job = run_with_host(extension_host, request).images[0]
        assert np.array_equal(np.asarray(job)[far], np.asarray(control)[far])


def test_an_img2img_inpaint_is_left_to_the_cores_paste_back(host: Any) -> None:
    """A1111's extension turns inpaint_only into its plain inpaint when img2img has its own mask: no second blend;
    the core's paste-back brings the unmasked pixels back."""
    extension_host, _ = host
    init, mask = sample_image(seed=9), block_mask()
    request = _request([{"model": "tinycn", "module": "inpaint_only"}], mode="inpaint", init_image=init, mask=mask,
                       mask_blur=0, denoising_strength=0.6, steps=3)
    raw = _generate(extension_host, request).images[0]
    finished = run_with_host(extension_host, request).images[0]
    assert np.array_equal(np.asarray(finished), np.asarray(raw))
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(finished)[outside], np.asarray(init)[outside])
    assert not np.array_equal(np.asarray(finished)[~outside], np.asarray(init)[~outside])


def test_the_blend_rule_matches_opencv_for_odd_and_even_sizes() -> None:
    cv2 = pytest.importorskip("cv2")
    ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)]).load()
    blend = sys.modules["sdwebui_extensions.controlnet.cnlib.control_image"]
    mask = (np.random.default_rng(0).random((23, 31)) > 0.9).astype(np.float32)
    for size in (1, 4, 7):
        ones = np.ones((size, size), np.uint8)
        np.testing.assert_allclose(blend._dilate(mask, size), cv2.dilate(mask, ones), atol=0)
        np.testing.assert_allclose(blend._box_blur(mask, size), cv2.blur(mask, (size, size)), atol=1e-6)
