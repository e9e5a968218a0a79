"""The Gradio web UI: `build_ui(app)` builds the page, `launch_kwargs(app)` gives its theme, CSS and script.

Usage (webui.py): ``blocks = build_ui(app); blocks.launch(**launch_kwargs(app), ...)`` or
``gr.mount_gradio_app(fastapi_app, blocks, path="/", **launch_kwargs(app))``.
"""

from __future__ import annotations

from modules.ui.layout import build_ui, launch_kwargs

__all__ = ["build_ui", "launch_kwargs"]
