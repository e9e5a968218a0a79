"""A1111's `preload.py`: command-line flags that extensions add.

Before the command line is read, the `preload.py` of every extension folder (the built-in ones in `<repo>/extensions`,
then the data directory's `extensions/`) that defines `preload(parser)` is run with an argument group of the
program's parser, as A1111's launcher does (for every extension, enabled or not, so that a command line naming the
flag of a disabled extension still starts). Their values reach the extensions as `launch_flags` (extension API 1.9:
`AppStartedContext.launch_flags`, `UiBuilder.launch_flags`), by argparse's `dest` name ("--controlnet-dir" ->
"controlnet_dir"). A `preload.py` that fails is reported and skipped; the others still run. Like the extensions
themselves, a preload file is code the user chose to install: it runs with the program's rights.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from modules.paths import BUILTIN_EXTENSIONS, DataPaths

log = logging.getLogger(__name__)

GROUP_TITLE = "flags added by extensions (their preload.py)"


def preload_files(roots: Iterable[Path]) -> list[Path]:
    """The `preload.py` files of the extension folders under `roots`, by folder name within each root; a folder
    found twice (the same path under two roots) counts once."""
    found: dict[Path, None] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted((path for path in root.iterdir() if path.is_dir()), key=lambda path: path.name.lower()):
            script = folder / "preload.py"
            if script.is_file():
                found.setdefault(script.resolve(), None)
    return list(found)


def add_extension_flags(parser: argparse.ArgumentParser, roots: Iterable[Path]) -> list[str]:
    """Run each `preload(parser)` with a group of `parser`; returns the `dest` names of the flags they added (and
    logs any `preload.py` that failed, whose partial flags stay)."""
    group = parser.add_argument_group(GROUP_TITLE)
    before = {action.dest for action in parser._actions}
    for script in preload_files(roots):
        try:
            spec = importlib.util.spec_from_file_location(f"sdwebui_preload_{script.parent.name}", script)
            if spec is None or spec.loader is None:
                raise ImportError("not a Python file")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            preload = getattr(module, "preload", None)
            if callable(preload):
                preload(group)
        except Exception as error:  # noqa: BLE001 - an extension's code may fail in any way; the start goes on
            log.error("Extension %s: its preload.py failed (%s); its flags are not available",
                      script.parent.name, error)
    return [action.dest for action in parser._actions if action.dest not in before]


def extension_roots(data_dir: Path) -> list[Path]:
    """Where extensions live for a data directory: the built-in folder, then `<data_dir>/extensions` (as
    `ExtensionHost.for_launch` finds them)."""
    return [BUILTIN_EXTENSIONS, DataPaths(data_dir).extensions]


def flag_values(namespace: argparse.Namespace, dests: Iterable[str]) -> Mapping[str, Any]:
    """The values of the extensions' flags in a parsed namespace."""
    return {dest: getattr(namespace, dest) for dest in dests if hasattr(namespace, dest)}
