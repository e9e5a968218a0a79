"""The Extras tab: its controls reach the upscale, results show in its gallery with the postprocessing text and are
saved to outdir_extras_samples with the source's parameters and the `extras` text; errors are messages."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from tests.ui.fakes import FakeApp
from tests.ui.helpers import Page, merged, run_to_end


def _picture() -> Image.Image:
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    image.info["parameters"] = "a cat\nSteps: 3, Seed: 5"
    return image


@pytest.mark.slow
def test_single_image_is_upscaled_shown_and_saved(page: Page, app: FakeApp) -> None:
    assert [choice[0] for choice in page.find("extras_upscaler_1").choices] == ["None", "Lanczos", "Nearest"]
    updates = merged(run_to_end(page.call("extras_generate", "click", {
        "extras_image": _picture(), "extras_upscaler_1": "Lanczos", "extras_upscaling_resize": 2.0})))
    pictures = updates[page.find("extras_gallery")]
    assert [picture.size for picture in pictures] == [(80, 64)]
    assert "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" in updates[page.find("html_info_extras")]
    saved = sorted((app.paths.data_dir / "outputs" / "extras-images").glob("*.png"))
    assert [path.name for path in saved] == ["00000.png"]
    with Image.open(saved[0]) as image:
        assert image.size == (80, 64) and image.info["parameters"] == "a cat\nSteps: 3, Seed: 5"
        assert image.info["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


@pytest.mark.slow
def test_batch_keeps_the_original_names(page: Page, app: FakeApp, tmp_path) -> None:
    files = []
    for name in ("first.png", "second.png"):
        _picture().save(tmp_path / name)
        files.append(str(tmp_path / name))
    fn = page.handler(page.find("extras_generate"), "click")
    source = next(component for component in fn.inputs if getattr(component, "value", None) == "single")
    updates = merged(run_to_end(page.call("extras_generate", "click", {
        "extras_image_batch": files, "extras_upscaler_1": "Nearest"}, extra={source: "batch"})))
    assert len(updates[page.find("extras_gallery")]) == 2
    names = sorted(path.name for path in (app.paths.data_dir / "outputs" / "extras-images").glob("*.png"))
    assert names == ["00000-first.png", "00001-second.png"]


@pytest.mark.slow
def test_nothing_to_upscale_is_a_message(page: Page) -> None:
    with pytest.raises(gr.Error, match="upload an image"):
        run_to_end(page.call("extras_generate", "click"))


@pytest.mark.slow
def test_batch_from_directory_reads_and_writes_folders_inside_the_data_directory(page: Page, app: FakeApp) -> None:
    inputs = app.paths.data_dir / "to-upscale"
    inputs.mkdir()
    for name in ("b.png", "a.png"):
        _picture().save(inputs / name)
    (inputs / "notes.txt").write_text("not a picture")
    fn = page.handler(page.find("extras_generate"), "click")
    source = next(component for component in fn.inputs if getattr(component, "value", None) == "single")
    updates = merged(run_to_end(page.call("extras_generate", "click", {
        "extras_batch_input_dir": "to-upscale", "extras_batch_output_dir": "upscaled",
        "extras_upscaler_1": "Nearest"}, extra={source: "directory"})))
    assert len(updates[page.find("extras_gallery")]) == 2
    names = sorted(path.name for path in (app.paths.data_dir / "upscaled").glob("*.png"))
    assert names == ["00000-a.png", "00001-b.png"]
    for folder, message in (("/etc", "outside the data directory"), ("missing", "does not exist"), ("", "input")):
        with pytest.raises(gr.Error, match=message):
            run_to_end(page.call("extras_generate", "click", {"extras_batch_input_dir": folder},
                                 extra={source: "directory"}))


@pytest.mark.slow
def test_send_to_extras_from_results_and_png_info(page: Page, tmp_path) -> None:
    from modules.types import GenerationRequest
    from tests.ui.fakes import fake_result

    result = fake_result(GenerationRequest(prompt="sent", seed=31, width=8, height=8, batch_size=2))
    fn = page.handler(page.find("txt2img_reuse_seed"), "click")
    updates = page.call("txt2img_send_to_extras", "click", extra={fn.inputs[0]: result, fn.inputs[1]: 1})
    assert updates[page.find("extras_image")].size == (8, 8)
    assert updates[page.find("tabs")].selected == "extras"
    path = tmp_path / "with-info.png"
    _picture().save(path, pnginfo=_png_text("a cat\nSteps: 3, Seed: 5"))
    updates = page.call("pnginfo_send_to_extras", "click", {"pnginfo_image": str(path)})
    sent = updates[page.find("extras_image")]
    assert sent.size == (40, 32) and sent.info["parameters"] == "a cat\nSteps: 3, Seed: 5"


def _png_text(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    return info


def test_send_an_upscaled_picture_to_img2img_or_inpaint(page: Page) -> None:
    from modules.ui.img2img import SOURCE_INPAINT, SUB_TAB_IDS

    outputs = page.handler(page.find("extras_generate"), "click").outputs
    pictures_state, selected_state = outputs[3], outputs[4]
    first, second = Image.new("RGB", (16, 16), (1, 2, 3)), Image.new("RGB", (16, 16), (4, 5, 6))
    second.info["parameters"] = "a big fox\nNegative prompt: blur\nSteps: 9, Sampler: Euler, Seed: 5, Size: 8x8"
    sent = page.call("extras_send_to_inpaint", "click", extra={pictures_state: [first, second], selected_state: 1})
    assert sent[page.find("img2maskimg")] is second
    assert sent[page.find("mode_img2img")].constructor_args["selected"] == SUB_TAB_IDS[SOURCE_INPAINT]
    assert sent[page.find("img2img_prompt")] == "a big fox"  # the parameters it carries come along
    plain = page.call("extras_send_to_img2img", "click", extra={pictures_state: [first, second],
                                                                 selected_state: None})
    assert plain[page.find("img2img_image")] is first
    with pytest.warns(UserWarning, match="upscale one first"):
        assert page.call("extras_send_to_img2img", "click", extra={pictures_state: [], selected_state: None}) == {}
