"""Model hashes and their on-disk cache, in A1111's formats.

`calculate_sha256` hashes a whole file (its first 10 hex digits are the "shorthash" of titles and infotexts);
`addnet_sha256` hashes a safetensors file's tensor data (the LoRA hash); `legacy_model_hash` is the old 8-hex hash.
`HashCache` keeps sha256 values in A1111's `cache.json` layout ({"hashes": {"checkpoint/<name>": ...}}), so an
existing cache.json is reused and its other sections kept. An entry is valid while the file's mtime and size are
unchanged. Writes are atomic and thread safe; an unreadable cache file is moved aside and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from modules.fileio import set_aside, write_text_atomic

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
LEGACY_OFFSET = 0x100000
LEGACY_LENGTH = 0x10000
SECTION = "hashes"


def calculate_sha256(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """Hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def addnet_sha256(path: str | os.PathLike[str], chunk_size: int = CHUNK_SIZE) -> str:
    """sha256 of a .safetensors file's tensor data (after the 8-byte length and the JSON header): kohya's
    "addnet" hash, which A1111 uses for LoRAs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        handle.seek(8 + header_length)
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def legacy_model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's pre-2023 "model hash": 8 hex of sha256 over 64 KiB at offset 1 MiB ("NOFILE" if missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(LEGACY_OFFSET)
            return hashlib.sha256(handle.read(LEGACY_LENGTH)).hexdigest()[:8]
    except FileNotFoundError:
        return "NOFILE"


def shorthash(sha256: str | None) -> str | None:
    """First 10 hex digits, as A1111 shows them ("Model hash" in infotexts, "[abcdef0123]" in titles)."""
    return sha256[:10] if sha256 else None


class HashCache:
    """sha256 values keyed by an A1111 title ("checkpoint/sub/name.safetensors"), persisted in a JSON file.

    `path=None` keeps the cache in memory only (tests, `--no-hashing`-style setups).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.RLock()
        self._title_locks: dict[str, threading.Lock] = {}
        self._data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            return data
        except (OSError, ValueError) as exc:
            backup = set_aside(self.path, "corrupt")
            log.warning("Hash cache %s is unreadable (%s); moved to %s and rebuilding it", self.path, exc, backup)
            return {}

    def _write(self) -> None:
        if self.path is None:
            return
        write_text_atomic(self.path, json.dumps(self._data, indent=4))

    def _section(self) -> dict[str, Any]:
        section = self._data.get(SECTION)
        if not isinstance(section, dict):
            section = {}
            self._data[SECTION] = section
        return section

    def cached(self, title: str, filename: str | os.PathLike[str]) -> str | None:
        """The cached sha256 for `title` if the file has not changed since it was hashed, else None."""
        try:
            stat = os.stat(filename)
        except FileNotFoundError:
            return None
        with self._lock:
            entry = self._section().get(title)
        if not isinstance(entry, dict) or not entry.get("sha256"):
            return None
        if abs(stat.st_mtime - float(entry.get("mtime", 0))) > 1e-6:
            return None
        if "size" in entry and int(entry["size"]) != stat.st_size:
            return None
        return str(entry["sha256"])

    def sha256(self, title: str, filename: str | os.PathLike[str]) -> str:
        """Cached sha256 of `filename`, computing (and persisting) it when missing or stale.

        Two threads asking for the same title hash the file once.
        """
        value = self.cached(title, filename)
        if value is not None:
            return value
        with self._lock:
            title_lock = self._title_locks.setdefault(title, threading.Lock())
        with title_lock:
            value = self.cached(title, filename)
            if value is not None:
                return value
            log.info("Calculating sha256 for %s", filename)
            stat = os.stat(filename)
            value = calculate_sha256(filename)
            log.info("%s: sha256 %s", filename, value)
            with self._lock:
                self._section()[title] = {"mtime": stat.st_mtime, "size": stat.st_size, "sha256": value}
                self._write()
        return value

    def forget(self, title: str) -> None:
        """Drop one entry (used when a file is known to have changed)."""
        with self._lock:
            if self._section().pop(title, None) is not None:
                self._write()
