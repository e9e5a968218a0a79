"""Hires. fix through the core on the tiny SD1 model: equal to txt2img -> upscale -> img2img composed by hand from
the core's public steps; target sizes, the second pass's steps, sampler and prompts; batches and progress."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from PIL import Image

import modules.core.vae as vae_module
from modules.cancel import CancelToken
from modules.core.generate import generate
from modules.core.latents import encode_images, pil_to_tensor
from modules.errors import InvalidRequest
from modules.models.tiny import build_tiny_components
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest, ProgressEvent
from tests.core.helpers import SD1, SD1_INPAINT, SDXL, SDXL_REFINER, LatentCapture, tiny

REGISTRY = default_registry()
EULER = REGISTRY.resolve("Euler")
PROMPT, NEGATIVE = "a red cube", "blurry"


def _hires(**fields) -> GenerationRequest:
    values = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": 3, "steps": 3, "width": 64, "height": 64,
              "enable_hr": True, "denoising_strength": 0.6, **fields}
    return GenerationRequest(**values)


def _img2img_by_hand(request: GenerationRequest, init: Image.Image, **fields) -> GenerationRequest:
    values = {"mode": "img2img", "init_image": init, "width": init.width, "height": init.height,
              "enable_hr": False, "steps": request.hr_second_pass_steps or request.steps, **fields}
    return request.with_changes(**values)


def _first_pass(request: GenerationRequest, monkeypatch) -> tuple[Image.Image, torch.Tensor]:
    with monkeypatch.context() as patch:
        capture = LatentCapture(patch)
        output = generate(request.with_changes(enable_hr=False), tiny(SD1), EULER)
    return output.images[0], capture.last


def _same(a: Image.Image, b: Image.Image) -> None:
    assert a.size == b.size
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
@pytest.mark.parametrize("name, mode, antialias", [("Latent", "bilinear", False),
                                                   ("latent (bicubic antialiased)", "bicubic", True),
                                                   ("Latent (nearest-exact)", "nearest-exact", False)])
def test_latent_upscaler_equals_txt2img_resize_latents_img2img(monkeypatch, name, mode, antialias):
    request = _hires(hr_upscaler=name)
    _, latents = _first_pass(request, monkeypatch)
    upscaled = torch.nn.functional.interpolate(latents, size=(16, 16), mode=mode, antialias=antialias)
    # img2img through the core, with the VAE encode of its init image replaced by the upscaled latents
    monkeypatch.setattr(vae_module, "encode_images", lambda *args: upscaled)
    by_hand = generate(_img2img_by_hand(request, Image.new("RGB", (128, 128))), tiny(SD1), EULER)
    monkeypatch.undo()
    _same(generate(request, tiny(SD1), EULER).images[0], by_hand.images[0])


@pytest.mark.slow
def test_lanczos_equals_txt2img_decode_upscale_encode_img2img(monkeypatch):
    request = _hires(hr_upscaler="Lanczos")
    first, _ = _first_pass(request, monkeypatch)
    upscaled = first.resize((128, 128), resample=Image.Resampling.LANCZOS)
    by_hand = generate(_img2img_by_hand(request, upscaled), tiny(SD1), EULER)
    _same(generate(request, tiny(SD1), EULER).images[0], by_hand.images[0])


@pytest.mark.slow
def test_hires_sampler_and_prompts_reach_the_second_pass(monkeypatch):
    ddim = REGISTRY.resolve("DDIM")
    request = _hires(hr_upscaler="Nearest", hr_prompt="a blue ball", hr_negative_prompt="dark",
                     hr_sampler_name="DDIM", hr_second_pass_steps=4)
    first, _ = _first_pass(request, monkeypatch)
    upscaled = first.resize((128, 128), resample=Image.Resampling.NEAREST)
    by_hand = generate(_img2img_by_hand(request, upscaled, prompt="a blue ball", negative_prompt="dark"),
                       tiny(SD1), ddim)
    _same(generate(request, tiny(SD1), EULER, hires_sampler=ddim).images[0], by_hand.images[0])


@pytest.mark.slow
def test_second_pass_steps_follow_the_a1111_step_rule():
    timesteps: list[int] = []
    request = _hires(hr_second_pass_steps=10, denoising_strength=0.5)
    generate(request, tiny(SD1), EULER, hooks=[lambda ctx: timesteps.append(int(ctx.timestep))])
    first = EULER.build(tiny(SD1).scheduler_config, 3, "cpu").timesteps
    second = EULER.build(tiny(SD1).scheduler_config, 10, "cpu").timesteps[4:]  # t_enc 5: the last 6 steps
    assert timesteps == [int(t) for t in first] + [int(t) for t in second]


@pytest.mark.slow
@pytest.mark.parametrize("fields, size", [
    ({"hr_scale": 2}, (128, 128)),
    ({"hr_scale": 1.5, "width": 64, "height": 128}, (96, 192)),
    ({"hr_resize_x": 128}, (128, 128)),
    ({"hr_resize_y": 128, "width": 128}, (256, 128)),
    ({"hr_resize_x": 96, "hr_resize_y": 128}, (96, 128)),  # cover 128x128, crop to 96 wide
    ({"hr_resize_x": 128, "hr_resize_y": 64}, (128, 64)),
])
def test_output_has_the_target_size(fields, size):
    request = _hires(steps=1, hr_upscaler="Latent (nearest)", **fields)
    assert generate(request, tiny(SD1), EULER).images[0].size == size


@pytest.mark.slow
def test_batches_use_seed_plus_i_in_both_passes_and_progress_counts_both_passes():
    events: list[ProgressEvent] = []
    request = _hires(steps=2, batch_size=2, n_iter=2)
    output = generate(request, tiny(SD1), EULER, on_progress=events.append)
    assert output.seeds == (3, 4, 5, 6) and [image.size for image in output.images] == [(128, 128)] * 4
    single = generate(_hires(steps=2, seed=5), tiny(SD1), EULER)
    difference = np.abs(np.asarray(output.images[2], dtype=int) - np.asarray(single.images[0], dtype=int))
    assert difference.max() <= 2  # the UNet batch may change the last float bits, never the picture
    assert sorted({(e.job_no, e.job_count, e.total_steps) for e in events}) == [
        (0, 4, 2), (1, 4, 2), (2, 4, 2), (3, 4, 2)]


@pytest.mark.slow
def test_interrupt_in_the_first_pass_returns_the_first_pass_picture():
    cancel = CancelToken()

    def stop_after_first_step(event: ProgressEvent) -> None:
        cancel.interrupt()

    output = generate(_hires(), tiny(SD1), EULER, cancel=cancel, on_progress=stop_after_first_step)
    assert output.interrupted and [image.size for image in output.images] == [(64, 64)]


@pytest.mark.slow
def test_strength_zero_returns_the_upscaled_picture(monkeypatch):
    request = _hires(hr_upscaler="Lanczos", denoising_strength=0.0)
    first, _ = _first_pass(request, monkeypatch)
    output = generate(request, tiny(SD1), EULER).images[0]
    _same(output, first.resize((128, 128), resample=Image.Resampling.LANCZOS))


@pytest.mark.parametrize("fields, message", [
    ({"hr_upscaler": "4x_foolhardy_Remacri"}, "models/ESRGAN"),
    ({"hr_scale": 100.0}, "hires fix target"),
    ({"hr_second_pass_steps": -1}, "hr_second_pass_steps"),
    ({"hr_resize_x": -8}, "hr_resize_x"),
])
def test_bad_hires_fields_are_refused(fields, message):
    with pytest.raises(InvalidRequest, match=message):
        generate(_hires(**fields), tiny(SD1), EULER)


@pytest.mark.slow
def test_hires_fields_do_nothing_without_enable_hr():
    plain = generate(_hires(enable_hr=False, steps=1), tiny(SD1), EULER)
    assert plain.images[0].size == (64, 64) and plain.plan.hires is None


@pytest.mark.slow
@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_inpainting_models_run_hires_fix(upscaler):
    request = _hires(steps=2, hr_upscaler=upscaler, hr_resize_x=128, hr_resize_y=96)
    assert generate(request, tiny(SD1_INPAINT), EULER).images[0].size == (128, 96)


@pytest.mark.slow
def test_the_picture_before_the_second_pass_is_kept_when_asked(monkeypatch):
    request = _hires(hr_upscaler="Latent", batch_size=2)
    assert generate(request, tiny(SD1), EULER).first_pass_images == ()
    kept = generate(request.with_changes(overrides={"save_images_before_highres_fix": True}), tiny(SD1), EULER)
    assert [image.size for image in kept.first_pass_images] == [(64, 64), (64, 64)]
    first, _ = _first_pass(request.with_changes(batch_size=1), monkeypatch)
    difference = np.abs(np.asarray(kept.first_pass_images[0], dtype=int) - np.asarray(first, dtype=int))
    assert difference.max() <= 2  # the same first pass (alone instead of in a batch of two)


@pytest.mark.slow
def test_the_refiner_runs_in_the_second_pass_only():
    calls: list[tuple[int, bool]] = []

    def record(step, inputs, call_next):
        calls.append((step.step, step.unet is tiny(SDXL_REFINER).unet))
        return call_next(inputs)

    request = _hires(steps=4, hr_upscaler="Lanczos", denoising_strength=0.9, refiner_checkpoint="refiner",
                     refiner_switch_at=0.5, cfg_scale=1.0)
    output = generate(request, tiny(SDXL), EULER, refiner=tiny(SDXL_REFINER), unet_hooks=[record])
    assert output.images[0].size == (128, 128)
    assert [refined for _, refined in calls] == [False] * 4 + [False, False, True, True]


@lru_cache(maxsize=None)
def _other_sd1():
    """A second SD1 checkpoint (other weights) for `hr_checkpoint_name`."""
    return build_tiny_components(SD1, seed=7)


@pytest.mark.slow
def test_hires_checkpoint_runs_the_second_pass_with_its_model(monkeypatch):
    request = _hires(hr_upscaler="Lanczos")
    first, _ = _first_pass(request, monkeypatch)  # the first pass on the base model
    upscaled = first.resize((128, 128), resample=Image.Resampling.LANCZOS)
    by_hand = generate(_img2img_by_hand(request, upscaled), _other_sd1(), EULER)
    output = generate(request, tiny(SD1), EULER, hires_components=_other_sd1())
    _same(output.images[0], by_hand.images[0])
    assert not np.array_equal(np.asarray(output.images[0]),
                              np.asarray(generate(request, tiny(SD1), EULER).images[0]))


@pytest.mark.slow
def test_hires_checkpoint_takes_the_first_pass_latents_with_a_latent_upscaler(monkeypatch):
    request = _hires(hr_upscaler="Latent")
    _, latents = _first_pass(request, monkeypatch)
    upscaled = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear")
    monkeypatch.setattr(vae_module, "encode_images", lambda *args: upscaled)
    by_hand = generate(_img2img_by_hand(request, Image.new("RGB", (128, 128))), _other_sd1(), EULER)
    monkeypatch.undo()
    _same(generate(request, tiny(SD1), EULER, hires_components=_other_sd1()).images[0], by_hand.images[0])


def test_a_hires_checkpoint_of_another_latent_space_needs_an_image_upscaler():
    with pytest.raises(InvalidRequest, match="different latent space.*image upscaler"):
        generate(_hires(hr_upscaler="Latent"), tiny(SD1), EULER, hires_components=tiny(SDXL))


@pytest.mark.slow
def test_a_given_first_pass_picture_with_an_image_upscaler_equals_the_whole_job(monkeypatch):
    """A1111's `firstpass_image` ("Upscale" on a finished picture): given the first pass's picture, the result is
    the whole job's; only the second pass samples, and progress counts one pass."""
    request = _hires(hr_upscaler="Lanczos", steps=4)
    first, _ = _first_pass(request, monkeypatch)
    events: list[ProgressEvent] = []
    steps: list[int] = []
    given = generate(request.with_changes(firstpass_image=first), tiny(SD1), EULER, on_progress=events.append,
                     hooks=[lambda ctx: steps.append(ctx.step)])
    _same(given.images[0], generate(request, tiny(SD1), EULER).images[0])
    assert len(steps) == 3  # the second pass only: A1111's img2img steps for 4 steps at strength 0.6
    assert {(event.job_no, event.job_count) for event in events} == {(0, 1)}


@pytest.mark.slow
def test_a_given_first_pass_picture_with_a_latent_upscaler_is_encoded_then_resized(monkeypatch):
    request = _hires(hr_upscaler="Latent", batch_size=2)
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    components = tiny(SD1)
    encoded = encode_images(components.vae, pil_to_tensor([picture]),
                                            components.vae_dtype)
    upscaled = torch.nn.functional.interpolate(encoded, size=(16, 16), mode="bilinear")
    output = generate(request.with_changes(firstpass_image=picture), components, EULER)
    monkeypatch.setattr(vae_module, "encode_images", lambda *args: upscaled)
    by_hand = generate(_img2img_by_hand(request, Image.new("RGB", (128, 128))), components, EULER)
    assert len(output.images) == 2 and output.seeds == (3, 4)
    for ours, reference in zip(output.images, by_hand.images, strict=True):
        _same(ours, reference)


def test_a_latent_upscaler_needs_a_first_pass_picture_of_whole_latents():
    with pytest.raises(InvalidRequest, match="multiples of 8"):
        generate(_hires(firstpass_image=Image.new("RGB", (60, 64))), tiny(SD1), EULER)
