"""The real application (webui.py's composition root, real model manager, generation core and image saving) driven
through headless Chromium: tabs, txt2img with the saved PNG, inpaint with a painted mask, PNG Info -> txt2img, and
"read generation parameters". Tiny random checkpoints, 64x64 pictures, 3 steps.

Skipped when /usr/bin/chromium is missing (Debian's `apt-get install -y chromium`; never `playwright install`).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import (
    CHROMIUM,
    INPAINT_CHECKPOINT,
    NORMAL_CHECKPOINT,
    PageWatch,
    RealServer,
    choose_checkpoint,
    editor_view,
    fetch_image,
    gallery_image_url,
    main_tab,
    paint_stroke,
    set_brush_radius,
    set_number,
    split_test_image,
    sub_tab,
    txt2img_generate,
    upload,
    upload_to_editor,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

PROMPT = "a red apple on a wooden table"
SEED = 424242
A1111_INFOTEXT = (
    "a castle on a hill, sunset\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 7, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5.5, Seed: 987654, Size: 96x80, "
    "Model hash: 0123456789, Model: someone-elses-model, Version: v1.10.1"
)


def _number(page: Any, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type='number']").input_value())


def _saved_pngs(server: RealServer) -> list[Path]:
    folder = server.data_dir / "outputs" / "txt2img-images" / datetime.date.today().isoformat()
    return sorted(folder.glob("*.png"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []


def _generate_and_check(page: Any, server: RealServer, shared: dict[str, Any]) -> Path:
    """txt2img with the normal checkpoint; checks picture, infotext and the saved PNG; returns the PNG's path."""
    from playwright.sync_api import expect

    choose_checkpoint(page, NORMAL_CHECKPOINT)
    before = set(_saved_pngs(server))
    cfg = txt2img_generate(page, PROMPT, seed=SEED, steps=3, size=64, cfg_presses=3)
    assert float(cfg) == 8.5, "three arrow-key presses move CFG from 7 by 0.5 each"

    picture = fetch_image(gallery_image_url(page, "txt2img", server.url))
    assert picture.size == (64, 64)
    info = page.locator("#html_info_txt2img")
    for text in (PROMPT, "Steps: 3", "CFG scale: 8.5", f"Seed: {SEED}", "Size: 64x64", "Model: tiny-sd1"):
        expect(info).to_contain_text(text)

    new = [path for path in _saved_pngs(server) if path not in before]
    assert len(new) == 1, f"expected one new PNG in outputs, got {new}"
    with Image.open(new[0]) as saved:
        parameters = saved.info["parameters"]
        assert saved.size == (64, 64)
        assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(picture.convert("RGB")))
    assert parameters.startswith(PROMPT + "\n") and "Steps: 3" in parameters and "CFG scale: 8.5" in parameters
    assert picture.info.get("parameters") == parameters, "the gallery's PNG carries the same parameters"
    # the infotext block itself (the element around it may still show Gradio's status timer, "0.1s")
    assert info.locator("div.infotext > p").first.inner_text().startswith(parameters.split("\n")[0])
    shared["txt2img_png"] = new[0]
    return new[0]


def test_every_tab_loads_without_errors_or_external_requests(ui: tuple[Any, PageWatch]) -> None:
    from playwright.sync_api import expect

    page, watch = ui
    expect(page.locator("#txt2img_cfg_scale")).to_be_visible()
    main_tab(page, "img2img")
    expect(page.locator("#img2img_generate")).to_be_visible()
    for name, widget in (("Sketch", "#img2img_sketch"), ("Inpaint", "#img2maskimg"),
                         ("Inpaint sketch", "#inpaint_sketch"), ("Inpaint upload", "#img_inpaint_mask"),
                         ("Batch", "#img2img_batch_input_dir"), ("img2img", "#img2img_image")):
        sub_tab(page, name)
        expect(page.locator(widget)).to_be_visible()
    expect(page.locator("#inpaint_controls").first).to_be_hidden()
    sub_tab(page, "Inpaint")
    expect(page.locator("#inpaint_controls").first).to_be_visible()
    main_tab(page, "PNG Info")
    expect(page.locator("#pnginfo_image")).to_be_visible()
    main_tab(page, "Settings")
    expect(page.locator("#settings_submit")).to_be_visible()
    main_tab(page, "txt2img")
    expect(page.locator("#txt2img_generate")).to_be_visible()
    buttons = page.locator("#tabs > .tab-wrapper button[role='tab']")
    names = buttons.all_inner_texts()
    assert {"txt2img", "img2img", "PNG Info", "Settings"} <= set(names)
    for index in range(len(names)):  # also the tabs extensions add
        button = buttons.nth(index)
        button.click()
        expect(button).to_have_attribute("aria-selected", "true")
        panel_id = (button.get_attribute("id") or "").removesuffix("-button")
        if panel_id:
            expect(page.locator(f"#{panel_id}")).to_be_visible()
    assert watch.requests and all(url.startswith("http://127.0.0.1") for url in watch.requests
                                  if not url.startswith(("data:", "blob:")))
    assert not watch.errors, watch.errors


def test_txt2img_generates_shows_and_saves(ui: tuple[Any, PageWatch], real_server: RealServer,
                                           shared: dict[str, Any]) -> None:
    page, watch = ui
    _generate_and_check(page, real_server, shared)
    assert not watch.errors, watch.errors


def _stroke_mask_run(page: Any, server: RealServer, checkpoint: str) -> np.ndarray:
    from playwright.sync_api import expect

    choose_checkpoint(page, checkpoint)
    previous = page.locator("#img2img_gallery img").first.get_attribute("src") \
        if page.locator("#img2img_gallery img").count() else None
    page.locator("#img2img_generate").click()
    expect(page.locator("#html_info_img2img")).to_contain_text(f"Model: {Path(checkpoint).stem},", timeout=60_000)
    url = gallery_image_url(page, "img2img", server.url)
    assert url != previous
    result = fetch_image(url)
    assert result.size == (64, 64)
    return np.asarray(result.convert("RGB")).astype(int)


def test_inpaint_keeps_unmasked_pixels(ui: tuple[Any, PageWatch], real_server: RealServer, tmp_path: Path) -> None:
    """A stroke along row 12 (brush radius 4) is repainted; rows 36+ (past mask, blur and VAE) come back exactly."""
    page, watch = ui
    original = split_test_image(64)
    source = tmp_path / "split.png"
    original.save(source)
    main_tab(page, "img2img")
    sub_tab(page, "Inpaint")
    upload_to_editor(page, "img2maskimg", source)
    set_brush_radius(page, "img2maskimg", 4)
    paint_stroke(page, editor_view(page, "img2maskimg", original.size), [(10, 12), (32, 12), (54, 12)])

    page.locator("#img2img_inpainting_fill").get_by_text("latent noise", exact=True).click()
    for elem_id, value in (("img2img_sampling_steps", 3), ("img2img_denoising_strength", 1.0),
                           ("img2img_width", 64), ("img2img_height", 64), ("img2img_seed", SEED)):
        set_number(page, elem_id, value)
    expected = np.asarray(original).astype(int)
    for checkpoint in (INPAINT_CHECKPOINT, NORMAL_CHECKPOINT):
        pixels = _stroke_mask_run(page, real_server, checkpoint)
        assert np.array_equal(pixels[36:], expected[36:]), f"{checkpoint}: pixels far from the mask changed"
        stroke = np.abs(pixels[10:15, 16:48] - expected[10:15, 16:48]).sum(axis=-1)
        assert (stroke > 0).all(), f"{checkpoint}: pixels under the stroke were not repainted"
    assert not watch.errors, watch.errors


def test_png_info_round_trip_to_txt2img(ui: tuple[Any, PageWatch], real_server: RealServer,
                                        shared: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page, watch = ui
    saved = shared.get("txt2img_png")
    if saved is None:  # this test runs alone: make the PNG, then start again from the page's defaults
        saved = _generate_and_check(page, real_server, shared)
        page.reload(wait_until="domcontentloaded")
        expect(page.locator("#txt2img_generate")).to_be_visible(timeout=60_000)
        watch.errors.clear()  # the reload aborts the page's open event stream, which the console reports
    main_tab(page, "PNG Info")
    upload(page, "pnginfo_image", saved)
    info = page.locator("#pnginfo_generation_info")
    expect(info).to_contain_text("parameters", timeout=30_000)
    for text in (PROMPT, "Steps: 3", f"Seed: {SEED}", "CFG scale: 8.5"):
        expect(info).to_contain_text(text)

    page.locator("#pnginfo_send_to_txt2img").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(PROMPT, timeout=15_000)
    expect(page.locator("#txt2img_sampling_steps input[type='number']")).to_have_value("3")
    expect(page.locator("#txt2img_seed input[type='number']")).to_have_value(str(SEED))
    assert _number(page, "txt2img_cfg_scale") == 8.5
    assert (_number(page, "txt2img_width"), _number(page, "txt2img_height")) == (64, 64)
    assert not watch.errors, watch.errors


def test_read_generation_parameters_button(ui: tuple[Any, PageWatch]) -> None:
    from playwright.sync_api import expect

    page, watch = ui
    box = page.locator("#txt2img_prompt textarea")
    assert box.input_value() == ""
    box.fill(A1111_INFOTEXT)
    page.locator("#txt2img_paste").click()
    expect(box).to_have_value("a castle on a hill, sunset", timeout=15_000)
    expect(page.locator("#txt2img_negative_prompt textarea")).to_have_value("blurry, lowres")
    expect(page.locator("#txt2img_sampling_steps input[type='number']")).to_have_value("7")
    expect(page.locator("#txt2img_sampling input")).to_have_value("Euler a")
    expect(page.locator("#txt2img_seed input[type='number']")).to_have_value("987654")
    assert _number(page, "txt2img_cfg_scale") == 5.5
    assert (_number(page, "txt2img_width"), _number(page, "txt2img_height")) == (96, 80)
    expect(page.locator("#txt2img_override_settings")).to_be_hidden()  # the infotext states no setting
    box.fill(A1111_INFOTEXT + ", ENSD: 31337, RNG: NV")
    page.locator("#txt2img_paste").click()
    settings = page.locator("#txt2img_override_settings")
    expect(settings).to_be_visible(timeout=15_000)
    expect(settings).to_contain_text("RNG: NV")
    expect(settings).to_contain_text("ENSD: 31337")
    assert not watch.errors, watch.errors


def test_hires_fix_doubles_the_picture_and_writes_its_keys(ui: tuple[Any, PageWatch], real_server: RealServer
                                                            ) -> None:
    """Open the Hires. fix accordion, enable it (Latent, upscale by 2): the picture is 128x128 and the infotext
    and the saved PNG carry A1111's Hires keys."""
    from playwright.sync_api import expect

    page, _ = ui
    choose_checkpoint(page, NORMAL_CHECKPOINT)
    main_tab(page, "txt2img")
    page.locator("#txt2img_hr").get_by_text("Hires. fix").first.click()
    page.locator("#txt2img_enable_hr input[type='checkbox']").check()
    before = set(_saved_pngs(real_server))
    txt2img_generate(page, PROMPT, seed=SEED + 1, steps=3, size=64, cfg_presses=0)
    expect(page.locator("#txt2img_hr_size_text")).to_contain_text("128x128")
    picture = fetch_image(gallery_image_url(page, "txt2img", real_server.url))
    assert picture.size == (128, 128)
    info = page.locator("#html_info_txt2img")
    for text in ("Size: 64x64", "Denoising strength:", "Hires upscale: 2", "Hires upscaler: Latent"):
        expect(info).to_contain_text(text)
    new = [path for path in _saved_pngs(real_server) if path not in before]
    assert len(new) == 1
    with Image.open(new[0]) as saved:
        assert saved.size == (128, 128) and "Hires upscaler: Latent" in saved.info["parameters"]
    page.locator("#txt2img_enable_hr input[type='checkbox']").uncheck()


def test_upscale_action_runs_hires_on_the_finished_picture(ui: tuple[Any, PageWatch], real_server: RealServer
                                                           ) -> None:
    """Generate without Hires. fix, then press "Upscale" under the gallery: the shown picture becomes the 128x128
    hires result of that picture (same seed), with the Hires keys in its infotext."""
    from playwright.sync_api import expect

    page, watch = ui
    choose_checkpoint(page, NORMAL_CHECKPOINT)
    txt2img_generate(page, PROMPT, seed=SEED + 2, steps=3, size=64, cfg_presses=0)
    first = gallery_image_url(page, "txt2img", real_server.url)
    assert fetch_image(first).size == (64, 64)
    page.locator("#txt2img_upscale").click()
    info = page.locator("#html_info_txt2img")
    expect(info).to_contain_text("Hires upscaler:", timeout=60_000)
    expect(info).to_contain_text(f"Seed: {SEED + 2},")
    picture = fetch_image(gallery_image_url(page, "txt2img", real_server.url))
    assert picture.size == (128, 128)
    assert not watch.errors, watch.errors


def test_extras_upscales_an_uploaded_image(ui: tuple[Any, PageWatch], real_server: RealServer,
                                           tmp_path: Path) -> None:
    """Extras tab: upload a 64x48 picture, Generate with the defaults (scale by 2): the result is 128x96 and the
    postprocessing text is shown."""
    from playwright.sync_api import expect

    page, watch = ui
    source = tmp_path / "small.png"
    split_test_image(64).resize((64, 48)).save(source)
    main_tab(page, "Extras")
    upload(page, "extras_image", source)
    expect(page.locator("#extras_image img").first).to_be_visible(timeout=15_000)
    page.locator("#extras_generate").click()
    expect(page.locator("#html_info_extras")).to_contain_text("Postprocess upscale by: 2", timeout=60_000)
    picture = fetch_image(gallery_image_url(page, "extras", real_server.url))
    assert picture.size == (128, 96)
    assert not watch.errors, watch.errors


def test_interrogate_clip_puts_the_caption_into_the_img2img_prompt(ui: tuple[Any, PageWatch],
                                                                   real_server: RealServer, tmp_path: Path) -> None:
    """img2img's "Interrogate CLIP": without a captioning model a message names models/BLIP and the prompt stays;
    with the (tiny) BLIP model there, the caption replaces the prompt."""
    from playwright.sync_api import expect

    from tests.captioning import WORDS, save_tiny_blip

    page, watch = ui
    source = tmp_path / "picture.png"
    split_test_image(64).save(source)
    main_tab(page, "img2img")
    sub_tab(page, "img2img")
    upload(page, "img2img_image", source)
    expect(page.locator("#img2img_image img").first).to_be_visible(timeout=15_000)
    prompt = page.locator("#img2img_prompt textarea")
    prompt.fill("keep me")
    page.locator("#interrogate").click()
    expect(page.get_by_text("No captioning model").first).to_be_visible(timeout=30_000)
    assert prompt.input_value() == "keep me"
    save_tiny_blip(real_server.data_dir / "models" / "BLIP" / "blip-tiny")
    page.locator("#interrogate").click()
    expect(prompt).not_to_have_value("keep me", timeout=60_000)
    words = prompt.input_value().split()
    assert words and set(words) <= set(WORDS)
    assert not watch.errors, watch.errors


def test_poor_mans_outpainting_grows_the_picture_by_the_requested_pixels(ui: tuple[Any, PageWatch],
                                                                           real_server: RealServer,
                                                                           tmp_path: Path) -> None:
    """img2img with the Script "Poor man's outpainting" (16 px, left and right only): the 64x64 picture comes back
    96x64, the old picture in its middle kept where the mask is 0."""
    from playwright.sync_api import expect

    page, watch = ui
    choose_checkpoint(page, NORMAL_CHECKPOINT)
    original = split_test_image(64)
    source = tmp_path / "outpaint.png"
    original.save(source)
    main_tab(page, "img2img")
    sub_tab(page, "img2img")
    upload(page, "img2img_image", source)
    expect(page.locator("#img2img_image img").first).to_be_visible(timeout=15_000)
    for elem_id, value in (("img2img_sampling_steps", 3), ("img2img_width", 64), ("img2img_height", 64),
                           ("img2img_seed", SEED)):
        set_number(page, elem_id, value)
    select = page.locator("#img2img_script_select")
    select.locator("input").click()
    page.get_by_role("option", name="Poor man's outpainting").click()
    set_number(page, "script_img2img_outpainting_pixels", 16)
    sides = page.locator("#script_img2img_outpainting_direction")
    for side in ("up", "down"):
        sides.get_by_label(side, exact=True).uncheck()
    page.locator("#img2img_generate").click()
    expect(page.locator("#html_info_img2img")).to_contain_text("Size: 96x64", timeout=90_000)
    picture = fetch_image(gallery_image_url(page, "img2img", real_server.url))
    assert picture.size == (96, 64)
    pixels = np.asarray(picture.convert("RGB")).astype(int)
    kept = np.asarray(original).astype(int)
    assert np.array_equal(pixels[:, 40:56], kept[:, 24:40]), "the middle of the old picture changed"
    select.locator("input").click()
    page.get_by_role("option", name="None").click()
    assert not watch.errors, watch.errors
