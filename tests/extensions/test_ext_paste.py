"""Infotext paste (extension API 1.5 `InfotextPaste`): a script's owned keys fill its controls, failures stay
isolated; ControlNet's unit infotext round-trips through the paste into the same unit."""

from __future__ import annotations

import sys
from typing import Any

import gradio as gr
import pytest
from PIL import Image

from modules import infotext
from modules.extensions.api import InfotextPaste, PasteContext
from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.extensions.script_ui import paste_outputs, paste_scripts, render_script_area

TOY = '''
from modules.extensions.api import Combined, InfotextPaste, UserError


def read(ctx):
    if "Toy fail" in ctx.params:
        raise RuntimeError("broken reader")
    if "Toy refuse" in ctx.params:
        raise UserError("Toy: cannot paste that")
    if "Toy odd" in ctx.params:
        ctx.warn("Toy: odd value")
        return {"nothing_like_this": 1, "level": 0.25}
    return {"level": float(ctx.params["Toy level"]), "items/label": ctx.params.get("Toy label 1", "?"),
            "mode": ctx.mode}


def ui(builder):
    import gradio as gr
    controls = {"label": gr.Textbox("x", label="Label")}
    return {"level": gr.Slider(0, 1, value=0.5, label="Level"), "items": Combined(controls, lambda v: [v["label"]]),
            "mode": gr.Textbox("", label="Mode")}


def register(ext):
    ext.add_script("Toy", ui=ui, always_on=True, paste=InfotextPaste(("Toy level", "Toy label *", "Toy fail",
                                                                      "Toy refuse", "Toy odd"), read))
    ext.add_script("Other", ui=lambda builder: {}, always_on=True)
'''


def _area(host: ExtensionHost, mode: str = "txt2img") -> Any:
    with gr.Blocks():
        return render_script_area(host.scripts, mode)


def _values(area: Any, updates: dict[Any, Any]) -> dict[str, Any]:
    names = {id(component): name for name, component in area.inputs.items()}
    return {names[id(component)]: value for component, value in updates.items()}


def test_owned_keys_fill_the_scripts_controls(write_extension, make_host) -> None:
    write_extension("toy", {"main.py": TOY}, metadata="Api = 1.5")
    host = make_host()
    area = _area(host, "img2img")
    assert {id(c) for c in paste_outputs(area)} == {id(area.inputs[k]) for k in ("toy/level", "toy/items/label",
                                                                                 "toy/mode")}
    params = infotext.parse("p\nSteps: 3, Toy level: 0.75, Toy label 1: \"a, b\", Seed: 1").written_params()
    pasted = paste_scripts(area, params)
    assert _values(area, pasted.updates) == {"toy/level": 0.75, "toy/items/label": "a, b", "toy/mode": "img2img"}
    assert pasted.warnings == []
    assert paste_scripts(area, {"Steps": "3", "Seed": "1"}).updates == {}  # no owned key: read() is not called


def test_paste_failures_are_isolated(write_extension, make_host) -> None:
    write_extension("toy", {"main.py": TOY}, metadata="Api = 1.5")
    host = make_host()
    area = _area(host)
    refused = paste_scripts(area, {"Toy refuse": "1"})
    assert refused.updates == {} and refused.warnings == ["Toy: cannot paste that"]
    failed = paste_scripts(area, {"Toy fail": "1"})
    assert failed.updates == {} and "could not read its parameters: RuntimeError: broken reader" in failed.warnings[0]
    assert "broken reader" in host.get("toy").errors[-1].message
    odd = paste_scripts(area, {"Toy odd": "1"})
    assert _values(area, odd.updates) == {"toy/level": 0.25} and odd.warnings == ["Toy: odd value"]
    assert "nothing_like_this" in host.get("toy").errors[-1].message


def test_infotext_paste_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        InfotextPaste("Toy", lambda ctx: {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        InfotextPaste(("Toy",), None)  # type: ignore[arg-type]
    spec = InfotextPaste(("ControlNet *", "Exact"), lambda ctx: {})
    assert spec.owns("ControlNet 2") and spec.owns("Exact") and not spec.owns("exact") and not spec.owns("Seed")


@pytest.fixture(scope="module")
def controlnet() -> Any:
    ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)]).load()
    return sys.modules["sdwebui_extensions.controlnet.scripts.controlnet"]


def _page_values(read: dict[str, Any]) -> dict[str, Any]:
    """What the unit controls hold after the paste (a slider update's value)."""
    return {name.removeprefix("units/"): value["value"] if isinstance(value, dict) else value
            for name, value in read.items() if not (isinstance(value, dict) and "value" not in value)}


@pytest.mark.parametrize("fields", [
    {"module": "canny", "threshold_a": 80, "threshold_b": 160, "processor_res": 256, "weight": 0.55,
     "resize_mode": "Resize and Fill", "guidance_start": 0.2, "guidance_end": 0.9, "pixel_perfect": True,
     "control_mode": "ControlNet is more important"},
    {"module": "tile_resample", "threshold_a": 2.5, "weight": 1.0, "control_mode": "Balanced"},
    {"module": "none", "weight": 0.0, "resize_mode": "Just Resize"},
])
def test_a_controlnet_unit_round_trips_through_the_infotext(controlnet: Any, fields: dict[str, Any]) -> None:
    from sdwebui_extensions.controlnet.cnlib.page import units_from_page  # type: ignore[import-not-found]
    from sdwebui_extensions.controlnet.cnlib.paste import read_pasted  # type: ignore[import-not-found]

    title = "tinycn [1234abcd]"
    unit = controlnet.parse_unit({"enabled": True, "model": title, **fields}, 0)
    unit.model_title = title
    text = infotext.build("p", "", {"Steps": 2, "Seed": 1, "ControlNet 1": unit.infotext(), "CFG scale": 7})
    context = PasteContext(infotext.parse(text).written_params(), "txt2img")
    read = read_pasted(context, 3, lambda: ["other [00000000]", title])
    assert context.warnings == [] and read["units/1_enabled"] is True and read["units/1_model"] == title
    (_, restored) = units_from_page(3, {**_page_values(read), "1_image": Image.new("RGB", (8, 8))})
    again = controlnet.parse_unit(restored, 1)
    expected = controlnet.parse_unit({"enabled": True, "model": title, **fields}, 0)
    assert {**vars(again), "picture": None} == {**vars(expected), "picture": None}


def test_pasted_units_beyond_the_page_and_unknown_modules_warn(controlnet: Any) -> None:
    from sdwebui_extensions.controlnet.cnlib.paste import read_pasted, unit_fields  # type: ignore[import-not-found]

    assert unit_fields("Module: canny, Model: a [b], Pixel Perfect: False") == {
        "module": "canny", "model": "a [b]", "pixel perfect": "False"}
    context = PasteContext({"ControlNet 5": "Module: none", "ControlNet 0": "Module: openpose_full, Weight: 0.5"},
                           "txt2img")
    read = read_pasted(context, 3, lambda: [])
    assert read == {"units/0_enabled": True, "units/0_weight": 0.5}
    assert context.warnings == ["ControlNet 5: this page has 3 ControlNet units; that unit was not pasted.",
                                "ControlNet unit 0: preprocessor 'openpose_full' is not available here; the "
                                "preprocessor was not changed."]
