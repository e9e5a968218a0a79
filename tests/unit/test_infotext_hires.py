"""Hires-fix infotext keys: written as A1111 writes them, read back into the request fields."""

from __future__ import annotations

import pytest

from modules import infotext
from modules.types import GenerationRequest

HIRES = infotext.HiresLabels("Euler", "Automatic", "Latent")


def _text(request: GenerationRequest, hires: infotext.HiresLabels | None = HIRES) -> str:
    params = infotext.request_params(request, seed=request.seed, subseed=0, model_name="m", model_hash="abc",
                                     sampler_label="Euler", schedule_label="Automatic", hires=hires)
    return infotext.build(request.prompt, request.negative_prompt, params)


def test_keys_and_order_as_a1111_writes_them():
    request = GenerationRequest(prompt="cat", negative_prompt="dog", seed=1, sampler="Euler", enable_hr=True,
                                denoising_strength=0.55, hr_prompt="big cat", hr_sampler_name="DDIM",
                                hr_second_pass_steps=12)
    text = _text(request, infotext.HiresLabels("DDIM", "DDIM", "Latent (bicubic)"))
    line = text.splitlines()[-1]
    assert line.endswith("Model: m, Denoising strength: 0.55, Hires sampler: DDIM, Hires schedule type: DDIM, "
                         "Hires prompt: big cat, Hires upscale: 2, Hires steps: 12, Hires upscaler: Latent (bicubic)")


def test_hires_checkpoint_comes_first_and_reads_back():
    request = GenerationRequest(prompt="cat", seed=1, sampler="Euler", enable_hr=True, hr_sampler_name="DDIM",
                                hr_checkpoint_name="other.safetensors [0123456789]")
    text = _text(request, infotext.HiresLabels("DDIM", "Automatic", "Latent", "other [0123456789]"))
    assert "Denoising strength: 0.75, Hires checkpoint: other [0123456789], Hires sampler: DDIM, " in text
    back = infotext.apply_to_request(infotext.parse(text), GenerationRequest())
    assert back.hr_checkpoint_name == "other [0123456789]"
    plain = infotext.apply_to_request(infotext.parse(_text(request)), GenerationRequest(hr_checkpoint_name="x"))
    assert plain.hr_checkpoint_name == ""  # no key: the first pass's checkpoint


def test_defaults_are_left_out_and_resize_replaces_upscale():
    request = GenerationRequest(prompt="cat", negative_prompt="dog", seed=1, enable_hr=True, hr_prompt="cat",
                                hr_resize_x=1024, hr_resize_y=0)
    line = _text(request).splitlines()[-1]
    assert line.endswith("Denoising strength: 0.75, Hires resize: 1024x0, Hires upscaler: Latent")
    assert "Hires upscale:" not in line and "Hires prompt" not in line and "Hires steps" not in line


def test_no_hires_keys_without_hires():
    assert "Hires" not in _text(GenerationRequest(prompt="cat", seed=1), None)
    assert "Denoising strength" not in _text(GenerationRequest(prompt="cat", seed=1), None)


@pytest.mark.parametrize("fields", [
    {"hr_scale": 1.5, "hr_upscaler": "Lanczos"},
    {"hr_resize_x": 1024, "hr_resize_y": 768, "hr_second_pass_steps": 7, "hr_upscaler": "Latent (nearest)"},
    {"hr_prompt": "a, b: c", "hr_negative_prompt": "ugly", "hr_sampler_name": "DDIM", "hr_scheduler": "Karras"},
])
def test_round_trip_build_parse_request(fields):
    request = GenerationRequest(prompt="cat", negative_prompt="dog", seed=1, sampler="Euler", enable_hr=True,
                                denoising_strength=0.4, **fields)
    labels = infotext.HiresLabels(request.hr_sampler_name or "Euler", request.hr_scheduler or "Automatic",
                                  request.hr_upscaler)
    parsed = infotext.parse(_text(request, labels))
    back = infotext.apply_to_request(parsed, GenerationRequest(hr_prompt="old"))  # resize: the scale stays
    names = ["enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_upscaler", "hr_second_pass_steps",
             "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt", "denoising_strength"]
    assert {name: getattr(back, name) for name in names} == {name: getattr(request, name) for name in names}


def test_an_infotext_without_hires_turns_it_off():
    parsed = infotext.parse("cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512")
    back = infotext.apply_to_request(parsed, GenerationRequest(enable_hr=True, hr_prompt="x"))
    assert not back.enable_hr and back.hr_prompt == ""
