"""Crash-safe file writing shared by every module that persists user data (config.json, styles.csv, cache.json).

A write goes to a temporary file in the same folder, is flushed and fsynced, then renamed over the target, so a
crash leaves either the old or the new file, never a truncated one. A file that cannot be used is moved aside to a
unique timestamped name rather than overwritten, so nothing the user had is lost.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_writer(path: Path, *, encoding: str = "utf-8", newline: str | None = None) -> Iterator[IO[str]]:
    """Open a text file for writing that replaces `path` only when the block completes without an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    with atomic_writer(path, encoding=encoding) as handle:
        handle.write(text)


def aside_path(path: Path, tag: str = "bak") -> Path:
    """A free name `<name>.<tag>-<timestamp>[-n]` beside `path` for keeping a copy of it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.{tag}-{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{tag}-{stamp}-{counter}")
        counter += 1
    return candidate


def set_aside(path: Path, tag: str = "bak") -> Path:
    """Move `path` to `aside_path(path, tag)` (never over an existing file) and return the new path."""
    target = aside_path(path, tag)
    os.replace(path, target)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows); the file itself is already synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
