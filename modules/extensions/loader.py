"""Finding extension folders and importing their scripts, all-or-nothing per extension.

Discovery keeps A1111's layout: every folder under an extensions root that has a `scripts/` folder or a
metadata.ini (folders starting with '.' or '_' are ignored). Roots are searched in order (the built-in
`<repo>/extensions` first, then the data directory's), folders in name order; a second folder with a canonical name
already seen is skipped. A git checkout inside the built-in root (an extension a user installed there, the default
when the data directory is the repository) is not built-in.

Import: each extension becomes a package `sdwebui_extensions.<name>` rooted at its folder, so scripts can import
their own helpers relatively (`from ..mylib import x`) without touching `sys.path` or clashing with another
extension's module names. `scripts/*.py` run in name order; each one's `register(ext)` is called with an
`ExtensionContext`. If any import or `register` fails, nothing of the extension stays registered (its modules are
removed from `sys.modules`) and the error is recorded: an extension is never loaded half-way.
"""

from __future__ import annotations

import enum
import importlib.util
import logging
import re
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from modules.extensions.api import ExtensionContext, Hook, PlotAxis, Script
from modules.extensions.metadata import ExtensionMetadata, read_metadata

log = logging.getLogger(__name__)

PACKAGE_ROOT = "sdwebui_extensions"
MAX_ERRORS = 50  # per extension; older ones are dropped


class ExtensionState(str, enum.Enum):
    """Where an extension stands. Only LOADED extensions take part in anything."""

    LOADED = "loaded"
    DISABLED = "disabled"  # in the persisted disabled list (or all extensions disabled)
    SKIPPED = "skipped"  # refused before import: API version, requirements, Requires, duplicate name
    FAILED = "failed"  # an import or register() raised; nothing of it was kept
    PENDING = "restart required"  # installed while running; loaded at the next start


@dataclass(frozen=True)
class ExtensionRoot:
    """A folder holding extension folders; `builtin` marks the ones shipped with the program."""

    path: Path
    builtin: bool = False


@dataclass(frozen=True)
class ExtensionError:
    """An exception raised by extension code: where (import of a file, a hook, a script's UI), message, traceback."""

    where: str
    message: str
    traceback: str
    time: float


@dataclass
class RegisteredCallback:
    extension: "ExtensionRecord"
    hook: Hook
    fn: Callable[[Any], Any]
    order: int
    seq: int


@dataclass
class ExtensionRecord:
    """One discovered extension folder and everything known about it (what the Extensions tab lists)."""

    meta: ExtensionMetadata
    path: Path
    builtin: bool
    state: ExtensionState = ExtensionState.SKIPPED
    messages: list[str] = field(default_factory=list)
    errors: list[ExtensionError] = field(default_factory=list)
    load_index: int = -1
    callbacks: list[RegisteredCallback] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    plot_axes: list[PlotAxis] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def loaded(self) -> bool:
        return self.state is ExtensionState.LOADED

    def javascript_files(self) -> list[Path]:
        folder = self.path / "javascript"
        return sorted(folder.glob("*.js")) if folder.is_dir() else []

    def style_file(self) -> Path | None:
        path = self.path / "style.css"
        return path if path.is_file() else None

    def record_error(self, where: str, exc: BaseException) -> ExtensionError:
        """Log `exc` with this extension's name and keep it in the error list."""
        log.error("Extension %s: error in %s: %s", self.name, where, exc, exc_info=exc)
        error = ExtensionError(where, f"{type(exc).__name__}: {exc}",
                               "".join(traceback.format_exception(exc)), time.time())
        with self._lock:
            self.errors.append(error)
            del self.errors[:-MAX_ERRORS]
        return error


ActiveRecords = Callable[[], Sequence[ExtensionRecord]]
"""The loaded, enabled extensions in load order (`ExtensionHost.active_records`), asked at each use."""


def discover(roots: Sequence[ExtensionRoot]) -> list[ExtensionRecord]:
    """Every extension folder under `roots`, as records in discovery order (state SKIPPED until loaded)."""
    records: list[ExtensionRecord] = []
    seen: dict[str, Path] = {}
    for root in roots:
        if not root.path.is_dir():
            continue
        for folder in sorted(root.path.iterdir(), key=lambda p: p.name.lower()):
            if not folder.is_dir() or folder.name.startswith((".", "_")):
                continue
            if not (folder / "scripts").is_dir() and not (folder / "metadata.ini").is_file():
                continue
            builtin = root.builtin and not (folder / ".git").exists()  # a clone in the built-in folder is a user's
            record = ExtensionRecord(read_metadata(folder), folder, builtin)
            record.messages.extend(record.meta.problems)
            if record.name in seen:
                record.messages.append(f"another extension named {record.name!r} is already loaded from "
                                       f"{seen[record.name]}")
            else:
                seen[record.name] = folder
            records.append(record)
    return records


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return f"_{ident}" if ident[:1].isdigit() else ident


def _package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]  # a package rooted at `path`: relative imports of the extension's files work
    module.__package__ = name
    sys.modules[name] = module
    return module


def _forget_modules(prefix: str) -> None:
    for key in [key for key in sys.modules if key == prefix or key.startswith(prefix + ".")]:
        del sys.modules[key]


def _import_script(package: str, path: Path) -> types.ModuleType:
    name = f"{package}.scripts.{_identifier(path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class _Staging:
    """What register() calls added, kept until every script of the extension succeeded."""

    callbacks: list[tuple[Hook, Callable[[Any], Any], int]] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    plot_axes: list[PlotAxis] = field(default_factory=list)


def _run_scripts(record: ExtensionRecord, package: str, staging: _Staging) -> tuple[str, BaseException] | None:
    """Import each scripts/*.py and call its register(); the first failure as (where, exception)."""
    context = ExtensionContext(record.name, record.path, record.version,
                               lambda hook, fn, order: staging.callbacks.append((hook, fn, order)),
                               staging.scripts.append, staging.plot_axes.append)
    folder = record.path / "scripts"
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        where = f"scripts/{path.name}"
        try:
            module = _import_script(package, path)
        except Exception as exc:  # noqa: BLE001 - any import error is isolated
            return f"import of {where}", exc
        register = module.__dict__.get("register")
        if register is None:
            log.info("Extension %s: %s has no register(ext); treated as a helper module", record.name, where)
            continue
        try:
            register(context)
        except Exception as exc:  # noqa: BLE001
            return f"register() of {where}", exc
    return None


def import_extension(record: ExtensionRecord, load_index: int, next_seq: Callable[[], int]) -> bool:
    """Import `record`'s scripts and keep their registrations; on any failure keep nothing (state FAILED)."""
    package = f"{PACKAGE_ROOT}.{_identifier(record.name)}"
    if PACKAGE_ROOT not in sys.modules:
        root = types.ModuleType(PACKAGE_ROOT)
        root.__path__ = []  # a namespace for extension packages; nothing is imported from disk through it
        sys.modules[PACKAGE_ROOT] = root
    _forget_modules(package)
    _package(package, record.path)
    _package(f"{package}.scripts", record.path / "scripts")
    staging = _Staging()
    failure = _run_scripts(record, package, staging)
    if failure is not None:
        where, exc = failure
        _forget_modules(package)
        record.state = ExtensionState.FAILED
        record.messages.append(f"not loaded: {where} failed ({type(exc).__name__}: {exc})")
        record.record_error(where, exc)
        return False
    record.callbacks = [RegisteredCallback(record, hook, fn, order, next_seq())
                        for hook, fn, order in staging.callbacks]
    record.scripts = list(staging.scripts)
    record.plot_axes = list(staging.plot_axes)
    record.load_index = load_index
    record.state = ExtensionState.LOADED
    log.info("Extension %s %s loaded (%d callbacks, %d scripts)", record.name, record.version or "",
             len(record.callbacks), len(record.scripts))
    return True
