"""IP-Adapter units on the page (fake App, the built-in extensions loaded): the preprocessor dropdown lists the
IP-Adapter preprocessors, choosing one hides the resolution and threshold sliders, its preview is the picture as the
CLIP encoder sees it, and a page job carries the unit as an API client sends it."""

from __future__ import annotations

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

pytestmark = pytest.mark.slow  # builds the whole page


def _id(index: int, name: str) -> str:
    return f"script_txt2img_controlnet_unit{index}_{name}"


def test_ip_adapter_unit_on_the_page(app: FakeApp, tmp_path: Path, token_counter: TokenCounter) -> None:
    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    (folder / "ip-adapter_sd15.safetensors").write_bytes(b"listed and hashed, not read by the page")
    app.extensions = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], settings=app.settings,
                                   data_dir=tmp_path)
    app.extensions.load()
    page = Page(build_ui(app, tokens=token_counter))

    module = _id(0, "module")
    choices = [choice[0] for choice in page.find(module).choices]
    assert choices[-3:] == ["ip-adapter-auto", "ip-adapter_clip_h", "ip-adapter_clip_g"]
    assert all(update["visible"] is False for update in page.call(module, "input", {module: "ip-adapter_clip_h"}))

    wide = Image.fromarray(np.tile(np.arange(96, dtype=np.uint8)[None, :, None], (48, 1, 3)))
    seen = page.call(_id(0, "preview_button"), "click", {_id(0, "image"): wide, module: "ip-adapter_clip_h"})
    assert seen.size == (224, 224)  # short side to 224, centre crop: the middle of the gradient
    assert abs(int(np.asarray(seen)[112, 112, 0]) - 48) <= 2

    title = [choice[0] for choice in page.find(_id(0, "model")).choices][1]
    run_to_end(page.call("txt2img_generate", "click", {
        "txt2img_prompt": "a house", _id(0, "enabled"): True, _id(0, "image"): wide, module: "ip-adapter_clip_h",
        _id(0, "model"): title, _id(0, "weight"): 0.6}))
    (unit,) = app.generation.requests[-1].extension_args["controlnet"]["units"]
    assert (unit["module"], unit["model"], unit["weight"]) == ("ip-adapter_clip_h", title, 0.6)
    assert unit["threshold_a"] == -1.0 and unit["threshold_b"] == -1.0
