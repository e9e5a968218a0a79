"""Finding a checkpoint on another node by its sha256: what a Ray worker uses when its models folder differs.

The driver names a job's checkpoint by a `CheckpointRef` (its title, its name relative to the models folder and
its sha256, computed once and kept in the hash cache). On a worker, `find_checkpoint` takes the file with the same
name when its sha256 is the same, else any checkpoint of the node's catalog with that sha256 (files are hashed on
first look, and the hashes kept in the node's cache.json), else None: the node does not have that model. A file
with the same name and other contents is a different model and does not count. Without a sha256 (a diffusers
folder) the name alone decides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modules.errors import ModelNotFound
from modules.models.records import CheckpointRecord, Format, ModelCatalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as the driver names it to workers: its title, its name (relative path) and its sha256."""

    title: str
    name: str
    sha256: str | None

    @classmethod
    def of(cls, record: CheckpointRecord) -> "CheckpointRef":
        """The reference to `record` (hashes the file the first time; the hash cache keeps the value)."""
        sha256 = None if record.format is Format.DIFFUSERS else record.calculate_sha256()
        return cls(record.title, record.name, sha256)


class CheckpointNotOnWorker(ModelNotFound):
    """This worker's node has no file with the job's checkpoint (by name and sha256); the job goes elsewhere."""

    def __init__(self, message: str, ref: CheckpointRef) -> None:
        super().__init__(message)
        self.ref = ref

    def __reduce__(self) -> tuple[type["CheckpointNotOnWorker"], tuple[str, CheckpointRef]]:
        return type(self), (str(self), self.ref)


def find_checkpoint(catalog: ModelCatalog, ref: CheckpointRef) -> CheckpointRecord | None:
    """The node's checkpoint for `ref`: same name and sha256, else the same sha256 under any name; None if the
    catalog has neither (see the module doc)."""
    records = catalog.checkpoints()
    same_name = next((record for record in records if record.name == ref.name), None)
    if ref.sha256 is None:
        return same_name
    if same_name is not None and _sha256(same_name) == ref.sha256:
        return same_name
    known = [record for record in records if record.sha256 is not None]  # hashed before: no file read
    unknown = [record for record in records if record.sha256 is None and record is not same_name]
    for record in (*known, *unknown):
        if _sha256(record) == ref.sha256:
            log.info("Checkpoint %s found by its sha256 as %s", ref.title, record.path)
            return record
    return None


def require_checkpoint(catalog: ModelCatalog, ref: CheckpointRef, worker: str) -> CheckpointRecord:
    """`find_checkpoint`, re-scanning the folders once when it finds nothing (a file copied there since the last
    scan); raises `CheckpointNotOnWorker` naming the checkpoint and the folders looked in."""
    record = find_checkpoint(catalog, ref)
    if record is None:
        catalog.refresh()
        record = find_checkpoint(catalog, ref)
    if record is None:
        folders = ", ".join(str(folder) for folder in catalog.roots.checkpoint_dirs)
        digest = f" (sha256 {ref.sha256})" if ref.sha256 else ""
        raise CheckpointNotOnWorker(f"The checkpoint {ref.title}{digest} is not on {worker}: no file with that "
                                    f"name and contents under {folders}.", ref)
    return record


def _sha256(record: CheckpointRecord) -> str | None:
    try:
        return record.calculate_sha256()
    except OSError as exc:  # vanished or unreadable since the scan
        log.warning("Cannot hash %s: %s", record.path, exc)
        return None
