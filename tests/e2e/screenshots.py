"""Regenerate the documentation screenshots in docs/screenshots/ from the real application in headless Chromium.

    .venv/bin/python -m tests.e2e.screenshots [--out docs/screenshots] [--checkpoint FILE]

The server runs on a temporary data folder with the tiny random test checkpoints (their pictures are noise); pass
`--checkpoint` to add a real one, which is then selected for the txt2img picture. Pages are 1280 px wide, captured
full-page; a PNG over 300 KB is reduced to a 256-colour palette. Needs /usr/bin/chromium; colour emoji on the icon
buttons need a font such as Debian's `fonts-noto-color-emoji`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from tests.e2e.harness import (
    INPAINT_CHECKPOINT,
    NORMAL_CHECKPOINT,
    RealServer,
    choose_checkpoint,
    editor_view,
    launch_browser,
    main_tab,
    open_page,
    paint_stroke,
    set_brush_radius,
    set_number,
    start_real_server,
    sub_tab,
    txt2img_generate,
    upload,
    upload_to_editor,
)

log = logging.getLogger("screenshots")

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000
PROMPT = "a red circle on a blue background"
NEGATIVE = "green"
SIZE = 64  # the bundled demo model's native size


def save_screenshot(page: Any, path: Path) -> None:
    """Full-page PNG; palette-reduced when it would exceed MAX_BYTES."""
    page.screenshot(path=str(path), full_page=True)
    if path.stat().st_size > MAX_BYTES:
        with Image.open(path) as image:
            reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        reduced.save(path, optimize=True)
    log.info("%s: %d KB", path.name, path.stat().st_size // 1024)


def _txt2img(page: Any, server: RealServer, checkpoint: str, out: Path) -> Path:
    choose_checkpoint(page, checkpoint)
    page.locator("#txt2img_negative_prompt textarea").fill(NEGATIVE)
    txt2img_generate(page, PROMPT, seed=1234, steps=20, size=SIZE, cfg_presses=0)
    page.mouse.move(0, 0)
    save_screenshot(page, out / "txt2img.png")
    folder = server.data_dir / "outputs" / "txt2img-images"
    return max(folder.rglob("*.png"), key=lambda path: path.stat().st_mtime)


def _img2img(page: Any, picture: Path, out: Path) -> None:
    main_tab(page, "img2img")
    sub_tab(page, "img2img")
    upload(page, "img2img_image", picture)
    page.locator("#img2img_image img").first.wait_for()
    page.locator("#img2img_prompt textarea").fill("a yellow circle on a blue background")
    for elem_id in ("img2img_width", "img2img_height"):
        set_number(page, elem_id, SIZE)
    save_screenshot(page, out / "img2img.png")


def _inpaint(page: Any, picture: Path, out: Path) -> None:
    main_tab(page, "img2img")
    sub_tab(page, "Inpaint")
    upload_to_editor(page, "img2maskimg", picture)
    set_brush_radius(page, "img2maskimg", max(4, SIZE // 12))
    stroke = [(x * SIZE // 256, y * SIZE // 256) for x, y in [(60, 90), (128, 128), (196, 150)]]
    paint_stroke(page, editor_view(page, "img2maskimg", (SIZE, SIZE)), stroke)
    page.locator("#img2img_inpainting_fill").get_by_text("latent noise", exact=True).click()
    page.mouse.move(0, 0)
    save_screenshot(page, out / "inpaint.png")


def _pnginfo(page: Any, picture: Path, out: Path) -> None:
    main_tab(page, "PNG Info")
    upload(page, "pnginfo_image", picture)
    page.locator("#pnginfo_generation_info").get_by_text("Steps:").first.wait_for(timeout=30_000)
    save_screenshot(page, out / "pnginfo.png")


def _settings(page: Any, out: Path) -> None:
    main_tab(page, "Settings")
    page.locator("#settings_submit").wait_for()
    save_screenshot(page, out / "settings.png")


def take_screenshots(out: Path, checkpoint: Path | None) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdwebui-shots-") as folder:
        data_dir = Path(folder)
        if checkpoint is not None:
            (data_dir / "models" / "Stable-diffusion").mkdir(parents=True)
            (data_dir / "models" / "Stable-diffusion" / checkpoint.name).symlink_to(checkpoint)
        server = start_real_server(data_dir)
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                page, _ = open_page(browser, server.url)
                picture = _txt2img(page, server, checkpoint.name if checkpoint else NORMAL_CHECKPOINT, out)
                _img2img(page, picture, out)
                if checkpoint is None:
                    choose_checkpoint(page, INPAINT_CHECKPOINT)
                _inpaint(page, picture, out)
                _pnginfo(page, picture, out)
                _settings(page, out)
                browser.close()
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots",
                        help="folder for the PNG files (default: docs/screenshots)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a real checkpoint to use for the txt2img picture (linked into the temporary data folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    take_screenshots(args.out.resolve(), args.checkpoint.resolve() if args.checkpoint else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
