"""Extensions in the real page (headless Chromium, fake App): an extension's javascript runs and its CSS applies,
the Script dropdown shows the selected script's controls, and the Extensions tab lists the extensions.
Skipped when /usr/bin/chromium is missing."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from modules.extensions.host import BUILTIN_ROOT, ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.ui.tokens import TokenCounter
from tests.browser import CHROMIUM
from tests.ui.fakes import make_app
from tests.ui.helpers import serving_ui

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

MARKER = '''
def register(ext):
    pass
'''


@pytest.fixture
def page_url(tmp_path: Path, token_counter: TokenCounter) -> Iterator[str]:
    app = make_app(tmp_path)
    folder = tmp_path / "user_extensions" / "marker"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "main.py").write_text(textwrap.dedent(MARKER))
    (folder / "javascript").mkdir()
    (folder / "javascript" / "marker.js").write_text("window.markerExtensionLoaded = true;\n")
    (folder / "style.css").write_text("#txt2img_script_select { outline: 3px solid rgb(1, 2, 3); }\n")
    app.extensions = ExtensionHost([ExtensionRoot(BUILTIN_ROOT, builtin=True), ExtensionRoot(folder.parent)],
                                   settings=app.settings, data_dir=tmp_path)
    app.extensions.load()
    with serving_ui(app, token_counter) as url:
        yield url


def test_extension_assets_script_area_and_extensions_tab(page_url: str, chromium: object) -> None:
    from playwright.sync_api import expect

    page = chromium.new_page()
    page.goto(page_url, wait_until="domcontentloaded", timeout=60_000)
    try:
        expect(page.locator("#txt2img_generate")).to_be_visible(timeout=30_000)
        page.wait_for_function("window.markerExtensionLoaded === true", timeout=10_000)
        select = page.locator("#txt2img_script_select")
        expect(select).to_be_visible()
        assert "rgb(1, 2, 3)" in select.evaluate("el => getComputedStyle(el).outlineColor")
        expect(page.locator("#script_txt2img_xyz_grid_x_values")).to_be_hidden()
        select.locator("input").click()
        page.get_by_role("option", name="X/Y/Z plot").click()
        expect(page.locator("#script_txt2img_xyz_grid_x_values")).to_be_visible(timeout=10_000)

        page.get_by_role("tab", name="Extensions", exact=True).click()
        table = page.locator("#extensions_table")
        expect(table).to_contain_text("xyz_grid")
        expect(table).to_contain_text("cfg_rescale")
        expect(table).to_contain_text("marker")
    finally:
        page.close()
