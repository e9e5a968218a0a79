"""The extra-network folders as files: which files count and what they are called, read without opening them.

Light on purpose (no torch): the page lists the names at start-up before any embedding or LoRA is loaded; the
databases (`embeddings.py`, `lora.py`) load the files on first use.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

EMBEDDING_EXTENSIONS = (".pt", ".bin", ".safetensors")
LORA_EXTENSIONS = (".safetensors", ".pt", ".ckpt")

Signature = tuple[tuple[str, int, int], ...]


def folder_signature(folder: Path, extensions: Iterable[str]) -> Signature:
    """(path, size, mtime_ns) of every file with one of `extensions` under `folder`: changes when files do."""
    if not folder.is_dir():
        return ()
    wanted = tuple(extensions)
    rows = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.lower().endswith(wanted):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    stat = os.stat(path)
                    rows.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(rows))


def file_names(folder: Path, extensions: Iterable[str]) -> list[str]:
    """The names (file stems) the databases give the files under `folder`, in their order (a sorted walk), each
    once; empty files are left out, as the embedding database leaves them out."""
    if not folder.is_dir():
        return []
    wanted = tuple(extensions)
    names: dict[str, None] = {}
    for path in sorted(folder.rglob("*"), key=lambda p: str(p).lower()):
        with contextlib.suppress(OSError):
            if path.is_file() and path.suffix.lower() in wanted and path.stat().st_size > 0:
                names.setdefault(path.stem)
    return list(names)
