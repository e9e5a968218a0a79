"""The real page in headless Chromium: tabs, token counter, CFG slider, Generate -> picture and infotext.

The UI runs in-process on a free local port with the fake App of `fakes.py` (solid-colour pictures). Skipped when
/usr/bin/chromium is missing (install with `apt-get install -y chromium`; never `playwright install`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from modules import images, infotext
from modules.ui.tokens import TokenCounter
from tests.browser import CHROMIUM
from tests.e2e.harness import upload_to_editor
from tests.ui.fakes import FakeApp, make_app
from tests.ui.helpers import serving_ui

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture
def served(tmp_path: Path, token_counter: TokenCounter) -> Iterator[tuple[str, FakeApp]]:
    app = make_app(tmp_path, step_delay=0.05)
    with serving_ui(app, token_counter) as url:
        yield url, app


@pytest.fixture
def browser_page(served: tuple[str, FakeApp], chromium: object) -> Iterator[object]:
    url, _ = served
    external: list[str] = []
    page = chromium.new_page(viewport={"width": 1600, "height": 1000})
    page.on("request", lambda request: external.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    try:
        yield page
    finally:
        shots = os.environ.get("UI_SCREENSHOT_DIR")
        if shots:
            page.screenshot(path=str(Path(shots) / "browser-test-end.png"), full_page=True)
        page.close()
    assert not external, f"the page fetched external resources: {external}"


def test_tabs_prompt_cfg_generate(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (_, app) = browser_page, served
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)

    page.get_by_role("tab", name="img2img", exact=True).first.click()
    expect(page.locator("#img2img_generate")).to_be_visible()
    page.get_by_role("tab", name="Inpaint", exact=True).click()
    expect(page.locator("#img2maskimg")).to_be_visible()
    page.get_by_role("tab", name="PNG Info").click()
    expect(page.locator("#pnginfo_image")).to_be_visible()
    page.get_by_role("tab", name="txt2img").click()

    page.locator("#txt2img_prompt textarea").fill("a cat, sitting")
    expect(page.locator("#txt2img_prompt_token_counter")).to_contain_text("4/75", timeout=15_000)

    cfg = page.locator("#txt2img_cfg_scale input[type='number']")
    cfg.fill("4.5")
    cfg.press("Enter")
    steps = page.locator("#txt2img_sampling_steps input[type='number']")
    steps.fill("4")
    steps.press("Enter")

    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=30_000)
    expect(page.locator("#html_info_txt2img")).to_contain_text("CFG scale: 4.5", timeout=10_000)
    expect(page.locator("#html_info_txt2img")).to_contain_text("a cat, sitting")
    expect(page.locator("#txt2img_generate")).to_be_visible()
    request = app.generation.requests[-1]
    assert (request.prompt, request.cfg_scale, request.steps) == ("a cat, sitting", 4.5, 4)
    assert app.jobs.list()[-1].owner  # the browser session owns its job


def test_progress_then_interrupt(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (_, app) = browser_page, served
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    steps = page.locator("#txt2img_sampling_steps input[type='number']")
    steps.fill("150")
    steps.press("Enter")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_progress .progress-bar")).to_be_visible(timeout=15_000)
    expect(page.locator("#txt2img_progress")).to_contain_text("/150")
    page.locator("#txt2img_interrupt").click()
    expect(page.get_by_text("Interrupted:").first).to_be_visible(timeout=15_000)
    expect(page.locator("#txt2img_generate")).to_be_visible()
    assert app.jobs.list()[-1].cancel_token.interrupted


def test_gallery_tab_shows_saved_pictures_and_sends_one(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (_, app) = browser_page, served
    for seed, prompt in ((7, "a quiet harbour"), (8, "a lighthouse at night")):
        app.gallery.record(images.save_image(
            Image.new("RGB", (64, 64), (seed * 20, 90, 160)), app.paths.outputs / "txt2img-images", seed=seed,
            infotext=infotext.build(prompt, "", {"Steps": 6, "Sampler": "Euler", "CFG scale": 5, "Seed": seed,
                                                 "Size": "64x64", "Model": "tiny"})))
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="Gallery").click()
    thumbnails = page.locator("#gallery_images img")
    expect(thumbnails).to_have_count(2, timeout=15_000)
    expect(page.locator("#gallery_page_info")).to_contain_text("2 pictures")
    # served straight from the output folder (a static path), not a copy in Gradio's cache
    assert "outputs/txt2img-images/" in (thumbnails.first.get_attribute("src") or "")
    page.wait_for_function("() => [...document.querySelectorAll('#gallery_images img')]"
                           ".every(img => img.complete && img.naturalWidth === 64)", timeout=15_000)
    thumbnails.first.click()
    expect(page.locator("#gallery_info")).to_contain_text("a lighthouse at night", timeout=10_000)
    page.locator("#gallery_send_to_txt2img").click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a lighthouse at night", timeout=10_000)


def _stroke_and_generate(page, tmp_path, sub_tab: str, editor: str) -> None:
    """Load a grey 64x64 picture into an img2img sketch editor, draw a stroke across its middle row, Generate."""
    from playwright.sync_api import expect

    picture = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(picture)
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    page.get_by_role("tab", name=sub_tab, exact=True).click()
    upload_to_editor(page, editor, picture)  # waits until the editor has drawn it
    canvas = page.locator(f"#{editor} canvas").first
    expect(canvas).to_be_visible(timeout=15_000)
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=10)
    page.mouse.up()
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img").first).to_be_visible(timeout=30_000)


def test_sketch_stroke_changes_the_colour_under_it(browser_page, served, tmp_path) -> None:
    page, (_, app) = browser_page, served
    _stroke_and_generate(page, tmp_path, "Sketch", "img2img_sketch")
    request = app.generation.requests[-1]
    assert request.mode == "img2img" and request.init_image.size == (64, 64)
    middle = request.init_image.convert("RGB").getpixel((32, 32))
    assert middle != (128, 128, 128), "the stroke did not change the colour under it"
    assert request.init_image.convert("RGB").getpixel((2, 2)) == (128, 128, 128)


def test_enqueue_three_cancel_the_second_two_results_arrive(browser_page, served) -> None:
    import threading

    from playwright.sync_api import expect

    from modules.jobs import JobState

    page, (_, app) = browser_page, served
    expect(page.locator("#txt2img_enqueue")).to_be_visible(timeout=30_000)
    started, release = threading.Event(), threading.Event()
    app.jobs.submit(lambda ctx: (started.set(), release.wait(30)), owner="someone else")  # holds the worker
    assert started.wait(10)
    steps = page.locator("#txt2img_sampling_steps input[type='number']")
    steps.fill("3")
    steps.press("Enter")
    prompt = page.locator("#txt2img_prompt textarea")
    table = page.locator("#txt2img_queue_table")
    for n in (1, 2, 3):
        prompt.fill(f"queued picture {n}")
        page.locator("#txt2img_enqueue").click()
        expect(table).to_contain_text(f"queued picture {n}", timeout=15_000)
    expect(page.locator("#txt2img_queue_summary")).to_contain_text("3 of your jobs", timeout=10_000)
    expect(page.locator("#txt2img_queue_summary")).to_contain_text("1 job of other users")
    assert [job.state for job in app.jobs.list()[1:]] == [JobState.QUEUED] * 3  # Enqueue returned at once
    second = app.jobs.list()[2]
    cells = table.get_by_role("gridcell")
    cells.filter(has_text="queued picture 2").first.click()
    expect(page.locator("#txt2img_queue_job input")).to_have_value(re.compile(second.id[:8]), timeout=10_000)
    page.locator("#txt2img_queue_cancel").click()
    expect(table).to_contain_text("cancelled", timeout=10_000)
    assert [job.state for job in app.jobs.list()[1:]] == [JobState.QUEUED, JobState.CANCELLED, JobState.QUEUED]
    release.set()
    expect(cells.filter(has_text=re.compile(r"^\s*done\s*$"))).to_have_count(2, timeout=20_000)
    assert [request.prompt for request in app.generation.requests] == ["queued picture 1", "queued picture 3"]
    cells.filter(has_text="queued picture 3").first.click()
    page.locator("#txt2img_queue_open").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=15_000)
    expect(page.locator("#html_info_txt2img")).to_contain_text("queued picture 3", timeout=10_000)


def test_inpaint_sketch_stroke_is_the_mask_and_keeps_the_pixels_outside_it(browser_page, served, tmp_path) -> None:
    page, (_, app) = browser_page, served
    _stroke_and_generate(page, tmp_path, "Inpaint sketch", "inpaint_sketch")
    request = app.generation.requests[-1]
    assert request.mode == "inpaint" and request.mask is not None
    mask = request.mask.convert("L")
    assert mask.getpixel((32, 32)) > 0 and mask.getpixel((2, 2)) == 0  # the stroke, not the corner
    init = request.init_image.convert("RGB")
    assert init.getpixel((2, 2)) == (128, 128, 128) and init.getpixel((2, 61)) == (128, 128, 128)


def test_batch_over_a_folder_of_three_writes_three_outputs_with_infotexts(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (_, app) = browser_page, served
    folder = app.paths.data_dir / "batch-in"
    folder.mkdir(parents=True)
    for name, colour in (("one.png", (200, 0, 0)), ("two.png", (0, 200, 0)), ("three.png", (0, 0, 200))):
        Image.new("RGB", (64, 64), colour).save(folder / name)
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    page.get_by_role("tab", name="Batch", exact=True).click()
    page.locator("#img2img_batch_input_dir textarea").fill("batch-in")
    page.locator("#img2img_batch_output_dir textarea").fill("batch-out")
    page.locator("#img2img_prompt textarea").fill("a batch")
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img")).to_have_count(3, timeout=60_000)
    out = app.paths.data_dir / "batch-out"
    written = sorted(path.name for path in out.iterdir())
    assert written == ["00000-one.png", "00001-three.png", "00002-two.png"]
    for name in written:
        with Image.open(out / name) as picture:
            assert picture.info["parameters"].startswith("a batch\n")
    assert len(app.generation.requests) == 3


def test_save_and_zip_keep_the_picture_and_offer_it_for_download(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (url, app) = browser_page, served
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.locator("#txt2img_prompt textarea").fill("keep this one")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=30_000)
    page.locator("#save_txt2img").click()
    files = page.locator("#download_files_txt2img")
    expect(files).to_contain_text(re.compile(r"00000-1234\s*\.png"), timeout=15_000)
    saved = app.paths.data_dir / "log" / "images" / "00000-1234.png"
    assert (images.read_infotext_file(saved) or "").startswith("keep this one")
    href = files.locator("a").first.get_attribute("href")
    assert href is not None
    download = page.request.get(href if href.startswith("http") else url.rstrip("/") + "/" + href.lstrip("/"))
    assert download.ok and download.body() == saved.read_bytes()  # the browser gets the saved file itself
    page.locator("#save_zip_txt2img").click()
    expect(files).to_contain_text(re.compile(r"\s*\.zip"), timeout=15_000)
    assert len(list((app.paths.data_dir / "log" / "images").glob("*.zip"))) == 1
    assert (app.paths.data_dir / "log" / "images" / "00001-1234.png").exists()


def test_img2img_resize_by_shows_and_uses_the_scaled_size(browser_page, served, tmp_path) -> None:
    from playwright.sync_api import expect

    from tests.e2e.harness import upload

    page, (_, app) = browser_page, served
    picture = tmp_path / "small.png"
    Image.new("RGB", (80, 64), (10, 120, 10)).save(picture)
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="img2img", exact=True).first.click()
    upload(page, "img2img_image", picture)
    page.get_by_role("tab", name="Resize by", exact=True).click()
    preview = page.locator("#img2img_scale_resolution_preview")
    expect(preview).to_contain_text("resize: from 80x64 to 80x64", timeout=15_000)
    scale = page.locator("#img2img_scale input[type='number']")
    scale.fill("2")
    scale.press("Enter")
    scale.blur()
    page.locator("#img2img_scale input[type='range']").dispatch_event("pointerup")
    expect(preview).to_contain_text("to 160x128", timeout=15_000)
    page.locator("#img2img_prompt textarea").fill("twice as big")
    page.locator("#img2img_generate").click()
    expect(page.locator("#img2img_gallery img").first).to_be_visible(timeout=30_000)
    request = app.generation.requests[-1]
    assert (request.prompt, request.width, request.height) == ("twice as big", 160, 128)


def test_style_editor_saves_a_new_style_that_the_styles_list_offers(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, (_, app) = browser_page, served
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
    page.locator("#txt2img_styles_edit_button").click()
    name = page.locator("#txt2img_edit_style_name input")
    expect(name).to_be_visible(timeout=10_000)
    name.fill("watercolour")
    name.press("Enter")
    page.locator("#txt2img_edit_style_prompt textarea").fill("{prompt}, watercolour painting")
    page.locator("#txt2img_edit_style_save").click()
    expect(page.locator("#txt2img_styles")).to_be_visible(timeout=10_000)
    page.locator("#txt2img_styles input").click()
    expect(page.get_by_role("option", name="watercolour").first).to_be_visible(timeout=10_000)
    style = app.styles.get("watercolour")
    assert style is not None and style.prompt == "{prompt}, watercolour painting"
    assert "watercolour" in app.styles.path.read_text(encoding="utf-8")


def test_ctrl_up_and_down_edit_the_attention_weight_in_a_prompt(browser_page, served) -> None:
    from playwright.sync_api import expect

    page, _ = browser_page, served
    box = page.locator("#txt2img_prompt textarea")
    expect(box).to_be_visible(timeout=30_000)
    box.fill("a red cat, <lora:film:0.8>")
    box.evaluate("area => area.setSelectionRange(7, 7)")  # the caret in "cat"
    box.press("Control+ArrowUp")
    expect(box).to_have_value("a red (cat:1.1), <lora:film:0.8>")
    box.press("Control+ArrowUp")  # the caret stays in the block: its weight goes on
    expect(box).to_have_value("a red (cat:1.2), <lora:film:0.8>")
    box.press("Control+ArrowDown")
    box.press("Control+ArrowDown")
    expect(box).to_have_value("a red cat, <lora:film:0.8>")  # back at 1: the brackets go
    box.evaluate("area => area.setSelectionRange(area.value.length - 3, area.value.length - 3)")
    box.press("Control+ArrowUp")
    expect(box).to_have_value("a red cat, <lora:film:0.85>")
    box.evaluate("area => area.setSelectionRange(0, 5)")  # a selection: "a red"
    box.press("Control+ArrowDown")
    expect(box).to_have_value("(a red:0.9) cat, <lora:film:0.85>")
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=30_000)
    assert served[1].generation.requests[-1].prompt == "(a red:0.9) cat, <lora:film:0.85>"  # Gradio saw it
