"""ControlNet in the real page (headless Chromium, fake App, built-in extensions): open the accordion, enable unit
0, upload a picture, pick the preprocessor and press Preview to see the preprocessed picture, then Generate sends the
unit. Uses canny when OpenCV is installed, else invert. Skipped when /usr/bin/chromium is missing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.ui.tokens import TokenCounter
from tests.browser import CHROMIUM
from tests.ui.fakes import FakeApp, make_app
from tests.ui.helpers import pick_option as _pick
from tests.ui.helpers import serving_ui

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture
def served(tmp_path: Path, token_counter: TokenCounter) -> Iterator[tuple[str, FakeApp]]:
    app = make_app(tmp_path)
    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    (folder / "control_canny.safetensors").write_bytes(b"a file to list")
    app.extensions = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True)], settings=app.settings,
                                   data_dir=tmp_path)
    app.extensions.load()
    with serving_ui(app, token_counter) as url:
        yield url, app


def test_enable_upload_preview_generate(served: tuple[str, FakeApp], chromium: object, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    try:
        import cv2  # noqa: F401
        module = "canny"
    except ImportError:
        module = "invert"
    url, app = served
    picture = tmp_path / "edge.png"
    array = np.zeros((64, 64, 3), np.uint8)
    array[:, 32:] = 255
    Image.fromarray(array).save(picture)
    unit = "script_txt2img_controlnet_unit0"

    page = chromium.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    try:
        expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
        accordion = page.locator("#txt2img_script_controlnet")
        accordion.get_by_text("ControlNet", exact=True).first.click()
        expect(page.locator(f"#{unit}_enabled")).to_be_visible(timeout=10_000)
        page.locator(f"#{unit}_enabled input[type='checkbox']").check()
        page.locator(f"#{unit}_image input[type='file']").set_input_files(str(picture))
        expect(page.locator(f"#{unit}_image img").first).to_be_visible(timeout=15_000)
        _pick(page, f"{unit}_module", module)
        _pick(page, f"{unit}_model", "control_canny")
        page.wait_for_timeout(500)
        page.locator(f"#{unit}_preview_button").click()
        shown = page.locator(f"#{unit}_preview img").first
        expect(shown).to_be_visible(timeout=15_000)
        source = shown.get_attribute("src") or ""
        body = page.request.get(source if source.startswith("http") else url.rstrip("/") + source).body()
        preview = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        if module == "canny":  # at the default resolution 512: the edge near the middle column, black elsewhere
            columns = np.nonzero(preview[..., 0].any(axis=0))[0]
            middle = preview.shape[1] / 2
            assert len(columns) > 0 and all(abs(column - middle) <= 4 for column in columns)
        else:
            assert np.array_equal(preview, 255 - array)

        page.locator("#txt2img_generate").click()
        expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=30_000)
        (sent,) = app.generation.requests[-1].extension_args["controlnet"]["units"]
        assert sent["enabled"] and sent["module"] == module and sent["model"].startswith("control_canny [")
        assert sent["image"] is not None and sent["image"].size == (64, 64)
    finally:
        page.close()
