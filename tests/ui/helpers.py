"""Helpers for the UI tests: call the built page's real event handlers without a browser, and a free port."""

from __future__ import annotations

import contextlib
import inspect
import os
import socket
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr


class Page:
    """The built Blocks with helpers to find widgets by elem_id and call the handler of an event."""

    def __init__(self, blocks: gr.Blocks) -> None:
        self.blocks = blocks

    def find(self, elem_id: str) -> Any:
        for block in self.blocks.blocks.values():
            if getattr(block, "elem_id", None) == elem_id:
                return block
        raise KeyError(elem_id)

    def handler(self, component: Any, event: str) -> Any:
        for fn in self.blocks.fns.values():
            if any(target[0] == component._id and target[1] == event for target in fn.targets):
                return fn
        raise KeyError(f"no {event} handler on {component}")

    @staticmethod
    def initial_data(fn: Any) -> dict[Any, Any]:
        """What the browser would send for the handler's inputs before the user changes anything."""
        return {component: getattr(component, "value", None) for component in fn.inputs}

    def call(self, elem_id: str, event: str, changes: dict[str, Any] | None = None, session: str = "s1",
             extra: dict[Any, Any] | None = None) -> Any:
        """Call the handler with initial values, `changes` (by elem_id) and `extra` (by component) applied."""
        fn = self.handler(self.find(elem_id), event)
        data = self.initial_data(fn)
        for key, value in (changes or {}).items():
            data[self.find(key)] = value
        data.update(extra or {})
        request = types.SimpleNamespace(session_hash=session)
        if fn.inputs_as_dict:
            return fn.fn(data, request) if _wants_request(fn.fn) else fn.fn(data)
        args = [data[component] for component in fn.inputs]
        return fn.fn(*args, request) if _wants_request(fn.fn) else fn.fn(*args)


def _wants_request(fn: Callable) -> bool:
    return "request" in inspect.signature(fn).parameters


def run_to_end(result: Any) -> list[dict[Any, Any]]:
    """All updates of a generator handler (or the single return value in a list)."""
    if isinstance(result, types.GeneratorType):
        return list(result)
    return [result]


def merged(updates: list[dict[Any, Any]]) -> dict[Any, Any]:
    final: dict[Any, Any] = {}
    for update in updates:
        final.update(update)
    return final


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving_ui(app: Any, tokens: Any) -> Iterator[str]:
    """The app's page served on a free local port for a browser test (its URL); the server and the app are closed
    afterwards."""
    from modules.ui.layout import build_ui, launch_kwargs

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    blocks = build_ui(app, tokens=tokens)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  **launch_kwargs(app))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        blocks.close()
        app.close()


def pick_option(page: Any, elem_id: str, option: str) -> None:
    """Open a dropdown in the browser and click the first option whose name contains `option`."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()


def two_checkpoint_app(data_dir: Path) -> Any:
    """A real App over `data_dir` with two tiny SD1 checkpoints, tiny-a and tiny-b (different weights)."""
    from modules.bootstrap import build_app
    from modules.cli import LaunchOptions
    from modules.models.convert import save_single_file
    from modules.models.identity import Family, ModelIdentity
    from modules.models.tiny import build_tiny_components

    folder = data_dir / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for seed, name in enumerate(("tiny-a.safetensors", "tiny-b.safetensors")):
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=seed), folder / name)
    return build_app(LaunchOptions(data_dir=data_dir))
