"""The txt2img tab's Hires. fix accordion: its values reach the request by name, the size line, and paste."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image

from modules.types import GenerationRequest
from modules.ui.hires import hires_size_text
from tests.ui.fakes import FakeApp, fake_result
from tests.ui.helpers import Page, merged, run_to_end

ACCORDION = {
    "txt2img_enable_hr": True, "txt2img_hr_upscaler": "Lanczos", "txt2img_hires_steps": 12,
    "txt2img_denoising_strength": 0.45, "txt2img_upscale_by": 1.5, "txt2img_resize_width_to": 0,
    "txt2img_resize_height_to": 768, "txt2img_hr_sampler": "DDIM", "txt2img_hr_scheduler": "Use same scheduler",
    "txt2img_hr_prompt": "sharp", "txt2img_hr_negative_prompt": "", "txt2img_hr_checkpoint": "other.safetensors",
}


@pytest.mark.slow
def test_accordion_values_reach_the_request(page: Page, app: FakeApp) -> None:
    assert page.find("txt2img_hr_upscaler").value == "Latent"
    assert [c[0] for c in page.find("txt2img_hr_upscaler").choices][-3:] == ["None", "Lanczos", "Nearest"]
    run_to_end(page.call("txt2img_generate", "click", {"txt2img_prompt": "a cat", **ACCORDION}))
    request = app.generation.requests[-1]
    assert (request.enable_hr, request.hr_upscaler, request.hr_second_pass_steps) == (True, "Lanczos", 12)
    assert (request.denoising_strength, request.hr_scale, request.hr_resize_x, request.hr_resize_y) == (
        0.45, 1.5, 0, 768)
    assert (request.hr_sampler_name, request.hr_scheduler, request.hr_prompt, request.hr_negative_prompt) == (
        "DDIM", "", "sharp", "")
    assert request.hr_checkpoint_name == "other.safetensors"
    assert page.find("txt2img_hr_checkpoint").value == "Use same checkpoint"
    assert [c[0] for c in page.find("txt2img_hr_checkpoint").choices] == [
        "Use same checkpoint", "tiny.safetensors [0123456789]", "other.safetensors"]


@pytest.mark.slow
def test_hires_is_off_by_default(page: Page, app: FakeApp) -> None:
    run_to_end(page.call("txt2img_generate", "click", {"txt2img_prompt": "a cat"}))
    request = app.generation.requests[-1]
    assert not request.enable_hr and request.hr_sampler_name == "" and request.hr_upscaler == "Latent"
    assert request.hr_checkpoint_name == ""


@pytest.mark.slow
def test_paste_restores_the_accordion(page: Page) -> None:
    text = ("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: 0.3, "
            "Hires sampler: DDIM, Hires prompt: sharp, Hires resize: 1024x768, Hires steps: 9, "
            "Hires upscaler: latent (nearest)")
    updates = page.call("txt2img_paste", "click", {"txt2img_prompt": text})
    values = {component.elem_id: value for component, value in updates.items()}
    assert values["txt2img_enable_hr"] is True and values["txt2img_denoising_strength"] == 0.3
    assert values["txt2img_hr_upscaler"] == "Latent (nearest)" and values["txt2img_hires_steps"] == 9
    assert (values["txt2img_resize_width_to"], values["txt2img_resize_height_to"]) == (1024, 768)
    assert values["txt2img_hr_sampler"] == "DDIM" and values["txt2img_hr_prompt"] == "sharp"


@pytest.mark.slow
def test_paste_selects_the_hires_checkpoint_or_warns(page: Page, monkeypatch) -> None:
    line = "a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 64x64, Denoising strength: 0.3, Hires upscaler: Latent, "
    updates = page.call("txt2img_paste", "click", {"txt2img_prompt": line + "Hires checkpoint: other.safetensors"})
    values = {component.elem_id: value for component, value in updates.items()}
    assert values["txt2img_hr_checkpoint"] == "other.safetensors"
    warnings: list[str] = []
    monkeypatch.setattr("modules.ui.generation.gr.Warning", warnings.append)
    updates = page.call("txt2img_paste", "click", {"txt2img_prompt": line + "Hires checkpoint: gone [abc]"})
    assert "txt2img_hr_checkpoint" not in {component.elem_id for component in updates}
    assert warnings == ["Hires checkpoint 'gone [abc]' is not in the checkpoint folders; it was not changed."]


def test_size_line_follows_a1111_targets() -> None:
    assert hires_size_text(False, 512, 512, 2, 0, 0) == ""
    assert "from <span class='resolution'>512x512</span> to <span class='resolution'>1024x1024</span>" in \
        hires_size_text(True, 512, 512, 2, 0, 0)
    assert "to <span class='resolution'>1024x768</span>" in hires_size_text(True, 512, 512, 2, 1024, 768)
    assert "to <span class='resolution'>768x1152</span>" in hires_size_text(True, 512, 768, 2, 0, 1152)
    assert hires_size_text(True, 512, 512, None, 0, 0) == ""


@pytest.mark.slow
def test_upscale_runs_hires_on_the_selected_picture_and_replaces_it(page: Page, app: FakeApp) -> None:
    previous = fake_result(GenerationRequest(prompt="a cat", seed=40, batch_size=3, width=8, height=8))
    fn = page.handler(page.find("txt2img_reuse_seed"), "click")
    state_result, state_selected = fn.inputs[0], fn.inputs[1]
    updates = merged(run_to_end(page.call("txt2img_upscale", "click", {"txt2img_width": 512},
                                          extra={state_result: previous, state_selected: 1})))
    request = app.generation.requests[-1]
    assert request.enable_hr and request.firstpass_image is previous.images[1]  # the Hires checkbox was off
    assert (request.seed, request.subseed, request.batch_size, request.n_iter) == (41, 100, 1, 1)
    assert (request.width, request.height) == (8, 8)  # the picture's size, not the slider's
    assert request.overrides["save_images_before_highres_fix"] is False
    result = updates[state_result]
    assert len(result.images) == 3 and result.images[0] is previous.images[0] and result.images[2] is previous.images[2]
    assert result.images[1] is not previous.images[1] and result.infotexts[0] == previous.infotexts[0]
    assert updates[state_selected] == 1


@pytest.mark.slow
def test_upscale_of_a_batch_with_its_grid_takes_the_first_picture_never_the_grid(page: Page, app: FakeApp) -> None:
    import dataclasses

    pictures = fake_result(GenerationRequest(prompt="a cat", seed=40, batch_size=2, width=8, height=8))
    grid = Image.new("RGB", (16, 8))
    previous = dataclasses.replace(pictures, images=(grid, *pictures.images), seeds=(40, 40, 41),
                                   subseeds=(100, 100, 101), prompts=pictures.prompts[:1] + pictures.prompts,
                                   negative_prompts=pictures.negative_prompts[:1] + pictures.negative_prompts,
                                   infotexts=pictures.infotexts[:1] + pictures.infotexts, grids=1)
    fn = page.handler(page.find("txt2img_reuse_seed"), "click")
    state_result, state_selected = fn.inputs[0], fn.inputs[1]
    with pytest.raises(gr.Error, match="grid"):
        run_to_end(page.call("txt2img_upscale", "click", extra={state_result: previous, state_selected: 0}))
    updates = merged(run_to_end(page.call("txt2img_upscale", "click", extra={state_result: previous,
                                                                              state_selected: None})))
    assert app.generation.requests[-1].firstpass_image is pictures.images[0]  # nothing picked: the first picture
    result = updates[state_result]
    assert result.grids == 1 and result.images[0] is grid and result.images[1] is not pictures.images[0]


@pytest.mark.slow
def test_upscale_without_a_picture_says_what_to_do(page: Page) -> None:
    with pytest.raises(gr.Error, match="Generate a picture first"):
        run_to_end(page.call("txt2img_upscale", "click"))
    with pytest.raises(KeyError):
        page.find("img2img_upscale")  # txt2img only, as in A1111
