"""`build_ui(app)`: the whole Gradio page, and `launch_kwargs(app)`: its theme, CSS and scripts.

Page layout (A1111's): the quicksettings bar (checkpoint, VAE, Clip skip) above the tabs txt2img, img2img (with
img2img / Sketch / Inpaint / Inpaint sketch / Inpaint upload / Batch), Extras, PNG Info, Gallery (the saved
pictures, searchable), the tabs extensions add, Settings and Extensions. Each tab lives in its own module; this one
only puts them together, wires the "send to" buttons between tabs and refreshes per-page values when a browser
loads it.

Gradio 6 takes theme, css, js and head as `launch()` (or `mount_gradio_app`) arguments, not `Blocks` ones, so they
come from `launch_kwargs()`; everything is served locally (Gradio's bundled fonts, no CDN). The style.css and
javascript/*.js files of the loaded extensions are added there: the CSS after ours, the scripts inline in the page
head as document-level `<script>` elements (A1111 adds them to the head too).
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from modules.api.limits import max_request_mb
from modules.ui.common import TOOLTIPS, UiContext
from modules.ui.extensions_tab import build_extension_tabs, build_extensions_tab
from modules.ui.extras import build_extras_tab
from modules.ui.gallery import build_gallery_tab
from modules.ui.img2img import build_img2img_tab
from modules.ui.merger import build_merger_tab, wire_merger_tab
from modules.ui.pnginfo import build_pnginfo_tab
from modules.ui.save_buttons import wire_save_buttons
from modules.ui.sendto import SendTargets, wire_extras_results, wire_gallery, wire_pnginfo, wire_results_panel
from modules.ui.settings_tab import build_settings_tab, current_values, problems_html
from modules.ui.style_editor import wire_style_editors
from modules.ui.tokens import TokenCounter, load_bundled_tokenizer
from modules.ui.toprow import build_top_row, current_checkpoint, page_load_values, size_updates
from modules.ui.txt2img import build_txt2img_tab

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

UI_DIR = Path(__file__).resolve().parent
TITLE = "Stable Diffusion"


def build_ui(app: "App", tokens: TokenCounter | None = None) -> gr.Blocks:
    """Build the page for `app` (nothing is launched). `tokens` lets tests pass a prepared token counter."""
    settings = app.settings.get()
    tokens = tokens or TokenCounter(lambda: app.core.locked(load_bundled_tokenizer),  # not beside the warm-up
                                    backtrack=int(settings["comma_padding_backtrack"]),
                                    embeddings=app.networks.counting_lookup)
    ctx = UiContext(app, tokens)
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        top = build_top_row(app)
        with gr.Tabs(elem_id="tabs", overflow_behavior="wrap") as main_tabs:
            txt2img = build_txt2img_tab(ctx, top.named())
            img2img = build_img2img_tab(ctx, top.named())
            extras = build_extras_tab(app)
            pnginfo = build_pnginfo_tab()
            merger = build_merger_tab(app)
            gallery = build_gallery_tab(app)
            build_extension_tabs(app)
            settings_tab = build_settings_tab(app)
            build_extensions_tab(app)
        targets = SendTargets(main_tabs, txt2img, img2img, pnginfo, extras)
        wire_results_panel(app, txt2img.panel, targets)
        wire_results_panel(app, img2img.generation.panel, targets)
        wire_save_buttons(app, txt2img.panel)
        wire_save_buttons(app, img2img.generation.panel)
        wire_pnginfo(app, targets)
        wire_extras_results(app, targets)
        wire_gallery(app, gallery, targets)
        wire_merger_tab(app, merger, [top.checkpoint])
        wire_style_editors(app, [txt2img.prompt_row, img2img.generation.prompt_row])

        sizes = [txt2img.sampling.width, txt2img.sampling.height,
                 img2img.generation.sampling.width, img2img.generation.sampling.height]
        top.checkpoint.input(lambda title: size_updates(app, title, 2), inputs=top.checkpoint, outputs=sizes,
                             show_progress="hidden")

        def on_page_load() -> dict:
            for problem in (*app.settings.problems, *app.ui_config.problems):
                gr.Warning(problem)
            native = size_updates(app, current_checkpoint(app), 2)
            return {**page_load_values(app, top), **current_values(app, settings_tab.widgets),
                    settings_tab.problems: problems_html(app), **dict(zip(sizes, native))}

        load_outputs = [top.checkpoint, top.vae, top.clip_skip, *top.quick.values(), settings_tab.problems,
                        *settings_tab.widgets.values(), *sizes]
        blocks.load(on_page_load, outputs=load_outputs, show_progress="hidden")
    app.ui_config.save_if_changed()
    return blocks


def page_js(theme: str | None) -> str:
    """The page script with the icon tooltips and the forced theme ("light", "dark" or None) filled in."""
    script = (UI_DIR / "page.js").read_text(encoding="utf-8")
    return script.replace("__TOOLTIPS__", json.dumps(TOOLTIPS)).replace("__THEME__", json.dumps(theme))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        log.warning("Extension file %s not added to the page: %s", path, error)
        return None


def extension_css(paths: list[Path]) -> str:
    """The extensions' style.css files, each after a comment naming it."""
    parts = [f"/* extension {path.parent.name} */\n{text}" for path in paths if (text := _read_text(path)) is not None]
    return "\n".join(parts)


def extension_head(paths: list[Path]) -> str:
    """The extensions' javascript files as inline `<script>` elements for the page head."""
    scripts = []
    for path in paths:
        text = _read_text(path)
        if text is not None:  # "</script" inside the code would end the element early; "<\/" means the same in JS
            code = text.replace("</script", "<\\/script")
            name = html.escape(f"{path.parent.parent.name}/{path.name}", quote=True)
            scripts.append(f"<script type='text/javascript' data-extension-file='{name}'>\n{code}\n</script>")
    return "\n".join(scripts)


def launch_kwargs(app: "App") -> dict[str, Any]:
    """Keyword arguments for `blocks.launch()` / `gr.mount_gradio_app()`: theme, css, js, head and the upload size
    limit (the `api_max_request_mb` setting, as for the API)."""
    css = (UI_DIR / "style.css").read_text(encoding="utf-8")
    extra_css = extension_css(app.extensions.style_files())
    return {
        "theme": gr.themes.Default(primary_hue="orange", secondary_hue="gray", neutral_hue="gray"),
        "css": f"{css}\n{extra_css}" if extra_css else css,
        "js": page_js(app.launch.theme),
        "head": extension_head(app.extensions.javascript_files()),
        "max_file_size": f"{max_request_mb(app.settings.get())}mb",
    }
