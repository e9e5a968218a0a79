"""Binder round trips (named widget values <-> GenerationRequest), infotext paste values and pure UI helpers."""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from modules.errors import InvalidRequest
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest, InpaintFill, ResizeMode
from modules.ui import bind
from modules.ui.img2img import SOURCE_IMG2IMG, SOURCE_INPAINT, SOURCE_INPAINT_UPLOAD, img2img_request, mask_from_editor
from modules.ui.paste import values_from_infotext
from modules.ui.tokens import TokenCounter, count_chunked

WIDGET_VALUES = {
    "prompt": "a red fox", "negative_prompt": "blurry", "styles": ["film"], "sampler": "Euler a",
    "schedule": "Karras", "steps": 28, "width": 640, "height": 448, "batch_count": 3, "batch_size": 2,
    "cfg_scale": 6.5, "seed": 42, "seed_extra": True, "subseed": 7, "subseed_strength": 0.25,
    "seed_resize_from_w": 512, "seed_resize_from_h": 384, "checkpoint": "tiny.safetensors", "vae": "None",
    "clip_skip": 2, "denoising_strength": 0.6, "resize_mode": "Crop and resize", "mask_blur": 8,
    "mask_mode": "Inpaint not masked", "inpainting_fill": "latent noise", "inpaint_area": "Only masked",
    "inpaint_padding": 48, "enable_hr": True, "hr_upscaler": "Lanczos", "hr_second_pass_steps": 9, "hr_scale": 1.5,
    "hr_resize_x": 0, "hr_resize_y": 768, "hr_sampler": "DDIM", "hr_scheduler": "Use same scheduler",
    "hr_prompt": "sharp", "hr_negative_prompt": "", "hr_checkpoint": "Use same checkpoint",
    "override_settings": ["RNG: NV", "ENSD: 31337"],
}


def test_every_binding_names_a_request_field() -> None:
    fields = {f.name for f in dataclasses.fields(GenerationRequest)}
    assert {b.field for b in bind.BINDINGS} <= fields
    assert set(WIDGET_VALUES) == set(bind.BOUND_NAMES)


def test_values_to_request_fields() -> None:
    request = bind.request_from_values(WIDGET_VALUES, GenerationRequest(mode="img2img"))
    assert request.mode == "img2img"
    assert (request.prompt, request.negative_prompt, request.styles) == ("a red fox", "blurry", ("film",))
    assert (request.sampler, request.schedule, request.steps, request.cfg_scale) == ("Euler a", "Karras", 28, 6.5)
    assert (request.width, request.height, request.n_iter, request.batch_size) == (640, 448, 3, 2)
    assert (request.seed, request.subseed, request.subseed_strength) == (42, 7, 0.25)
    assert (request.seed_resize_from_w, request.seed_resize_from_h) == (512, 384)
    assert (request.checkpoint, request.vae, request.clip_skip) == ("tiny.safetensors", "None", 2)
    assert request.resize_mode is ResizeMode.CROP_AND_RESIZE
    assert request.inpainting_fill is InpaintFill.LATENT_NOISE
    assert request.invert_mask is True and request.inpaint_full_res is True
    assert (request.mask_blur, request.inpaint_full_res_padding, request.denoising_strength) == (8, 48, 0.6)


def test_round_trip_values_request_values() -> None:
    request = bind.request_from_values(WIDGET_VALUES, GenerationRequest())
    assert bind.values_from_request(request, WIDGET_VALUES) == WIDGET_VALUES


def test_extra_seed_checkbox_off_neutralises_variation_fields() -> None:
    request = bind.request_from_values({**WIDGET_VALUES, "seed_extra": False}, GenerationRequest())
    assert (request.subseed, request.subseed_strength) == (-1, 0.0)
    assert (request.seed_resize_from_w, request.seed_resize_from_h) == (0, 0)


def test_empty_seed_means_random_and_empty_steps_is_an_error() -> None:
    assert bind.request_from_values({"seed": None}, GenerationRequest()).seed == -1
    with pytest.raises(InvalidRequest):
        bind.request_from_values({"steps": None}, GenerationRequest())
    with pytest.raises(InvalidRequest, match="resize mode"):
        bind.request_from_values({"resize_mode": "Stretch"}, GenerationRequest())


A1111_INFOTEXT = (
    "a castle on a hill\n"
    "Negative prompt: fog\n"
    "Steps: 33, Sampler: DPM++ 2M Karras, CFG scale: 4.5, Seed: 987, Size: 768x512, Model hash: abcdef0123, "
    "Model: other, Variation seed: 5, Variation seed strength: 0.3, Clip skip: 2, Denoising strength: 0.4, "
    "Mask blur: 6, Masked content: fill"
)


def test_infotext_to_widget_values() -> None:
    current = bind.values_from_request(GenerationRequest(sampler="Euler"), WIDGET_VALUES)
    pasted = values_from_infotext(default_registry(), A1111_INFOTEXT, current).values
    assert pasted["prompt"] == "a castle on a hill" and pasted["negative_prompt"] == "fog"
    assert (pasted["sampler"], pasted["schedule"]) == ("DPM++ 2M", "Karras")  # legacy combined name split
    assert (pasted["steps"], pasted["cfg_scale"], pasted["seed"]) == (33, 4.5, 987)
    assert pasted["width"] == 768 and "height" not in pasted  # 512 already: only changed widgets get updates
    assert (pasted["seed_extra"], pasted["subseed"], pasted["subseed_strength"]) == (True, 5, 0.3)
    assert (pasted["clip_skip"], pasted["denoising_strength"], pasted["mask_blur"]) == (2, 0.4, 6)
    assert pasted["inpainting_fill"] == "fill"
    assert "batch_count" not in pasted and "checkpoint" not in pasted  # not stated: left as the user had it


def test_send_flags_keep_seed_and_size() -> None:
    current = bind.values_from_request(GenerationRequest(), WIDGET_VALUES)
    pasted = values_from_infotext(default_registry(), A1111_INFOTEXT, current, send_seed=False,
                                  send_size=False).values
    assert not {"seed", "subseed", "seed_extra", "width", "height"} & set(pasted)
    assert pasted["steps"] == 33


def test_unusable_sampler_is_kept_with_a_warning() -> None:
    current = bind.values_from_request(GenerationRequest(), WIDGET_VALUES)
    text = "x\nSteps: 10, Sampler: DPM++ 4M Turbo, CFG scale: 7, Seed: 1"
    result = values_from_infotext(default_registry(), text, current)
    assert "sampler" not in result.values and result.values["steps"] == 10
    assert result.warnings and "DPM++ 4M Turbo" in result.warnings[0]


def test_mask_from_editor_uses_painted_alpha() -> None:
    background = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (4, 4, 8, 8))
    image, mask = mask_from_editor({"background": background, "layers": [layer], "composite": background})
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (10, 20, 30)
    assert mask.mode == "L" and mask.getbbox() == (4, 4, 8, 8) and mask.getpixel((5, 5)) == 255
    assert mask_from_editor(None) == (None, None)


def test_img2img_request_per_source() -> None:
    picture = Image.new("RGB", (16, 16), "blue")
    painted = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    painted.putpixel((3, 3), (255, 255, 255, 255))
    images = {"init_image": picture, "editor": {"background": picture, "layers": [painted], "composite": picture},
              "upload_image": picture, "upload_mask": Image.new("L", (16, 16), 255)}
    assert img2img_request(SOURCE_IMG2IMG, WIDGET_VALUES, images).mode == "img2img"
    inpaint = img2img_request(SOURCE_INPAINT, WIDGET_VALUES, images)
    assert inpaint.mode == "inpaint" and inpaint.mask.getbbox() == (3, 3, 4, 4)
    assert img2img_request(SOURCE_INPAINT_UPLOAD, WIDGET_VALUES, images).mask.getpixel((0, 0)) == 255
    with pytest.raises(InvalidRequest, match="needs an image"):
        img2img_request(SOURCE_IMG2IMG, WIDGET_VALUES, {**images, "init_image": None})
    with pytest.raises(InvalidRequest, match="mask is empty"):
        img2img_request(SOURCE_INPAINT, WIDGET_VALUES, {**images, "editor": {"background": picture, "layers": [],
                                                                             "composite": picture}})


def test_token_counter_counts_like_a1111(token_counter: TokenCounter) -> None:
    assert token_counter.label("a cat, sitting") == "4/75"
    assert token_counter.label("") == "0/75"
    assert token_counter.label("(a cat:1.3) <lora:film:0.8>") == "2/75"  # weights and extra networks are free
    assert token_counter.label("a BREAK b") == "76/150"  # BREAK pads the first chunk
    assert token_counter.count("[cat:dog with a long tail:5]").count == 5  # the longest scheduled text


def test_count_chunked_comma_backtrack() -> None:
    # 74 tokens, a comma at 70, then more: the tail after the comma moves to the next chunk (counted as padding).
    ids = [[1] * 70 + [9] + [1] * 10]
    assert count_chunked(ids, [False], comma_id=9, backtrack=20) == 75 + 10
    assert count_chunked(ids, [False], comma_id=9, backtrack=0) == 81


def test_override_settings_entries_round_trip_and_unknown_entries_are_refused() -> None:
    request = bind.request_from_values({"override_settings": ["RNG: NV", "ENSD: 31337"]}, GenerationRequest())
    assert request.overrides == {"randn_source": "NV", "eta_noise_seed_delta": 31337}
    assert bind.values_from_request(request, ["override_settings"]) == {"override_settings": ["RNG: NV",
                                                                                             "ENSD: 31337"]}
    with pytest.raises(InvalidRequest, match="Model hash cannot be overridden"):
        bind.request_from_values({"override_settings": ["Model hash: abc"]}, GenerationRequest())


def test_paste_fills_override_settings_from_an_infotext() -> None:
    current = bind.values_from_request(GenerationRequest(), WIDGET_VALUES)
    text = "x\nSteps: 10, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, ENSD: 31337, RNG: CPU"
    result = values_from_infotext(default_registry(), text, current)
    assert result.values["override_settings"] == ["RNG: CPU", "ENSD: 31337"]  # PASTED_SETTINGS order
