"""The Checkpoint Merger tab in a headless Chromium on a real App with tiny checkpoints: pick A and B, Merge,
read the message, find the new checkpoint in the list above the tabs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from modules.ui.tokens import TokenCounter
from tests.browser import CHROMIUM
from tests.ui.helpers import pick_option as _pick
from tests.ui.helpers import serving_ui, two_checkpoint_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture
def served(tmp_path: Path, token_counter: TokenCounter) -> Iterator[tuple[str, Path]]:
    app = two_checkpoint_app(tmp_path)
    with serving_ui(app, token_counter) as url:
        yield url, tmp_path / "models" / "Stable-diffusion"


def test_merge_two_checkpoints_from_the_tab(served: tuple[str, Path], chromium: object) -> None:
    from playwright.sync_api import expect

    url, folder = served
    page = chromium.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_role("tab", name="Checkpoint Merger").click()
        expect(page.locator("#modelmerger_merge")).to_be_visible(timeout=30_000)
        _pick(page, "modelmerger_primary_model_name", "tiny-a.safetensors")
        _pick(page, "modelmerger_secondary_model_name", "tiny-b.safetensors")
        page.locator("#modelmerger_custom_name textarea").fill("browser blend")
        page.locator("#modelmerger_merge").click()
        expect(page.locator("#modelmerger_result")).to_contain_text("Checkpoint saved to", timeout=60_000)
        assert (folder / "browser blend.safetensors").is_file()
        page.locator("#setting_sd_model_checkpoint input").click()
        expect(page.get_by_role("option", name="browser blend.safetensors").first).to_be_visible(timeout=10_000)
    finally:
        page.close()
