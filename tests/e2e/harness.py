"""The real application served on a free local port, a headless Chromium, and page helpers for the e2e tests.

`RealServer` runs what `webui.py` runs (`cli.parse_args` -> `bootstrap.build_app` -> `webui.build_server`) under
uvicorn in a background thread, on a data folder whose `models/Stable-diffusion` holds two tiny random checkpoints:
a normal SD 1.x one and a 9-channel SD 1.x inpaint one. Both the tests (`conftest.py`) and the screenshot script
(`screenshots.py`) use it. Nothing here downloads anything; Chromium is Debian's `/usr/bin/chromium`.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

log = logging.getLogger(__name__)

from tests.browser import CHROMIUM, LAUNCH_ARGS  # noqa: E402  (shared with tests/conftest.py)

VIEWPORT = {"width": 1280, "height": 900}
NORMAL_CHECKPOINT = "tiny-sd1.safetensors"
INPAINT_CHECKPOINT = "tiny-sd1-inpaint.safetensors"
LOCAL_PREFIXES = ("http://127.0.0.1", "data:", "blob:")


def write_checkpoints(folder: Path) -> tuple[Path, Path]:
    """A tiny SD 1.x checkpoint and a tiny 9-channel SD 1.x inpaint checkpoint (A1111 single-file layout)."""
    from modules.models.convert import save_single_file
    from modules.models.identity import Family, ModelIdentity, Variant
    from modules.models.tiny import build_tiny_components

    folder.mkdir(parents=True, exist_ok=True)
    normal, inpaint = folder / NORMAL_CHECKPOINT, folder / INPAINT_CHECKPOINT
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=0), normal)
    save_single_file(build_tiny_components(ModelIdentity(Family.SD1, Variant.INPAINT), seed=1), inpaint)
    return normal, inpaint


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class RealServer:
    """The composition root of webui.py on 127.0.0.1:<free port>, started in a daemon thread."""

    def __init__(self, data_dir: Path, extra_args: Sequence[str] = ()) -> None:
        import uvicorn

        from modules.bootstrap import build_app, ensure_a_checkpoint
        from modules.cli import parse_args
        from webui import build_server

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        self.data_dir = data_dir
        self._sock = _free_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        launch = parse_args(["--data-dir", str(data_dir), "--port", str(self.port), "--api", *extra_args])
        self.app = build_app(launch)
        ensure_a_checkpoint(self.app)
        config = uvicorn.Config(build_server(self.app, launch), log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="e2e-uvicorn")

    def start(self, timeout: float = 60.0) -> "RealServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()
        self.app.close()


def start_real_server(data_dir: Path) -> RealServer:
    """Write the two tiny checkpoints into `data_dir` and serve the real application from it."""
    write_checkpoints(data_dir / "models" / "Stable-diffusion")
    return RealServer(data_dir).start()


def launch_browser(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)


@dataclass
class PageWatch:
    """Every request URL and every console error / page error of one page."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda message: self.errors.append(f"console: {message.text}")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    @property
    def external(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(LOCAL_PREFIXES)]


# Gradio shows no sign that the page's load event (which refreshes the top bar and the Settings values) has run.
# Its status tracker inside the checkpoint dropdown does show the event as pending (".progress-text"), so this
# script, installed before the page's own, records that it appeared and then went away.
_LOAD_WATCH_JS = """
window.__sdwebuiLoad = {seen: false, done: false};
new MutationObserver(() => {
    const block = document.getElementById("setting_sd_model_checkpoint");
    if (!block || window.__sdwebuiLoad.done) return;
    const pending = block.querySelector("[data-testid='status-tracker'] .progress-text") !== null;
    if (pending) window.__sdwebuiLoad.seen = true;
    else if (window.__sdwebuiLoad.seen) window.__sdwebuiLoad.done = true;
}).observe(document, {subtree: true, childList: true, attributes: true});
"""


def open_page(browser: Any, url: str) -> tuple[Any, PageWatch]:
    """A new 1280x900 page at `url`, watched from its first request, returned once its load event has run."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    watch = PageWatch()
    watch.attach(page)
    page.add_init_script(_LOAD_WATCH_JS)
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    expect(page.locator("#txt2img_generate")).to_be_visible(timeout=60_000)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => window.__sdwebuiLoad.done", timeout=30_000)
    except PlaywrightTimeout:
        log.warning("did not see the page's load event finish; going on")
    return page, watch


# --- page helpers -------------------------------------------------------------------------------------------------


def main_tab(page: Any, name: str) -> None:
    """Click a tab of the main tab row (txt2img, img2img, PNG Info, Settings)."""
    page.locator("#tabs > .tab-wrapper button[role='tab']", has_text=name).first.click()


def sub_tab(page: Any, name: str) -> None:
    """Click a sub-tab of img2img (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload, Batch)."""
    page.locator("#mode_img2img button[role='tab']").get_by_text(name, exact=True).click()


def set_number(page: Any, elem_id: str, value: float | int) -> None:
    """Type into the number box of a slider or number widget and commit it."""
    box = page.locator(f"#{elem_id} input[type='number']")
    box.fill(str(value))
    box.press("Enter")


def fetch_image(url: str) -> Image.Image:
    """Download a picture the page shows (its `src`) and decode it."""
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - local test server
        image = Image.open(io.BytesIO(response.read()))
        image.load()
    return image


def gallery_image_url(page: Any, tab: str, base_url: str) -> str:
    """Absolute URL of the first picture in a tab's gallery."""
    src = page.locator(f"#{tab}_gallery img").first.get_attribute("src")
    assert src, "the gallery shows no picture"
    return src if src.startswith("http") else base_url.rstrip("/") + "/" + src.lstrip("/")


def split_test_image(size: int = 64) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (size, size), (220, 30, 30))
    image.paste((30, 40, 220), (size // 2, 0, size, size))
    return image


def choose_checkpoint(page: Any, file_name: str) -> None:
    """Pick a checkpoint in the top bar by file name and wait until the page reports it loaded.

    Titles gain the short hash ("name.safetensors [0123456789]") once the file has been hashed, so options are
    matched by their beginning.
    """
    from playwright.sync_api import expect

    box = page.locator("#setting_sd_model_checkpoint input")
    if box.input_value().startswith(file_name + " ") or box.input_value() == file_name:
        return
    box.click()
    page.locator(f"[role='option'][aria-label^='{file_name}']").click()
    expect(page.locator("#quicksettings_status")).to_contain_text(f"Loaded {file_name}", timeout=60_000)


def upload(page: Any, elem_id: str, path: Path) -> None:
    """Give a file to the upload input of an image widget (what dropping a file does)."""
    page.locator(f"#{elem_id} input[type='file']").first.set_input_files(str(path))


def upload_to_editor(page: Any, elem_id: str, path: Path) -> None:
    """Load a picture into an ImageEditor and wait until it is drawn (the editor zooms to fit it)."""
    zoom = page.locator(f"#{elem_id} .zoom-number").first
    before = zoom.inner_text().strip()
    upload(page, elem_id, path)
    page.wait_for_function(
        "([selector, before]) => { const el = document.querySelector(selector);"
        " return el && el.textContent.trim() !== before; }",
        arg=[f"#{elem_id} .zoom-number", before], timeout=30_000)


def set_brush_radius(page: Any, elem_id: str, radius: int) -> None:
    """Select the brush of an ImageEditor and set its radius (image pixels) with the size slider."""
    page.locator(f"#{elem_id} button[aria-label='Brush']").click()
    page.locator(f"#{elem_id} button[aria-label='Brush Size']").click()
    size = page.locator(f"#{elem_id} input[type='range']").first
    size.evaluate("(el, value) => { el.value = String(value); el.dispatchEvent(new Event('input', {bubbles: true}));"
                  " el.dispatchEvent(new Event('change', {bubbles: true})); }", radius)
    page.locator(f"#{elem_id} button[aria-label='Brush']").click()


@dataclass(frozen=True)
class EditorView:
    """Where an ImageEditor shows its picture on screen: top-left corner and screen pixels per image pixel."""

    left: float
    top: float
    scale: float

    def point(self, x: float, y: float) -> tuple[float, float]:
        """Screen position of the centre of image pixel (x, y)."""
        return self.left + (x + 0.5) * self.scale, self.top + (y + 0.5) * self.scale


def editor_view(page: Any, elem_id: str, image_size: tuple[int, int]) -> EditorView:
    """The picture is drawn centred on the editor's canvas at the zoom the editor displays (e.g. "716%")."""
    box = page.locator(f"#{elem_id} canvas").first.bounding_box()
    assert box, f"#{elem_id} has no canvas on screen"
    zoom_text = page.locator(f"#{elem_id} .zoom-number").first.inner_text().strip().rstrip("%")
    scale = float(zoom_text) / 100
    width, height = image_size
    left = box["x"] + box["width"] / 2 - width * scale / 2
    top = box["y"] + box["height"] / 2 - height * scale / 2
    return EditorView(left, top, scale)


def paint_stroke(page: Any, view: EditorView, points: Sequence[tuple[float, float]]) -> None:
    """Drag the mouse (button held) through `points`, given in image pixels."""
    coords = [view.point(x, y) for x, y in points]
    page.mouse.move(*coords[0])
    page.mouse.down()
    for x, y in coords[1:]:
        page.mouse.move(x, y, steps=3)
    page.mouse.up()


def txt2img_generate(page: Any, prompt: str, *, seed: int, steps: int = 3, size: int = 64,
                     cfg_presses: int = 3) -> str:
    """Fill the txt2img tab like a user (CFG moved with the slider's arrow keys), generate, wait for the picture.

    Returns the CFG value the slider shows after moving it.
    """
    from playwright.sync_api import expect

    main_tab(page, "txt2img")
    page.locator("#txt2img_prompt textarea").fill(prompt)
    for elem_id, value in (("txt2img_width", size), ("txt2img_height", size), ("txt2img_sampling_steps", steps),
                           ("txt2img_seed", seed)):
        set_number(page, elem_id, value)
    slider = page.locator("#txt2img_cfg_scale input[type='range']")
    slider.focus()
    for _ in range(cfg_presses):
        slider.press("ArrowRight")
    cfg = page.locator("#txt2img_cfg_scale input[type='number']").input_value()
    page.locator("#txt2img_generate").click()
    expect(page.locator("#txt2img_gallery img").first).to_be_visible(timeout=60_000)
    expect(page.locator("#html_info_txt2img")).to_contain_text("Steps:", timeout=30_000)
    return cfg
