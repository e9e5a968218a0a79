"""Fixtures for the UI tests: a fake App, the built page, and access to its real event handlers."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import pytest

from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import FakeApp, make_app


@pytest.fixture(scope="session")
def token_counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FakeApp]:
    fake = make_app(tmp_path, styles_csv="name,prompt,negative_prompt\nfilm,\"{prompt}, film grain\",blurry\n")
    yield fake
    fake.close()


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
    import inspect

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


@pytest.fixture
def page(app: FakeApp, token_counter: TokenCounter) -> Page:
    return Page(build_ui(app, tokens=token_counter))
