"""The Checkpoint Merger tab in a headless Chromium on a real App with tiny checkpoints: pick A and B, Merge,
read the message, find the new checkpoint in the list above the tabs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import build_tiny_components
from modules.ui.layout import build_ui, launch_kwargs
from modules.ui.tokens import TokenCounter
from tests.browser import CHROMIUM
from tests.ui.helpers import free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture
def served(tmp_path: Path, token_counter: TokenCounter) -> Iterator[tuple[str, Path]]:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for seed, name in enumerate(("tiny-a.safetensors", "tiny-b.safetensors")):
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=seed), folder / name)
    app = build_app(LaunchOptions(data_dir=tmp_path))
    blocks = build_ui(app, tokens=token_counter)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  **launch_kwargs(app))
    try:
        yield f"http://127.0.0.1:{port}/", folder
    finally:
        blocks.close()
        app.close()


def _pick(page: object, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()


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
