"""Fixtures for extension tests: write extension folders into a temporary root and load a host over them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest

from modules.extensions.host import ExtensionHost
from modules.extensions.loader import ExtensionRoot
from modules.settings import SettingsStore
from tests.extensions import ext_test_events

WriteExtension = Callable[..., Path]


@pytest.fixture(autouse=True)
def clear_events() -> Iterator[list[tuple[str, str]]]:
    ext_test_events.EVENTS.clear()
    yield ext_test_events.EVENTS
    ext_test_events.EVENTS.clear()


@pytest.fixture
def ext_root(tmp_path: Path) -> Path:
    root = tmp_path / "extensions"
    root.mkdir()
    return root


@pytest.fixture
def write_extension(ext_root: Path) -> WriteExtension:
    """write_extension(folder, {"main.py": source}, metadata="Api = 1", requirements=None, root=None) -> path."""

    def write(folder: str, scripts: dict[str, str], metadata: str | None = None, requirements: str | None = None,
              root: Path | None = None) -> Path:
        path = (root or ext_root) / folder
        (path / "scripts").mkdir(parents=True)
        for name, source in scripts.items():
            (path / "scripts" / name).write_text(textwrap.dedent(source))
        if metadata is not None:
            (path / "metadata.ini").write_text("[Extension]\n" + textwrap.dedent(metadata))
        if requirements is not None:
            (path / "requirements.txt").write_text(requirements)
        return path

    return write


@pytest.fixture
def settings_store(tmp_path: Path) -> SettingsStore:
    return SettingsStore.open(tmp_path / "config.json")


@pytest.fixture
def make_host(ext_root: Path, settings_store: SettingsStore, tmp_path: Path) -> Callable[..., ExtensionHost]:
    def make(**kwargs: object) -> ExtensionHost:
        kwargs.setdefault("settings", settings_store)
        host = ExtensionHost([ExtensionRoot(ext_root)], data_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
        host.load()
        return host

    return make
