"""The ControlNet accordion of txt2img and img2img (fake App, the built-in extensions loaded): three unit tabs with
A1111's controls, a page job with an enabled unit carries the same unit an API client sends, the preprocessor
preview, the sliders that follow the preprocessor, and the model list's refresh button."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import FakeApp
from tests.ui.helpers import Page, run_to_end

pytestmark = pytest.mark.slow  # each test builds the whole page

MODEL_BYTES = b"not really a ControlNet, but a file to list and hash"


@pytest.fixture
def cn_page(app: FakeApp, tmp_path: Path, token_counter: TokenCounter) -> Page:
    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    (folder / "control_canny.safetensors").write_bytes(MODEL_BYTES)
    app.extensions = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], settings=app.settings,
                                   data_dir=tmp_path)
    app.extensions.load()
    return Page(build_ui(app, tokens=token_counter))


def _id(mode: str, index: int, name: str) -> str:
    return f"script_{mode}_controlnet_unit{index}_{name}"


def _edge_picture() -> Image.Image:
    array = np.zeros((64, 64, 3), np.uint8)
    array[:, 32:] = 255
    return Image.fromarray(array)


def _script() -> object:
    return sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]


def test_accordion_with_three_unit_tabs_in_both_tabs(cn_page: Page) -> None:
    for mode in ("txt2img", "img2img"):
        assert cn_page.find(f"{mode}_script_controlnet").label == "ControlNet"  # the always-on accordion
        for index in range(3):
            assert cn_page.find(_id(mode, index, "tab")).label == f"ControlNet Unit {index}"
            for name in ("enabled", "image", "module", "model", "refresh", "weight", "start", "end", "resolution",
                         "threshold_a", "threshold_b", "pixel_perfect", "control_mode", "resize_mode",
                         "preview_button", "preview"):
                cn_page.find(_id(mode, index, name))
        model = cn_page.find(_id(mode, 0, "model"))
        titles = [choice[0] for choice in model.choices]
        assert titles[0] == "None" and titles[1].startswith("control_canny [") and model.value == "None"
        assert [choice[0] for choice in cn_page.find(_id(mode, 0, "module")).choices][:3] == ["none", "invert",
                                                                                               "canny"]
    assert "independent" in cn_page.find(_id("img2img", 0, "independent")).label  # unticked: the img2img image


def test_an_enabled_unit_reaches_the_request_as_the_apis_unit(cn_page: Page, app: FakeApp) -> None:
    picture = _edge_picture()
    title = [choice[0] for choice in cn_page.find(_id("txt2img", 1, "model")).choices][1]
    run_to_end(cn_page.call("txt2img_generate", "click", {
        "txt2img_prompt": "a house", _id("txt2img", 1, "enabled"): True, _id("txt2img", 1, "image"): picture,
        _id("txt2img", 1, "module"): "canny", _id("txt2img", 1, "model"): title, _id("txt2img", 1, "weight"): 0.7,
        _id("txt2img", 1, "threshold_a"): 80, _id("txt2img", 1, "threshold_b"): 160,
        _id("txt2img", 1, "end"): 0.5, _id("txt2img", 1, "control_mode"): "ControlNet is more important",
    }))
    units = app.generation.requests[-1].extension_args["controlnet"]["units"]
    assert [unit["enabled"] for unit in units] == [False, True]  # unit 2 (disabled, last) left out

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    api_unit = {"enabled": True, "module": "canny", "model": title, "weight": 0.7, "threshold_a": 80,
                "threshold_b": 160, "guidance_end": 0.5, "control_mode": "ControlNet is more important",
                "image": base64.b64encode(buffer.getvalue()).decode()}
    api = app.extensions.scripts.request_from_api(None, [], {"controlnet": {"args": [{"enabled": False}, api_unit]}},
                                                  app.generation.requests[-1])
    script = _script()
    page_parsed = [script.parse_unit(unit, index) for index, unit in enumerate(units)]
    api_parsed = [script.parse_unit(unit, index)
                  for index, unit in enumerate(api.extension_args["controlnet"]["units"])]
    for ours, theirs in zip(page_parsed, api_parsed, strict=True):
        assert {**vars(ours), "picture": None, "_tensors": None} == {**vars(theirs), "picture": None, "_tensors": None}
    assert np.array_equal(np.asarray(page_parsed[1].picture.convert("RGB")),
                          np.asarray(api_parsed[1].picture.convert("RGB")))

    run_to_end(cn_page.call("txt2img_generate", "click", {"txt2img_prompt": "plain"}))
    assert app.generation.requests[-1].extension_args["controlnet"] == {"units": []}


def test_img2img_unit_without_an_image_uses_the_img2img_image(cn_page: Page, app: FakeApp) -> None:
    run_to_end(cn_page.call("img2img_generate", "click", {
        "img2img_prompt": "x", "img2img_image": Image.new("RGB", (64, 64)), _id("img2img", 0, "enabled"): True,
        _id("img2img", 0, "model"): "control_canny",
    }))
    request = app.generation.requests[-1]
    (unit,) = request.extension_args["controlnet"]["units"]
    assert unit["enabled"] and unit["image"] is None and request.init_image is not None  # before_job takes it


def test_the_mask_upload_and_the_independent_control_image(cn_page: Page, app: FakeApp) -> None:
    """A unit's mask travels as A1111's `mask_image`; in img2img the unit's uploads count (and show) only with
    "Upload independent control image" ticked, otherwise the unit takes the img2img image and mask."""
    picture, mask = _edge_picture(), Image.new("L", (64, 64), 255)
    unit0 = {_id("txt2img", 0, "enabled"): True, _id("txt2img", 0, "model"): "control_canny",
             _id("txt2img", 0, "module"): "inpaint_only", _id("txt2img", 0, "image"): picture,
             _id("txt2img", 0, "mask"): mask}
    run_to_end(cn_page.call("txt2img_generate", "click", {"txt2img_prompt": "x", **unit0}))
    (unit,) = app.generation.requests[-1].extension_args["controlnet"]["units"]
    assert unit["image"] is picture and unit["mask_image"] is mask and unit["module"] == "inpaint_only"
    with pytest.raises(KeyError):
        cn_page.find(_id("txt2img", 0, "independent"))  # txt2img has no img2img image to fall back on

    image_id, mask_id, independent = (_id("img2img", 0, name) for name in ("image", "mask", "independent"))
    assert not cn_page.find(image_id).visible and not cn_page.find(mask_id).visible
    assert cn_page.find(independent).value is False
    shown = cn_page.call(independent, "change", {independent: True})
    assert [update["visible"] for update in shown] == [True, True]
    assert [update["visible"] for update in cn_page.call(independent, "change", {independent: False})] == [False] * 2
    values = {"img2img_prompt": "x", "img2img_image": Image.new("RGB", (64, 64)), _id("img2img", 0, "enabled"): True,
              _id("img2img", 0, "model"): "control_canny", image_id: picture, mask_id: mask}
    run_to_end(cn_page.call("img2img_generate", "click", values))
    (unit,) = app.generation.requests[-1].extension_args["controlnet"]["units"]
    assert unit["image"] is None and "mask_image" not in unit  # unticked: the img2img image and mask
    run_to_end(cn_page.call("img2img_generate", "click", {**values, independent: True}))
    (unit,) = app.generation.requests[-1].extension_args["controlnet"]["units"]
    assert unit["image"] is picture and unit["mask_image"] is mask
    parsed = _script().parse_unit(unit, 0)
    assert parsed.picture is picture and parsed.mask is mask


def test_preview_shows_the_preprocessed_image(cn_page: Page) -> None:
    picture = _edge_picture()
    button = _id("txt2img", 0, "preview_button")
    inverted = cn_page.call(button, "click", {_id("txt2img", 0, "image"): picture,
                                              _id("txt2img", 0, "module"): "invert"})
    assert np.array_equal(np.asarray(inverted), 255 - np.asarray(picture))
    with pytest.warns(UserWarning, match="upload a control image"):
        assert cn_page.call(button, "click", {_id("txt2img", 0, "module"): "invert"}) is None


def test_preview_shows_the_canny_edges(cn_page: Page) -> None:
    pytest.importorskip("cv2")
    button = _id("img2img", 2, "preview_button")
    edges = cn_page.call(button, "click", {_id("img2img", 2, "image"): _edge_picture(),
                                           _id("img2img", 2, "module"): "canny",
                                           _id("img2img", 2, "resolution"): 64,
                                           _id("img2img", 2, "threshold_a"): 100,
                                           _id("img2img", 2, "threshold_b"): 200})
    array = np.asarray(edges)
    assert array.shape == (64, 64, 3)
    columns = np.nonzero(array[..., 0].any(axis=0))[0]
    assert len(columns) > 0 and set(columns) <= {30, 31, 32, 33}


def test_preview_without_opencv_is_a_clear_error(cn_page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(gr.Error, match="pip install opencv-python-headless"):
        cn_page.call(_id("txt2img", 0, "preview_button"), "click", {
            _id("txt2img", 0, "image"): _edge_picture(), _id("txt2img", 0, "module"): "canny"})


def test_the_sliders_follow_the_preprocessor(cn_page: Page) -> None:
    module = _id("txt2img", 0, "module")
    resolution, low, high = cn_page.call(module, "input", {module: "canny"})
    assert (resolution["visible"], resolution["value"]) == (True, 512)
    assert (low["label"], low["value"], high["label"], high["value"]) == ("Canny Low Threshold", 100,
                                                                          "Canny High Threshold", 200)
    resolution, rate, unused = cn_page.call(module, "input", {module: "tile_resample"})
    assert resolution["visible"] is False and unused["visible"] is False
    assert (rate["label"], rate["minimum"], rate["maximum"], rate["value"]) == ("Down Sampling Rate", 1.0, 8.0, 1.0)
    assert all(update["visible"] is False for update in cn_page.call(module, "input", {module: "none"}))


def test_refresh_lists_new_model_files(cn_page: Page, tmp_path: Path) -> None:
    (tmp_path / "models" / "ControlNet" / "control_depth.safetensors").write_bytes(b"another one")
    update = cn_page.call(_id("txt2img", 0, "refresh"), "click")
    names = [title.split(" [")[0] for title in update["choices"]]
    assert names == ["None", "control_canny", "control_depth"]


PASTED = ('a house\nNegative prompt: fog\nSteps: 9, Sampler: Euler, CFG scale: 5, Seed: 4, Size: 64x64, '
          'ControlNet 0: "Module: canny, Model: control_canny [0badf00d], Weight: 0.6, Resize Mode: Just Resize, '
          'Processor Res: 256, Threshold A: 80, Threshold B: 160, Guidance Start: 0.1, Guidance End: 0.7, '
          'Pixel Perfect: True, Control Mode: My prompt is more important"')


def _by_id(updates: dict) -> dict:
    return {getattr(component, "elem_id", None): value for component, value in updates.items()}


def _assert_unit0_pasted(values: dict, mode: str) -> None:
    def get(name: str) -> object:
        return values[_id(mode, 0, name)]

    assert get("enabled") is True and get("module") == "canny" and get("pixel_perfect") is True
    assert get("model").startswith("control_canny [") and get("model") != "control_canny [0badf00d]"  # local hash
    assert (get("weight"), get("start"), get("end")) == (0.6, 0.1, 0.7)
    assert (get("resize_mode"), get("control_mode")) == ("Just Resize", "My prompt is more important")
    resolution, low, high = get("resolution"), get("threshold_a"), get("threshold_b")
    assert (resolution["visible"], resolution["value"]) == (True, 256)
    assert (low["label"], low["value"], high["label"], high["value"]) == ("Canny Low Threshold", 80.0,
                                                                          "Canny High Threshold", 160.0)
    assert _id(mode, 1, "enabled") not in values and _id(mode, 0, "image") not in values  # the rest is kept


def test_pasting_an_infotext_fills_the_unit(cn_page: Page) -> None:
    values = _by_id(cn_page.call("txt2img_paste", "click", {"txt2img_prompt": PASTED}))
    assert values["txt2img_prompt"] == "a house" and values["txt2img_sampling_steps"] == 9
    _assert_unit0_pasted(values, "txt2img")
    fn = cn_page.handler(cn_page.find("txt2img_paste"), "click")
    assert {cn_page.find(_id("txt2img", 0, name)) for name in ("module", "threshold_a")} <= set(fn.outputs)


def test_png_info_sends_the_units_to_txt2img_and_img2img(cn_page: Page, tmp_path: Path) -> None:
    import gradio as gr

    fn = cn_page.handler(cn_page.find("pnginfo_send_to_txt2img"), "click")
    state = next(c for c in fn.inputs if isinstance(c, gr.State))
    _assert_unit0_pasted(_by_id(cn_page.call("pnginfo_send_to_txt2img", "click", extra={state: PASTED})), "txt2img")
    path = tmp_path / "pasted.png"
    Image.new("RGB", (8, 8)).save(path)
    image = cn_page.find("pnginfo_image")
    values = _by_id(cn_page.call("pnginfo_send_to_img2img", "click", extra={state: PASTED, image: str(path)}))
    _assert_unit0_pasted(values, "img2img")


def test_a_paste_with_unusable_values_warns_and_keeps_them(cn_page: Page) -> None:
    text = PASTED.replace("control_canny [0badf00d]", "control_gone [12345678]").replace("Weight: 0.6", "Weight: 9")
    with pytest.warns(UserWarning) as caught:
        values = _by_id(cn_page.call("txt2img_paste", "click", {"txt2img_prompt": text}))
    messages = " | ".join(str(warning.message) for warning in caught)
    assert "model 'control_gone [12345678]' is not in the ControlNet model folder" in messages
    assert "weight '9' is not a number from 0.0 to 2.0" in messages
    assert _id("txt2img", 0, "model") not in values and _id("txt2img", 0, "weight") not in values
    assert values[_id("txt2img", 0, "module")] == "canny"
