"""Finding a model file on another node by its sha256: what a Ray worker uses when its models folder differs.

The driver names each model file of a job by a `ModelRef`: its kind (checkpoint, VAE, LoRA, embedding), its title,
its name on the driver (a checkpoint's path relative to the models folder, a VAE's file name, a LoRA's or an
embedding's file stem) and its sha256 (A1111's hash of that kind, computed once on the driver). On a worker,
`find_by_sha256` takes the file with the same name when its sha256 is the same, else any file of that kind on the
node with that sha256, else None: the node does not have that model. A file with the same name and other contents
is a different model and does not count. Without a sha256 (a diffusers folder) the name alone decides.
`find_checkpoint`/`require_checkpoint` apply this to a node's checkpoint catalog (hashes kept in its cache.json).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from modules.errors import ModelNotFound
from modules.models.records import CheckpointRecord, Format, ModelCatalog, VaeRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECKPOINT, VAE, LORA, EMBEDDING = "checkpoint", "VAE", "LoRA", "embedding"
"""The kinds of `ModelRef`, as messages name them."""


@dataclass(frozen=True)
class ModelRef:
    """A model file as the driver names it to workers: its title, its name on the driver, its sha256 and kind."""

    title: str
    name: str
    sha256: str | None
    kind: str = CHECKPOINT

    @classmethod
    def of(cls, record: CheckpointRecord) -> "ModelRef":
        """The reference to a checkpoint (hashes the file the first time; the hash cache keeps the value)."""
        sha256 = None if record.format is Format.DIFFUSERS else record.calculate_sha256()
        return cls(record.title, record.name, sha256)

    @classmethod
    def of_vae(cls, record: VaeRecord) -> "ModelRef":
        sha256 = None if record.format is Format.DIFFUSERS else record.calculate_sha256()
        return cls(record.name, record.name, sha256, VAE)

    @property
    def key(self) -> str:
        """What identifies the contents: the sha256, else the kind and title."""
        return self.sha256 or f"{self.kind}:{self.title}"

    def describe(self) -> str:
        """"the LoRA film-grain (sha256 ...)", as messages name it."""
        digest = f" (sha256 {self.sha256})" if self.sha256 else ""
        return f"the {self.kind} {self.title}{digest}"


class ModelNotOnWorker(ModelNotFound):
    """This worker's node has no file with one of the job's models (by name and sha256); the job goes elsewhere."""

    def __init__(self, message: str, ref: ModelRef) -> None:
        super().__init__(message)
        self.ref = ref

    def __reduce__(self) -> tuple[type["ModelNotOnWorker"], tuple[str, ModelRef]]:
        return type(self), (str(self), self.ref)


def not_on_worker(ref: ModelRef, worker: str, folders: Iterable[object]) -> ModelNotOnWorker:
    """The error a worker answers when it lacks `ref`, naming the folders it looked in."""
    where = ", ".join(str(folder) for folder in folders)
    subject = ref.describe()
    return ModelNotOnWorker(f"{subject[:1].upper()}{subject[1:]} is not on {worker}: no file with that name and "
                            f"contents under {where}.", ref)


def find_by_sha256(candidates: Iterable[T], ref: ModelRef, name_of: Callable[[T], str],
                   sha256_of: Callable[[T], str | None], known: Callable[[T], bool] = lambda _item: False) -> T | None:
    """Among `candidates`: the one named `ref.name` with its sha256, else any with its sha256 (those whose hash is
    `known` already first, so files are read only when needed); None when none has it (see the module doc)."""
    items = list(candidates)
    same_name = next((item for item in items if name_of(item) == ref.name), None)
    if ref.sha256 is None:
        return same_name
    if same_name is not None and _safe(sha256_of, same_name) == ref.sha256:
        return same_name
    others = [item for item in items if item is not same_name]
    for item in sorted(others, key=lambda item: not known(item)):
        if _safe(sha256_of, item) == ref.sha256:
            log.info("%s found by its sha256 as %s", ref.describe(), name_of(item))
            return item
    return None


def find_checkpoint(catalog: ModelCatalog, ref: ModelRef) -> CheckpointRecord | None:
    """The node's checkpoint for `ref`: same name and sha256, else the same sha256 under any name; None if the
    catalog has neither (see the module doc)."""
    return find_by_sha256(catalog.checkpoints(), ref, lambda record: record.name,
                          lambda record: record.calculate_sha256(), lambda record: record.sha256 is not None)


def require_checkpoint(catalog: ModelCatalog, ref: ModelRef, worker: str) -> CheckpointRecord:
    """`find_checkpoint`, re-scanning the folders once when it finds nothing (a file copied there since the last
    scan); raises `ModelNotOnWorker` naming the checkpoint and the folders looked in."""
    record = find_checkpoint(catalog, ref)
    if record is None:
        catalog.refresh()
        record = find_checkpoint(catalog, ref)
    if record is None:
        raise not_on_worker(ref, worker, catalog.roots.checkpoint_dirs)
    return record


def find_vae(catalog: ModelCatalog, ref: ModelRef) -> VaeRecord | None:
    """The node's VAE for `ref` (as `find_checkpoint`), re-scanning the folders once when it finds nothing."""
    for attempt in range(2):
        if attempt:
            catalog.refresh()
        found = find_by_sha256(catalog.vaes(), ref, lambda record: record.name,
                               lambda record: record.calculate_sha256(), lambda record: record.sha256 is not None)
        if found is not None:
            return found
    return None


def _safe(sha256_of: Callable[[T], str | None], item: T) -> str | None:
    try:
        return sha256_of(item)
    except OSError as exc:  # vanished or unreadable since the scan
        log.warning("Cannot hash %s: %s", item, exc)
        return None
