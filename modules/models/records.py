"""Checkpoint and VAE records, the scanner that finds them, and checkpoint name matching.

A `CheckpointRecord` is what the UI lists and the API reports: title ("sub/name.safetensors [shorthash]" once the
sha256 is known), model_name, format, identity (probed lazily, once) and hashes; it holds no weights.
`ModelCatalog` scans the checkpoint folders recursively (`.safetensors`, `.ckpt`, not `*.vae.*`; diffusers folders
with `model_index.json`, not descended into; one `--ckpt` file) and the VAE folders (`.safetensors`, `.ckpt`, `.pt`,
diffusers AutoencoderKL folders, and `*.vae.*` files beside checkpoints); a VAE's name is its file name.
`refresh()` re-scans without a restart, keeping the records of unchanged files with their identity and hashes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator

from modules.errors import ModelNotFound, UserError
from modules.models.hashes import HashCache, legacy_model_hash, shorthash
from modules.models.identity import ModelIdentity
from modules.models.keys import RESOLUTION_METADATA_KEY
from modules.models.state_dict import read_metadata

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
VAE_MARKERS = (".vae.safetensors", ".vae.ckpt", ".vae.pt")
_CHECKSUM_SUFFIX = re.compile(r"\s*\[[^]]+]\s*$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")

ProbeFn = Callable[[Path], ModelIdentity]


def default_probe(path: Path) -> ModelIdentity:
    """`modules.models.probe.probe`, imported on the first probe (it reads tensors with torch), not at start-up."""
    from modules.models.probe import probe

    return probe(path)


class Format(str, enum.Enum):
    SAFETENSORS = "safetensors"
    CKPT = "ckpt"
    DIFFUSERS = "diffusers"


def read_resolution(path: Path) -> tuple[int, int] | None:
    """The "WxH" resolution in a safetensors header's metadata, or None (missing, malformed or unreadable)."""
    try:
        text = read_metadata(path).get(RESOLUTION_METADATA_KEY, "")
    except UserError:
        return None
    found = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def natural_sort_key(text: str) -> list[int | str]:
    """"model10" after "model9", case-insensitive (A1111's natural_sort_key)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def format_of(path: Path) -> Format:
    """diffusers for a folder, safetensors by suffix, else a pickle checkpoint."""
    if path.is_dir():
        return Format.DIFFUSERS
    return Format.SAFETENSORS if path.suffix.lower() == ".safetensors" else Format.CKPT


def _file_signature(path: Path) -> tuple[float, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0.0, -1)
    return (stat.st_mtime, stat.st_size)


@dataclass(eq=False, repr=False)
class _HashedRecord:
    """A model file or folder whose sha256 lives in the hash cache under "<HASH_SECTION>/<name>"."""

    HASH_SECTION: ClassVar[str] = ""

    path: Path
    name: str
    format: Format
    hash_cache: HashCache | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def hash_title(self) -> str:
        return f"{self.HASH_SECTION}/{self.name}"

    @property
    def sha256(self) -> str | None:
        """The sha256 if already known (cached and the file unchanged); never hashes the file."""
        if self.hash_cache is None or self.format is Format.DIFFUSERS:
            return None
        return self.hash_cache.cached(self.hash_title, self.path)

    def calculate_sha256(self) -> str | None:
        """Hash the file now if needed (slow for big files; cached). None for diffusers folders or no cache."""
        if self.hash_cache is None or self.format is Format.DIFFUSERS:
            return None
        return self.hash_cache.sha256(self.hash_title, self.path)

    @property
    def shorthash(self) -> str | None:
        """A1111's short hash (the sha256's first 10 hex digits), once the sha256 is known."""
        return shorthash(self.sha256)


@dataclass(eq=False, repr=False)
class CheckpointRecord(_HashedRecord):
    """One checkpoint on disk. `name` is the path relative to the folder it was found in, with '/' separators.

    Records compare by identity, so a record is also the model cache's key: a re-scan that replaces the record
    of a changed file makes its cached components unreachable by key, and the manager drops them.
    """

    HASH_SECTION: ClassVar[str] = "checkpoint"

    probe_fn: ProbeFn = default_probe
    _identity: ModelIdentity | None = field(default=None, repr=False)
    _legacy_hash: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def id(self) -> str:
        """The file's path as a string (unique within a catalog)."""
        return str(self.path)

    @property
    def model_name(self) -> str:
        """A1111 `model_name`: the name without extension, path separators replaced by '_'."""
        stem = self.name if self.format is Format.DIFFUSERS else os.path.splitext(self.name)[0]
        return stem.replace("/", "_").replace("\\", "_")

    @property
    def name_for_extra(self) -> str:
        """The file name without folders and extension (A1111 `name_for_extra`)."""
        base = Path(self.name).name
        return base if self.format is Format.DIFFUSERS else os.path.splitext(base)[0]

    @property
    def title(self) -> str:
        short = self.shorthash
        return self.name if short is None else f"{self.name} [{short}]"

    @property
    def short_title(self) -> str:
        short = self.shorthash
        return self.name_for_extra if short is None else f"{self.name_for_extra} [{short}]"

    @property
    def legacy_hash(self) -> str:
        """A1111's old 8-hex "model hash" ("" for diffusers folders)."""
        if self._legacy_hash is None:
            self._legacy_hash = "" if self.format is Format.DIFFUSERS else legacy_model_hash(self.path)
        return self._legacy_hash

    @property
    def native_resolution(self) -> tuple[int, int] | None:
        """(width, height) the checkpoint was trained at, when its safetensors header states it (Stability's
        ModelSpec key "modelspec.resolution", e.g. "64x64" in the bundled demo model); None when unknown."""
        if self.format is not Format.SAFETENSORS:
            return None
        return read_resolution(self.path)

    @property
    def identity(self) -> ModelIdentity:
        """Family/variant/prediction, probed on first access (raises UnsupportedModel etc. for bad files)."""
        with self._lock:
            if self._identity is None:
                self._identity = self.probe_fn(self.path)
            return self._identity

    def aliases(self) -> list[str]:
        """Every string that names this checkpoint exactly (A1111 `CheckpointInfo.ids`)."""
        ids = [self.title, self.name, self.model_name, self.name_for_extra]
        if self.legacy_hash:
            ids += [self.legacy_hash, f"{self.name} [{self.legacy_hash}]"]
        sha = self.sha256
        if sha:
            ids += [sha[:10], sha, f"{self.name} [{sha[:10]}]", f"{self.name_for_extra} [{sha[:10]}]"]
        return ids


@dataclass(eq=False, repr=False)
class VaeRecord(_HashedRecord):
    """A VAE file or diffusers VAE folder; `name` is its base name (the value of A1111's `sd_vae` setting)."""

    HASH_SECTION: ClassVar[str] = "vae"


@dataclass(frozen=True)
class ScanRoots:
    """Where to look: checkpoint folders (first wins for names), an extra `--ckpt` file, VAE folders."""

    checkpoint_dirs: tuple[Path, ...]
    vae_dirs: tuple[Path, ...] = ()
    ckpt_file: Path | None = None


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort(key=natural_sort_key)
        yield Path(dirpath), dirnames, sorted(filenames, key=natural_sort_key)


def _relative_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _is_diffusers_vae(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf8")).get("_class_name") == "AutoencoderKL"
    except (OSError, ValueError, AttributeError):
        return False


def scan_checkpoint_dir(root: Path) -> Iterator[tuple[Path, str]]:
    """(path, relative name) of checkpoint files and diffusers pipeline folders under `root`."""
    for folder, dirnames, filenames in _walk(root):
        if folder != root and (folder / "model_index.json").is_file():
            dirnames[:] = []
            yield folder, _relative_name(folder, root)
            continue
        for filename in filenames:
            lowered = filename.lower()
            if lowered.endswith(CHECKPOINT_SUFFIXES) and not lowered.endswith(VAE_MARKERS):
                yield folder / filename, _relative_name(folder / filename, root)


def scan_vae_dirs(vae_dirs: Iterable[Path], checkpoint_dirs: Iterable[Path]) -> Iterator[Path]:
    """VAE files/folders: anything VAE-like in VAE folders, `*.vae.*` files beside checkpoints."""
    for root in vae_dirs:
        for folder, dirnames, filenames in _walk(root):
            if folder != root and _is_diffusers_vae(folder):
                dirnames[:] = []
                yield folder
                continue
            yield from (folder / f for f in filenames if f.lower().endswith(VAE_SUFFIXES))
    for root in checkpoint_dirs:
        for folder, _dirs, filenames in _walk(root):
            yield from (folder / f for f in filenames if f.lower().endswith(VAE_MARKERS))


class ModelCatalog:
    """The checkpoints and VAEs on disk, re-scanned by `refresh()`; thread safe."""

    def __init__(self, roots: ScanRoots, hash_cache: HashCache | None = None,
                 probe_fn: ProbeFn = default_probe) -> None:
        self.roots = roots
        self.hash_cache = hash_cache
        self.probe_fn = probe_fn
        self._lock = threading.RLock()
        self._checkpoints: list[CheckpointRecord] = []
        self._vaes: list[VaeRecord] = []
        self._signatures: dict[str, tuple[float, int]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-scan the folders. Records of files whose mtime and size did not change are kept as they are."""
        with self._lock:
            old = {record.id: record for record in self._checkpoints}
            found: dict[str, CheckpointRecord] = {}
            signatures: dict[str, tuple[float, int]] = {}
            for path, name in self._checkpoint_candidates():
                key = str(path)
                signatures[key] = _file_signature(path)
                if key in found:
                    continue
                kept = old.get(key)
                if kept is not None and self._signatures.get(key) == signatures[key] and kept.name == name:
                    found[key] = kept
                else:
                    found[key] = CheckpointRecord(path, name, format_of(path), self.hash_cache, self.probe_fn)
            self._checkpoints = self._unique_titles(found.values())
            self._signatures = signatures
            self._vaes = self._scan_vaes()
            log.info("Found %d checkpoints and %d VAEs", len(self._checkpoints), len(self._vaes))

    def _checkpoint_candidates(self) -> Iterator[tuple[Path, str]]:
        seen: set[Path] = set()
        for root in self.roots.checkpoint_dirs:
            if not root.is_dir() or root.resolve() in seen:
                continue
            seen.add(root.resolve())
            yield from scan_checkpoint_dir(root)
        ckpt = self.roots.ckpt_file
        if ckpt is None:
            return
        if not ckpt.exists():
            log.warning("Checkpoint in --ckpt not found: %s", ckpt)
        elif not any(ckpt.resolve().is_relative_to(root) for root in seen):  # else the scan found it already
            yield ckpt.resolve(), ckpt.name

    def find_path(self, path: Path) -> CheckpointRecord | None:
        """The record of a file or folder, by path (e.g. `--ckpt`)."""
        target = path.resolve()
        return next((record for record in self.checkpoints() if record.path.resolve() == target), None)

    @staticmethod
    def _unique_titles(records: Iterable[CheckpointRecord]) -> list[CheckpointRecord]:
        by_name: dict[str, CheckpointRecord] = {}
        for record in records:
            if record.name in by_name:
                log.warning("Ignoring %s: %s already has the name %r", record.path, by_name[record.name].path,
                            record.name)
                continue
            by_name[record.name] = record
        return sorted(by_name.values(), key=lambda r: natural_sort_key(r.name))

    def _scan_vaes(self) -> list[VaeRecord]:
        found: dict[str, VaeRecord] = {}
        dirs = [d for d in self.roots.vae_dirs if d.is_dir()]
        ckpt_dirs = [d for d in self.roots.checkpoint_dirs if d.is_dir()]
        for path in scan_vae_dirs(dirs, ckpt_dirs):
            record = VaeRecord(path, path.name, format_of(path), self.hash_cache)
            found.setdefault(record.name, record)
        return sorted(found.values(), key=lambda r: natural_sort_key(r.name))

    def checkpoints(self) -> list[CheckpointRecord]:
        with self._lock:
            return list(self._checkpoints)

    def vaes(self) -> list[VaeRecord]:
        with self._lock:
            return list(self._vaes)

    def match(self, search: str) -> CheckpointRecord | None:
        """A1111 `get_closet_checkpoint_match`: exact alias (title, name, model_name, hashes), then a known
        sha256 prefix of 8+ hex digits, then the shortest title containing the text, then the same without a
        trailing "[hash]"."""
        if not search:
            return None
        records = self.checkpoints()
        aliases: dict[str, CheckpointRecord] = {}
        for record in records:
            for alias in record.aliases():
                aliases.setdefault(alias, record)
        if search in aliases:
            return aliases[search]
        if _HEX.match(search.lower()):
            hits = [r for r in records if (r.sha256 or "").startswith(search.lower())]
            if len(hits) == 1:
                return hits[0]
        for text in (search, _CHECKSUM_SUFFIX.sub("", search)):
            found = sorted((r for r in records if text and text in r.title), key=lambda r: len(r.title))
            if found:
                return found[0]
        return None

    def find(self, search: str) -> CheckpointRecord:
        """Like `match`, but raises ModelNotFound listing what is available."""
        record = self.match(search)
        if record is None:
            raise ModelNotFound(f"Checkpoint {search!r} not found. {self.available_summary()}")
        return record

    def available_summary(self) -> str:
        """"Available: a, b" or, with no checkpoints, where to put them."""
        titles = [r.title for r in self.checkpoints()]
        if not titles:
            dirs = ", ".join(str(d) for d in self.roots.checkpoint_dirs)
            return f"No checkpoints were found (looked in {dirs}); put .safetensors files there."
        return "Available: " + ", ".join(titles)

    def find_vae(self, search: str) -> VaeRecord:
        """A VAE by file name (A1111 `sd_vae` value), by name without extension, or by a "name [hash]" title."""
        vaes = self.vaes()
        stripped = _CHECKSUM_SUFFIX.sub("", search)
        for text in (search, stripped):
            for record in vaes:
                if text in (record.name, Path(record.name).stem, record.name.split(".")[0]):
                    return record
        names = ", ".join(r.name for r in vaes) or "none (put VAE files in models/VAE)"
        raise ModelNotFound(f"VAE {search!r} not found. Available: {names}")

    def vae_near(self, checkpoint: CheckpointRecord) -> VaeRecord | None:
        """A1111 "Automatic": a VAE whose file name starts with the checkpoint's file stem followed by '.'
        (e.g. model.vae.pt for model.safetensors). A1111 accepts any prefix; the '.' avoids matching
        sdxl_vae.safetensors to a checkpoint named "sd"."""
        stem = checkpoint.name_for_extra + "."
        return next((record for record in self.vaes() if record.name.startswith(stem)), None)
