"""A1111 infotext: exact format, parsing of real-world infotexts, request mapping."""

from __future__ import annotations

import pytest

from modules import infotext
from modules.types import GenerationRequest, InpaintFill

BASIC = {"Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 1234}


def test_build_exact_format() -> None:
    text = infotext.build("a cat", "blurry", {**BASIC, "Size": "512x768", "Model hash": "6ce0161689", "VAE": None})
    assert text == (
        "a cat\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model hash: 6ce0161689"
    )


def test_build_omits_empty_negative_and_writes_flag_keys_bare() -> None:
    text = infotext.build("a cat", "", {**BASIC, "Tiling": "Tiling"})
    assert text == "a cat\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Tiling"


def test_build_empty_prompt_is_stripped_like_a1111() -> None:
    assert infotext.build("", "bad", BASIC).startswith("Negative prompt: bad\nSteps: 20,")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("a, b", '"a, b"'),
        ("name: abc123", '"name: abc123"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("two\nlines", '"two\\nlines"'),
        ("ü, 猫", '"ü, 猫"'),
        (0.75, "0.75"),
    ],
)
def test_quote(value: object, written: str) -> None:
    assert infotext.quote(value) == written
    assert infotext.unquote(written) == str(value)


def test_unquote_leaves_bad_json_alone() -> None:
    assert infotext.unquote('"broken\\"') == '"broken\\"'
    assert infotext.unquote('"') == '"'


TRICKY = [
    ("a cat, sitting: on a mat", "ugly, blurry"),
    ('"quoted" prompt, (with:1.2) weights', ""),
    ("line one\nline two, with comma\nline three", "neg one\nneg two"),
    ("ünïcödé 猫 🐱, ∑", "негатив, 悪い"),
    ("Steps: 1, Sampler: fake, Seed: 2 looks like params", "x"),
    ("", "only negative"),
    ("prompt\n\nwith blank line", ""),
]


@pytest.mark.parametrize(("prompt", "negative"), TRICKY)
def test_round_trip_build_parse_build(prompt: str, negative: str) -> None:
    params = {
        **BASIC,
        "Size": "512x768",
        "Lora hashes": "detail: 0123abcd, style: 89ab",
        "Weird": 'a "b", c:\nd',
        "Unicode": "ü, 猫",
    }
    text = infotext.build(prompt, negative, params)
    parsed = infotext.parse(text)
    assert parsed.prompt == prompt
    assert parsed.negative_prompt == negative
    assert parsed.written_params() == {key: str(value) for key, value in params.items()}
    assert parsed.to_text() == text
    assert infotext.build(parsed.prompt, parsed.negative_prompt, parsed.written_params()) == text


def test_parse_real_a1111_infotext() -> None:
    text = (
        "masterpiece, best quality, 1girl, <lora:detail_tweaker:0.5>, looking at viewer\n"
        "Negative prompt: (worst quality:1.4), lowres, bad anatomy\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3547582134, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 235745af8d, VAE: vae-ft-mse-840000.safetensors, "
        'Denoising strength: 0.45, Clip skip: 2, Lora hashes: "detail_tweaker: e4ad0ac1f6f3", '
        'TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1'
    )
    parsed = infotext.parse(text)
    assert parsed.prompt == "masterpiece, best quality, 1girl, <lora:detail_tweaker:0.5>, looking at viewer"
    assert parsed.negative_prompt == "(worst quality:1.4), lowres, bad anatomy"
    assert list(parsed.params)[:8] == [
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Size-1", "Size-2"
    ]
    assert parsed.params["Size-1"] == "512" and parsed.params["Size-2"] == "768"
    assert parsed.params["Lora hashes"] == "detail_tweaker: e4ad0ac1f6f3"
    assert parsed.params["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert parsed.params["VAE"] == "vae-ft-mse-840000.safetensors"
    assert parsed.params["Version"] == "v1.10.1"
    assert parsed.to_text() == text


def test_parse_multiline_prompt_and_negative() -> None:
    text = (
        "first line, red\n  second line  \nthird\n"
        "Negative prompt: neg a\nneg b\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    parsed = infotext.parse(text)
    assert parsed.prompt == "first line, red\nsecond line\nthird"
    assert parsed.negative_prompt == "neg a\nneg b"
    assert parsed.params["Sampler"] == "Euler a"
    assert parsed.params["Model hash"] == "45dee52b"


def test_parse_last_line_needs_three_pairs() -> None:
    parsed = infotext.parse("a prompt\nSteps: 20, Seed: 5")
    assert parsed.prompt == "a prompt\nSteps: 20, Seed: 5"
    assert parsed.params == {}


def test_parse_prompt_only_and_empty_text() -> None:
    assert infotext.parse("just a prompt") == infotext.ParsedInfotext("just a prompt", "", {})
    assert infotext.parse("") == infotext.ParsedInfotext("", "", {})


def test_parse_drops_empty_values_like_a1111() -> None:
    parsed = infotext.parse("p\nSteps: 20, Hires prompt: , Seed: 1, CFG scale: 7")
    assert parsed.params == {"Steps": "20", "Seed": "1", "CFG scale": "7"}


def test_get_answers_a1111_defaults_for_missing_keys() -> None:
    parsed = infotext.parse("p\nSteps: 20, Seed: 1, CFG scale: 7")
    assert parsed.get("Clip skip") == "1"
    assert parsed.get("Schedule type") == "Automatic"
    assert parsed.get("Masked content") == "original"
    assert parsed.get("Nope") is None
    assert "Clip skip" not in parsed.params


def _resolved(request: GenerationRequest, **kwargs: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        seed=42, subseed=7, model_name="v1-5", model_hash="6ce0161689",
        sampler_label="DPM++ 2M", schedule_label="Karras",
    )
    base.update(kwargs)
    return infotext.request_params(request, **base)  # type: ignore[arg-type]


def test_request_params_txt2img_order_and_omissions() -> None:
    request = GenerationRequest(prompt="p", steps=20, cfg_scale=7.0, width=512, height=768)
    params = _resolved(request, vae_name="vae-ft-mse", vae_hash="235745af8d", version="v0.1.0")
    assert params == {
        "Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 7, "Seed": 42,
        "Size": "512x768", "Model hash": "6ce0161689", "Model": "v1-5", "VAE hash": "235745af8d",
        "VAE": "vae-ft-mse", "Version": "v0.1.0",
    }
    assert list(params) == list(params.keys())  # order is the dict's insertion order
    assert list(params)[:6] == ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size"]


def test_request_params_optional_fields() -> None:
    request = GenerationRequest(
        mode="img2img", cfg_scale=6.5, subseed_strength=0.3, seed_resize_from_w=640, seed_resize_from_h=512,
        clip_skip=2, denoising_strength=0.6,
    )
    params = _resolved(request, sampler_params={"Eta DDIM": 0.5}, rng="CPU",
                       extra={"Lora hashes": "a: 01ab, b: 23cd"}, version="v1")
    assert list(params) == [
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model",
        "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength", "Clip skip", "RNG",
        "Lora hashes", "Eta DDIM", "Version",
    ]
    assert params["CFG scale"] == 6.5 and params["Variation seed"] == 7 and params["Variation seed strength"] == 0.3
    assert params["Seed resize from"] == "640x512" and params["Eta DDIM"] == 0.5
    text = infotext.build("p", "", params)
    assert 'Lora hashes: "a: 01ab, b: 23cd"' in text
    assert "CFG scale: 6.5, Seed: 42," in text


def test_request_params_inpaint_mask_fields() -> None:
    request = GenerationRequest(
        mode="inpaint", mask_blur=8, invert_mask=True, inpaint_full_res=True, inpaint_full_res_padding=48,
        inpainting_fill=InpaintFill.LATENT_NOISE, denoising_strength=1.0,
    )
    params = _resolved(request)
    assert list(params)[-6:] == [
        "Denoising strength", "Mask mode", "Mask blur", "Inpaint area", "Masked area padding", "Masked content"
    ]
    assert params["Denoising strength"] == 1
    assert params["Mask mode"] == "Inpaint not masked" and params["Masked content"] == "latent noise"
    default_mask = _resolved(GenerationRequest(mode="inpaint", mask_blur=0))
    assert not {"Mask blur", "Mask mode", "Inpaint area", "Masked content"} & set(default_mask)


def test_apply_to_request_maps_fields() -> None:
    text = (
        "a dog\nNegative prompt: cat\n"
        "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5.5, Seed: 99, Size: 640x448, Denoising strength: 0.4, "
        "Clip skip: 2, Variation seed: 5, Variation seed strength: 0.25, Seed resize from: 512x512, Eta: 0.3, "
        "Mask blur: 6, Mask mode: Inpaint not masked, Masked content: fill, Inpaint area: Only masked, "
        "Masked area padding: 16, Model hash: abc, Unknown thing: 3"
    )
    base = GenerationRequest(mode="inpaint", schedule="Karras", checkpoint="keep.safetensors")
    request = infotext.apply_to_request(infotext.parse(text), base)
    assert (request.prompt, request.negative_prompt) == ("a dog", "cat")
    assert (request.steps, request.sampler, request.schedule) == (30, "DPM++ 2M Karras", "Automatic")
    assert (request.cfg_scale, request.seed, request.width, request.height) == (5.5, 99, 640, 448)
    assert (request.denoising_strength, request.clip_skip) == (0.4, 2)
    assert (request.subseed, request.subseed_strength) == (5, 0.25)
    assert (request.seed_resize_from_w, request.seed_resize_from_h, request.eta) == (512, 512, 0.3)
    ddim = infotext.apply_to_request(infotext.parse(text.replace("Eta: 0.3", "Eta DDIM: 0.4")), base)
    assert ddim.eta == 0.4  # A1111's key for DDIM's eta
    assert (request.mask_blur, request.invert_mask, request.inpainting_fill) == (6, True, InpaintFill.FILL)
    assert (request.inpaint_full_res, request.inpaint_full_res_padding) == (True, 16)
    assert request.checkpoint == "keep.safetensors" and request.mode == "inpaint"


def test_apply_to_request_defaults_for_missing_keys() -> None:
    base = GenerationRequest(
        clip_skip=3, schedule="Karras", subseed_strength=0.5, seed_resize_from_w=64, seed_resize_from_h=64,
        eta=0.7, inpainting_fill=InpaintFill.FILL, invert_mask=True, denoising_strength=0.2, mask_blur=9,
    )
    request = infotext.apply_to_request(infotext.parse("p\nSteps: 20, Sampler: Euler a, Seed: 1"), base)
    assert (request.clip_skip, request.schedule, request.subseed_strength) == (1, "Automatic", 0.0)
    assert (request.seed_resize_from_w, request.seed_resize_from_h, request.eta) == (0, 0, None)
    assert (request.inpainting_fill, request.invert_mask) == (InpaintFill.ORIGINAL, False)
    assert (request.denoising_strength, request.mask_blur) == (0.2, 9)  # unstated: kept


def test_apply_to_request_skips_malformed_numbers() -> None:
    text = "p\nSteps: many, CFG scale: nan, Seed: 12.0, Size: 512x512, Denoising strength: high, Clip skip: 2.5"
    base = GenerationRequest(steps=11, cfg_scale=4.0, denoising_strength=0.3)
    request = infotext.apply_to_request(infotext.parse(text), base)
    assert (request.steps, request.cfg_scale, request.seed) == (11, 4.0, 12)
    assert (request.denoising_strength, request.clip_skip) == (0.3, 1)


def test_request_round_trip_through_text() -> None:
    request = GenerationRequest(
        mode="inpaint", prompt="a, b: c\nd", negative_prompt='"n"', steps=12, cfg_scale=6.5, width=640, height=384,
        subseed_strength=0.2, clip_skip=2, denoising_strength=0.55, mask_blur=3,
        inpainting_fill=InpaintFill.LATENT_NOTHING,
    )
    params = _resolved(request, sampler_params={"Eta DDIM": 0.4})
    text = infotext.build(request.prompt, request.negative_prompt, params)
    restored = infotext.apply_to_request(infotext.parse(text), GenerationRequest(mode="inpaint"))
    expected = request.with_changes(seed=42, subseed=7, sampler="DPM++ 2M", schedule="Karras", eta=0.4)
    assert restored == expected


def test_non_string_values_are_written_with_str() -> None:
    text = infotext.build("p", "", {**BASIC, "Hashes": {"a": "b"}, "Flag": True})
    parsed = infotext.parse(text)
    assert parsed.params["Hashes"] == "{'a': 'b'}"
    assert parsed.params["Flag"] == "True"


def test_pasted_settings_become_overrides_and_replace_earlier_pasted_ones() -> None:
    text = ("a cat\nSteps: 5, Sampler: Euler a, CFG scale: 7, Seed: 3, Size: 64x64, ENSD: 31337, RNG: NV, "
            "Emphasis: No norm, Noise multiplier: 0.9")
    base = GenerationRequest(overrides={"randn_source": "CPU", "eta_noise_seed_delta": 5, "jpeg_quality": 50})
    pasted = infotext.apply_to_request(infotext.parse(text), base)
    assert pasted.overrides == {"jpeg_quality": 50, "randn_source": "NV", "eta_noise_seed_delta": 31337,
                                "emphasis": "No norm", "initial_noise_multiplier": 0.9}
    plain = infotext.apply_to_request(infotext.parse("a cat\nSteps: 5, Seed: 3"), base)
    assert plain.overrides == {"jpeg_quality": 50}  # no RNG/ENSD stated: nothing to override


def test_pasted_sampler_settings_fill_eta_and_the_churn_overrides() -> None:
    """A1111 writes "Eta" (k-diffusion samplers) or "Eta DDIM" and "Sigma churn/tmin/tmax/noise" when they are not
    the defaults; a paste puts eta on the request (it wins over either eta setting) and the rest in the overrides."""
    text = ("a cat\nSteps: 5, Sampler: Heun, CFG scale: 7, Seed: 3, Size: 64x64, Sigma churn: 2.5, Sigma tmin: 0.1, "
            "Sigma tmax: 9, Sigma noise: 1.003, Eta: 0.6")
    pasted = infotext.apply_to_request(infotext.parse(text), GenerationRequest())
    assert pasted.eta == 0.6
    assert pasted.overrides == {"s_churn": 2.5, "s_tmin": 0.1, "s_tmax": 9.0, "s_noise": 1.003}
    params = infotext.request_params(pasted, seed=3, subseed=0, model_name="m", model_hash="h", sampler_label="Heun",
                                     schedule_label="Automatic",
                                     sampler_params={"Sigma churn": 2.5, "Sigma tmax": 9.0, "Eta": 0.6})
    assert "Sigma churn: 2.5, Sigma tmax: 9, Eta: 0.6" in infotext.build("p", "", params)


def test_pasted_settings_with_values_the_option_refuses_are_skipped() -> None:
    text = "a cat\nSteps: 5, Seed: 3, RNG: Quantum, ENSD: lots, Emphasis: Original"
    assert infotext.apply_to_request(infotext.parse(text), GenerationRequest()).overrides == {"emphasis": "Original"}


def test_ensd_is_written_after_clip_skip_and_before_rng() -> None:
    request = GenerationRequest(prompt="p", clip_skip=2)
    params = infotext.request_params(request, seed=1, subseed=2, model_name="m", model_hash="h",
                                     sampler_label="Euler a", schedule_label="Automatic", rng="NV", ensd=31337)
    keys = list(params)
    assert keys.index("Clip skip") < keys.index("ENSD") < keys.index("RNG")
    assert "ENSD: 31337, RNG: NV" in infotext.build("p", "", params)
