"""img2img's sub-tabs with the fake App: their order, Sketch / Inpaint sketch requests, and the Batch run (one fake
job per picture)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from modules.jobs import JobState
from modules.types import InpaintFill
from modules.ui.img2img import (
    SOURCE_BATCH,
    SOURCE_INPAINT_SKETCH,
    SOURCE_SKETCH,
    SUB_TAB_IDS,
    SUB_TAB_LABELS,
)
from tests.ui.fakes import COLOUR, FakeApp, make_app
from tests.ui.helpers import Page, merged, run_to_end

pytestmark = pytest.mark.slow


def _source_state(page: Page, source: str) -> tuple[Any, dict[Any, Any]]:
    """The sub-tab's select updates and the session State holding the source."""
    updates = page.call(SUB_TAB_IDS[source], "select")
    state = next(component for component, value in updates.items() if value == source)
    return state, updates


def _inputs(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (16, 16), (0, 90, 0)).save(folder / name)
    return folder


def test_sub_tabs_in_a1111_order(page: Page) -> None:
    tabs = page.find("mode_img2img")
    labels = [child.label for child in tabs.children]
    assert labels == list(SUB_TAB_LABELS.values())
    assert labels == ["img2img", "Sketch", "Inpaint", "Inpaint sketch", "Inpaint upload", "Batch"]
    for source, inpaint_options in ((SOURCE_BATCH, True), (SOURCE_SKETCH, False), (SOURCE_INPAINT_SKETCH, True)):
        _, updates = _source_state(page, source)
        assert updates[page.find("inpaint_controls")].visible is inpaint_options


def _painted() -> dict[str, Any]:
    """A sketch editor's value: a grey picture with a red stroke."""
    background = Image.new("RGB", (32, 32), (128, 128, 128))
    composite = background.copy()
    composite.paste((255, 0, 0), (8, 8, 16, 16))
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (8, 8, 16, 16))
    return {"background": background, "layers": [layer], "composite": composite}


def test_sketch_makes_an_img2img_request_with_the_painted_picture(page: Page, app: FakeApp) -> None:
    state, _ = _source_state(page, SOURCE_SKETCH)
    run_to_end(page.call("img2img_generate", "click", {"img2img_prompt": "sketch", "img2img_sketch": _painted()},
                         extra={state: SOURCE_SKETCH}))
    request = app.generation.requests[-1]
    assert (request.mode, request.prompt, request.mask) == ("img2img", "sketch", None)
    assert request.init_image.getpixel((10, 10))[:3] == (255, 0, 0)
    assert request.init_image.getpixel((0, 0))[:3] == (128, 128, 128)
    with pytest.raises(gr.Error, match="Sketch needs an image"):
        run_to_end(page.call("img2img_generate", "click", {}, extra={state: SOURCE_SKETCH}))


def test_inpaint_sketch_paints_the_mask_and_the_new_colours(page: Page, app: FakeApp) -> None:
    state, _ = _source_state(page, SOURCE_INPAINT_SKETCH)
    run_to_end(page.call("img2img_generate", "click", {
        "inpaint_sketch": _painted(), "img2img_mask_alpha": 0, "img2img_inpainting_fill": "fill",
        "img2img_mask_blur": 0}, extra={state: SOURCE_INPAINT_SKETCH}))
    request = app.generation.requests[-1]
    assert request.mode == "inpaint" and request.inpainting_fill is InpaintFill.FILL  # the tab's Masked content
    assert request.mask.getbbox() == (8, 8, 16, 16) and request.mask.getpixel((9, 9)) == 255
    assert request.init_image.getpixel((9, 9)) == (255, 0, 0) and request.init_image.getpixel((0, 0)) == (128,) * 3
    run_to_end(page.call("img2img_generate", "click", {"inpaint_sketch": _painted(), "img2img_mask_alpha": 50},
                         extra={state: SOURCE_INPAINT_SKETCH}))
    assert app.generation.requests[-1].mask.getpixel((9, 9)) == 127
    unpainted = {**_painted(), "composite": _painted()["background"]}
    with pytest.raises(gr.Error, match="mask is empty"):
        run_to_end(page.call("img2img_generate", "click", {"inpaint_sketch": unpainted},
                             extra={state: SOURCE_INPAINT_SKETCH}))


def test_batch_runs_one_job_per_picture_and_saves_named_after_inputs(page: Page, app: FakeApp,
                                                                     tmp_path: Path) -> None:
    _inputs(tmp_path, ["b.png", "a.png", "c.jpg"])
    (tmp_path / "in" / "notes.txt").write_text("not a picture")
    (tmp_path / "masks").mkdir()
    Image.new("L", (16, 16), 255).save(tmp_path / "masks" / "b.webp")
    Image.new("L", (16, 16), 255).save(tmp_path / "masks" / "c.png")
    state, _ = _source_state(page, SOURCE_BATCH)
    warnings: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gr, "Warning", lambda message, *a, **k: warnings.append(message))
        updates = run_to_end(page.call("img2img_generate", "click", {
            "img2img_prompt": "batch", "img2img_sampling_steps": 2, "img2img_width": 16, "img2img_height": 16,
            "img2img_batch_input_dir": "in", "img2img_batch_output_dir": "out",
            "img2img_batch_inpaint_mask_dir": "masks"}, extra={state: SOURCE_BATCH}))
    requests = app.generation.requests
    assert [(r.mode, r.prompt, r.init_image.size) for r in requests] == \
        [("img2img", "batch", (16, 16)), ("inpaint", "batch", (16, 16)), ("inpaint", "batch", (16, 16))]
    assert requests[0].init_image.getpixel((0, 0)) == (0, 90, 0)
    assert requests[1].mask.convert("L").getpixel((0, 0)) == 255
    assert all(r.overrides == {"grid_save": False, "return_grid": False} for r in requests)  # no grid per input
    saved = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert saved == ["00000-a.png", "00001-b.png", "00002-c.png"]
    with Image.open(tmp_path / "out" / "00000-a.png") as written:
        assert written.getpixel((0, 0)) == COLOUR and written.info["parameters"].startswith("batch\n")
    assert any("notes.txt" in warning for warning in warnings)
    progress = [u[page.find("img2img_progress")] for u in updates if page.find("img2img_progress") in u]
    assert any("Image 1 of 3" in text for text in progress) and any("Image 3 of 3" in text for text in progress)
    final = merged(updates)
    assert len(final[page.find("img2img_gallery")]) == 3
    assert "notes.txt" in final[page.find("html_info_img2img")]


def test_batch_png_info_and_default_output_folder(page: Page, app: FakeApp, tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    folder = _inputs(tmp_path, [])
    info = PngInfo()
    info.add_text("parameters", "a fox\nNegative prompt: rain\nSteps: 3, Sampler: Euler a, CFG scale: 2, Seed: 9, "
                                "Size: 16x16, Model hash: 0123456789")
    Image.new("RGB", (16, 16)).save(folder / "fox.png", pnginfo=info)
    state, _ = _source_state(page, SOURCE_BATCH)
    run_to_end(page.call("img2img_generate", "click", {
        "img2img_prompt": "style", "img2img_batch_input_dir": str(folder), "img2img_batch_use_png_info": True,
        "img2img_batch_png_info_props": ["Prompt", "Seed", "Sampler", "Model hash"]}, extra={state: SOURCE_BATCH}))
    request = app.generation.requests[-1]
    assert (request.prompt, request.negative_prompt, request.seed, request.sampler) == ("style a fox", "", 9, "Euler a")
    assert request.checkpoint == "tiny.safetensors [0123456789]" and request.steps != 3
    assert not (tmp_path / "out").exists()  # no output folder: the usual saving of the job (not done by the fake)


def test_batch_refuses_folders_outside_the_data_dir_and_empty_ones(page: Page, app: FakeApp, tmp_path: Path) -> None:
    state, _ = _source_state(page, SOURCE_BATCH)
    with pytest.raises(gr.Error, match="outside the data directory"):
        run_to_end(page.call("img2img_generate", "click", {"img2img_batch_input_dir": "/etc"},
                             extra={state: SOURCE_BATCH}))
    with pytest.raises(gr.Error, match="needs an input directory"):
        run_to_end(page.call("img2img_generate", "click", {}, extra={state: SOURCE_BATCH}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(gr.Error, match="holds no images"):
        run_to_end(page.call("img2img_generate", "click", {"img2img_batch_input_dir": "empty"},
                             extra={state: SOURCE_BATCH}))
    assert app.generation.requests == []


def test_outside_folders_are_allowed_with_the_flag(tmp_path: Path, token_counter) -> None:
    from dataclasses import replace

    from modules.ui.layout import build_ui

    app = make_app(tmp_path / "data")
    try:
        app.launch = replace(app.launch, allow_batch_dirs_outside_data=True)
        page = Page(build_ui(app, tokens=token_counter))
        folder = _inputs(tmp_path, ["x.png"])
        state, _ = _source_state(page, SOURCE_BATCH)
        run_to_end(page.call("img2img_generate", "click", {"img2img_batch_input_dir": str(folder),
                                                           "img2img_batch_output_dir": str(tmp_path / "o")},
                             extra={state: SOURCE_BATCH}))
        assert [path.name for path in (tmp_path / "o").iterdir()] == ["00000-x.png"]
    finally:
        app.close()


def test_interrupt_stops_before_the_next_picture(tmp_path: Path, token_counter) -> None:
    from modules.ui.layout import build_ui

    app = make_app(tmp_path, step_delay=0.05)
    try:
        page = Page(build_ui(app, tokens=token_counter))
        _inputs(tmp_path, ["1.png", "2.png", "3.png"])
        state, _ = _source_state(page, SOURCE_BATCH)
        stream = page.call("img2img_generate", "click", {"img2img_batch_input_dir": "in",
                                                         "img2img_sampling_steps": 20}, extra={state: SOURCE_BATCH})
        first = next(stream)
        job_id = first[_job_state(page)]
        while app.jobs.get(job_id).state is JobState.QUEUED:  # interrupt it while it runs
            time.sleep(0.01)
        interrupt = page.handler(page.find("img2img_interrupt"), "click")
        interrupt.fn(job_id, _Session())
        stops = [fn for fn in page.blocks.fns.values()
                 if any(t[0] == page.find("img2img_interrupt")._id for t in fn.targets)]
        for fn in stops[1:]:
            fn.fn(_Session())
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gr, "Warning", lambda *a, **k: None)
            rest = list(stream)
        assert len(app.generation.requests) == 1
        assert app.jobs.get(job_id).state is JobState.INTERRUPTED
        assert merged(rest)[page.find("img2img_generate")].visible is True
    finally:
        app.close()


class _Session:
    session_hash = "s1"


def _job_state(page: Page) -> Any:
    fn = page.handler(page.find("img2img_interrupt"), "click")
    return fn.inputs[0]



def _resize_by_state(page: Page) -> Any:
    """The session State that says which of "Resize to" / "Resize by" is selected (set by the tabs' select)."""
    from modules.ui.common import RESIZE_BY

    assert page.call("img2img_tab_resize_by", "select") == RESIZE_BY
    return page.handler(page.find("img2img_tab_resize_by"), "select").outputs[0]


def test_resize_by_takes_the_size_from_the_picture(page: Page, app: FakeApp) -> None:
    from modules.ui.common import RESIZE_BY, RESIZE_TO

    state = _resize_by_state(page)
    picture = Image.new("RGB", (100, 60), (0, 90, 0))
    fields = {"img2img_prompt": "bigger", "img2img_image": picture, "img2img_scale": 1.5, "img2img_width": 512,
              "img2img_height": 512}
    run_to_end(page.call("img2img_generate", "click", fields, extra={state: RESIZE_BY}))
    request = app.generation.requests[-1]
    assert (request.width, request.height) == (144, 88)  # 150x90 down to multiples of 8, as A1111's result
    run_to_end(page.call("img2img_generate", "click", fields, extra={state: RESIZE_TO}))
    assert (app.generation.requests[-1].width, app.generation.requests[-1].height) == (512, 512)
    preview = page.call("img2img_scale", "release", {"img2img_scale": 2.0, "img2img_image": picture})
    assert preview == "resize: from <span class='resolution'>100x60</span> to <span class='resolution'>200x120</span>"
    assert page.call("img2img_scale", "release", {"img2img_image": None}) == "no image selected"


def test_batch_resize_by_scales_each_picture(page: Page, app: FakeApp, tmp_path: Path) -> None:
    from modules.ui.common import RESIZE_BY

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 64)).save(folder / "a.png")
    Image.new("RGB", (96, 64)).save(folder / "b.png")
    source, _ = _source_state(page, SOURCE_BATCH)
    run_to_end(page.call("img2img_generate", "click", {
        "img2img_prompt": "batch", "img2img_sampling_steps": 2, "img2img_batch_input_dir": "in",
        "img2img_scale": 0.5}, extra={source: SOURCE_BATCH, _resize_by_state(page): RESIZE_BY}))
    assert [(r.width, r.height) for r in app.generation.requests] == [(64, 64), (64, 64)]  # at least 64
    run_to_end(page.call("img2img_generate", "click", {
        "img2img_prompt": "batch", "img2img_batch_input_dir": "in", "img2img_scale": 2},
        extra={source: SOURCE_BATCH, _resize_by_state(page): RESIZE_BY}))
    assert [(r.width, r.height) for r in app.generation.requests[2:]] == [(128, 128), (192, 128)]


def test_copy_image_to_another_sub_tab(page: Page) -> None:
    from modules.ui.img2img import SOURCE_INPAINT

    picture = Image.new("RGB", (24, 16), (0, 0, 200))
    updates = page.call("img2img_copy_to_inpaint", "click", {"img2img_image": picture})
    assert updates[page.find("img2maskimg")] is picture
    assert updates[page.find("mode_img2img")].constructor_args["selected"] == SUB_TAB_IDS[SOURCE_INPAINT]
    assert SOURCE_INPAINT in updates.values()  # the session's source follows the sub-tab
    painted = {"background": picture, "layers": [Image.new("RGBA", (24, 16))], "composite": picture}
    back = page.call("inpaint_copy_to_img2img", "click", {"img2maskimg": painted})
    assert back[page.find("img2img_image")].tobytes() == picture.tobytes()
    sketch = page.call("sketch_copy_to_inpaint_sketch", "click", {"img2img_sketch": _painted()})
    assert sketch[page.find("inpaint_sketch")].getpixel((10, 10))[:3] == (255, 0, 0)  # the painted picture
    with pytest.warns(UserWarning, match="no image in img2img"):
        assert page.call("img2img_copy_to_sketch", "click", {"img2img_image": None}) == {}
