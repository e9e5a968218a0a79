"""The Gallery tab: searching fills the page of thumbnails, paging, selection shows the infotext, the send-to
buttons reach txt2img / img2img / inpaint / PNG Info / Extras, delete moves the file to the trash, rebuild reads
the output folders."""

from __future__ import annotations

import types
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from modules import images, infotext
from modules.ui.gallery import PAGE_SIZE
from tests.ui.fakes import FakeApp
from tests.ui.helpers import Page


def text(prompt: str, seed: int) -> str:
    return infotext.build(prompt, "ugly", {"Steps": 7, "Sampler": "Euler a", "CFG scale": 3, "Seed": seed,
                                           "Size": "64x48", "Model": "tiny"})


def add(app: FakeApp, prompt: str, seed: int) -> Path:
    path = images.save_image(Image.new("RGB", (64, 48), (seed % 255, 0, 0)), app.paths.outputs / "txt2img-images",
                             seed=seed, infotext=text(prompt, seed))
    app.gallery.record(path)
    return path


def values_of(updates: dict) -> dict:
    return {getattr(c, "elem_id", None) or type(c).__name__: v for c, v in updates.items()}


def state(page: Page, elem_id: str, event: str = "click") -> gr.State:
    [found] = [c for c in page.handler(page.find(elem_id), event).inputs if isinstance(c, gr.State)]
    return found


def select(page: Page, entries: list[int], index: int) -> tuple[int | None, str]:
    fn = page.handler(page.find("gallery_images"), "select")
    return fn.fn(entries, types.SimpleNamespace(index=index))


def test_the_page_has_the_gallery_tab_between_pnginfo_and_settings(page: Page) -> None:
    tabs = [block.elem_id for block in page.blocks.blocks.values()
            if isinstance(block, gr.Tab) and str(block.elem_id or "").startswith("tab_")]
    assert tabs.index("tab_pnginfo") < tabs.index("tab_gallery") < tabs.index("tab_settings")


@pytest.mark.slow
def test_search_fills_the_gallery_and_pages(page: Page, app: FakeApp) -> None:
    for seed in range(PAGE_SIZE + 4):
        add(app, "a red fox" if seed % 2 else "a blue bird", seed)
    updates = values_of(page.call("gallery_search_button", "click", {"gallery_search": "RED FOX"}))
    shown = updates["gallery_images"]
    assert len(shown) == (PAGE_SIZE + 4) // 2 and all(Path(path).is_file() for path in shown)
    assert "Page <b>1</b> of <b>1</b>" in updates["gallery_page_info"] and "20 pictures" in updates["gallery_page_info"]

    first = values_of(page.call("gallery_search_button", "click"))
    assert len(first["gallery_images"]) == PAGE_SIZE and "of <b>2</b>" in first["gallery_page_info"]
    offset = state(page, "gallery_next")
    second = values_of(page.call("gallery_next", "click", extra={offset: 0}))
    assert len(second["gallery_images"]) == 4 and "Page <b>2</b>" in second["gallery_page_info"]
    assert not set(second["gallery_images"]) & set(first["gallery_images"])
    back = values_of(page.call("gallery_previous", "click", extra={offset: PAGE_SIZE}))
    assert back["gallery_images"] == first["gallery_images"]

    opened = page.call("tab_gallery", "select")
    model = opened[page.find("gallery_model")]
    assert ("tiny", "tiny") in [tuple(choice) for choice in model.choices]
    assert values_of(page.call("gallery_search_button", "click", {"gallery_seed": "3"}))["gallery_images"] == \
        [str(app.paths.outputs / "txt2img-images" / "00003-3.png")]
    with pytest.raises(gr.Error):
        page.call("gallery_search_button", "click", {"gallery_date_from": "yesterday"})


@pytest.mark.slow
def test_selection_and_send_to_the_other_tabs(page: Page, app: FakeApp) -> None:
    add(app, "a tree", 11)
    newest = add(app, "a lighthouse at dusk", 42)
    updates = page.call("gallery_search_button", "click")
    entries = updates[state(page, "gallery_images", "select")]
    chosen, info = select(page, entries, 0)
    assert "a lighthouse at dusk" in info and "Seed: 42" in info and "00001-42.png" in info
    selected = state(page, "gallery_send_to_pnginfo")

    sent = values_of(page.call("gallery_send_to_txt2img", "click", extra={selected: chosen}))
    assert sent["txt2img_prompt"] == "a lighthouse at dusk" and sent["txt2img_sampling_steps"] == 7
    assert sent["tabs"].selected == "txt2img"

    sent = values_of(page.call("gallery_send_to_img2img", "click", extra={selected: chosen}))
    assert sent["img2img_prompt"] == "a lighthouse at dusk" and sent["img2img_image"].size == (64, 48)
    assert sent["tabs"].selected == "img2img"
    sent = page.call("gallery_send_to_inpaint", "click", extra={selected: chosen})
    assert sent[page.find("img2maskimg")].size == (64, 48)

    sent = values_of(page.call("gallery_send_to_pnginfo", "click", extra={selected: chosen}))
    assert sent["pnginfo_image"] == str(newest) and "Seed: 42" in sent["State"]
    sent = values_of(page.call("gallery_send_to_extras", "click", extra={selected: chosen}))
    assert sent["extras_image"].info["parameters"] == text("a lighthouse at dusk", 42)
    assert sent["tabs"].selected == "extras"

    assert page.call("gallery_send_to_txt2img", "click", extra={selected: None}) == {}  # nothing selected


@pytest.mark.slow
def test_delete_moves_to_the_trash_and_rebuild_reads_the_folders(page: Page, app: FakeApp) -> None:
    kept = add(app, "kept", 1)
    doomed = add(app, "doomed", 2)
    entries = page.call("gallery_search_button", "click")[state(page, "gallery_images", "select")]
    chosen, _ = select(page, entries, 0)
    handler = page.handler(page.find("gallery_delete"), "click")
    selected = next(c for c in handler.inputs if c is state(page, "gallery_send_to_pnginfo"))
    updates = values_of(page.call("gallery_delete", "click", extra={selected: chosen}))
    assert updates["gallery_images"] == [str(kept)] and not doomed.exists()
    assert (app.paths.data_dir / "trash" / "outputs" / "txt2img-images" / doomed.name).is_file()

    extra = images.save_image(Image.new("RGB", (8, 8)), app.paths.outputs / "img2img-images" / "2026-01-01", seed=5,
                              infotext=text("copied in", 5))
    updates = values_of(page.call("gallery_rebuild", "click"))
    assert set(updates["gallery_images"]) == {str(kept), str(extra)}
