"""Fixtures for the UI tests: a fake App and the built page (helpers in tests/ui/helpers.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import FakeApp, make_app
from tests.ui.helpers import Page


@pytest.fixture(scope="session")
def token_counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FakeApp]:
    fake = make_app(tmp_path, styles_csv="name,prompt,negative_prompt\nfilm,\"{prompt}, film grain\",blurry\n")
    yield fake
    fake.close()


@pytest.fixture
def page(app: FakeApp, token_counter: TokenCounter) -> Page:
    return Page(build_ui(app, tokens=token_counter))
