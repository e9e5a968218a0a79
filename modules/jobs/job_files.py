"""The model files a job names, as the driver sends them to Ray workers (`job_files`) and as a worker finds them on
its node (`localize`).

Driver: `job_files` resolves, with the driver's own model manager and extra networks, every file the job will
read: the checkpoint, the refiner, the hires-fix checkpoint, the VAE of each pass (the `sd_vae` choice, override or
setting, "Automatic" resolved), the LoRAs of the prompt (`<lora:NAME:...>`, styles applied), the embeddings whose
name appears as a word in one of its prompts, and the checkpoints its script values name (X/Y/Z plot's checkpoint
axis: a value, or a comma-separated part of one, that is exactly a checkpoint's name or title). Each becomes a
`ModelRef` (kind, title, name, sha256): a few hundred bytes per job, never the files. Worker: `localize` finds each
in the node's folders by name and sha256, else by sha256 under any name (`modules.models.by_hash`), re-scanning
once, and answers `ModelNotOnWorker` for the first it lacks. A checkpoint or VAE found under another name is written
into the request (the infotext then names the node's file, with the same hash); a LoRA or embedding found under
another name is lent to the job under the driver's name (`ExtraNetworks.substituted`), so prompts and infotexts stay
as on the driver; a checkpoint a script names is resolved to the node's file while the job runs
(`ModelManager.substituted`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from modules.errors import ModelNotFound
from modules.models.by_hash import (
    EMBEDDING,
    LORA,
    ModelRef,
    find_by_sha256,
    find_vae,
    not_on_worker,
    require_checkpoint,
)
from modules.models.manager import ModelOptions
from modules.networks.service import LORA_KINDS
from modules.prompts.parser import extract_extra_networks_batch
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.bootstrap import GenerationStack
    from modules.models.manager import ModelManager
    from modules.models.records import CheckpointRecord
    from modules.networks.embeddings import Embedding
    from modules.networks.lora import LoraFile
    from modules.networks.service import ExtraNetworks
    from modules.processing import GenerationService


@dataclass(frozen=True)
class JobFiles:
    """The model files of one job as the driver resolved them (None: not used, or the checkpoint's own VAE)."""

    checkpoint: ModelRef | None = None
    refiner: ModelRef | None = None
    hires: ModelRef | None = None
    vae: ModelRef | None = None
    hires_vae: ModelRef | None = None
    loras: tuple[ModelRef, ...] = ()
    embeddings: tuple[ModelRef, ...] = ()
    named: tuple[ModelRef, ...] = ()
    """Checkpoints the job's script values name (X/Y/Z plot's checkpoint axis)."""

    def refs(self) -> tuple[ModelRef, ...]:
        """Every file the job needs, each once."""
        found = (self.checkpoint, self.refiner, self.hires, self.vae, self.hires_vae, *self.loras, *self.embeddings,
                 *self.named)
        return tuple(dict.fromkeys(ref for ref in found if ref is not None))


@dataclass(frozen=True)
class Localized:
    """The request naming this node's checkpoints and VAE, and the LoRAs and embeddings it lends under the
    driver's names (see `ExtraNetworks.substituted`)."""

    request: GenerationRequest
    loras: Mapping[str, "LoraFile"] = field(default_factory=dict)
    embeddings: Mapping[str, "Embedding"] = field(default_factory=dict)
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    """The driver's name or title -> this node's name, for the checkpoints script values name under other names
    here (see `ModelManager.substituted`)."""


def hires_checkpoint_name(request: GenerationRequest) -> str:
    """The hires-fix pass's own checkpoint name, "" when it uses the first pass's (as `GenerationService`)."""
    if request.mode != "txt2img" or not request.enable_hr:
        return ""
    return request.hr_checkpoint_name


# -- the driver ---------------------------------------------------------------------------------------------------


def job_files(generation: "GenerationService", request: GenerationRequest, settings: Any) -> JobFiles:
    """The files `request` will read, resolved by the driver's model manager and networks under `settings` (a
    `Settings` snapshot, the request's overrides applied here). Raises what the driver's resolving raises (a
    name it does not know)."""
    job_settings = settings.with_overrides(request.overrides)
    models, options = generation.models, ModelOptions.from_mapping(job_settings)
    record = models.resolve_checkpoint(request.checkpoint, options)
    hires_name = hires_checkpoint_name(request)
    hires = models.resolve_checkpoint(hires_name, options) if hires_name else None  # named even when the same
    refiner = models.resolve_checkpoint(request.refiner_checkpoint, options) if request.refiner_checkpoint else None
    effective = generation.effective_request(request, job_settings)
    return JobFiles(
        checkpoint=ModelRef.of(record), refiner=None if refiner is None else ModelRef.of(refiner),
        hires=None if hires is None else ModelRef.of(hires), vae=_vae_ref(models, record, request, options),
        hires_vae=None if hires is None else _vae_ref(models, hires, request, options),
        loras=_lora_refs(generation.networks, effective), embeddings=_embedding_refs(generation.networks, effective),
        named=_named_checkpoint_refs(models, request))


def _vae_ref(models: "ModelManager", record: "CheckpointRecord", request: GenerationRequest,
             options: ModelOptions) -> ModelRef | None:
    vae = models.resolve_vae(record, request.vae, options)
    return None if vae is None else ModelRef.of_vae(vae)


MAX_NAMES_TEXT = 10_000
"""Longer script values are not searched for checkpoint names."""


def _named_checkpoint_refs(models: "ModelManager", request: GenerationRequest) -> tuple[ModelRef, ...]:
    """The checkpoints whose exact name or title is a script value of the request, or a comma-separated part of one
    (X/Y/Z plot's checkpoint axis); a model name without its extension is not enough (it could be a prompt word)."""
    by_text: dict[str, "CheckpointRecord"] = {}
    for record in models.list_checkpoints():
        by_text.setdefault(record.name, record)
        by_text.setdefault(record.title, record)
    found: dict[str, "CheckpointRecord"] = {}
    for text in _strings(request.extension_args):
        if len(text) > MAX_NAMES_TEXT:  # a picture as base64, a long prompt: not a list of checkpoints
            continue
        for piece in (text, *text.split(",")):
            named = by_text.get(piece.strip())
            if named is not None:
                found.setdefault(named.name, named)
    return tuple(ModelRef.of(record) for record in found.values())


def _strings(value: Any) -> list[str]:
    """Every string inside `value` (mappings' values, lists and tuples, nested)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


def _lora_refs(networks: "ExtraNetworks", request: GenerationRequest) -> tuple[ModelRef, ...]:
    """The LoRAs of the first prompt's `<lora:...>` (as the job applies them); names the driver lacks are left out
    (the job skips them too)."""
    wanted = [ref for ref in extract_extra_networks_batch([request.prompt])[1] if ref.kind in LORA_KINDS]
    if not wanted:
        return ()
    networks.refresh_loras()
    refs = []
    for ref in wanted:
        lora = networks.loras.find(ref.name)
        if lora is not None:
            refs.append(ModelRef(lora.path.name, ref.name, lora.sha256, LORA))
    return tuple(dict.fromkeys(refs))


def _embedding_refs(networks: "ExtraNetworks", request: GenerationRequest) -> tuple[ModelRef, ...]:
    """The embeddings whose name is a word of one of the prompts (case-insensitive, as the tokenizer reads it)."""
    texts = "\n".join((request.prompt, request.negative_prompt, request.hr_prompt, request.hr_negative_prompt))
    networks.refresh_embeddings()
    return tuple(ModelRef(embedding.path.name, name, embedding.sha256, EMBEDDING)
                 for name, embedding in networks.embeddings.embeddings.items()
                 if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", texts, re.IGNORECASE))


# -- the worker ---------------------------------------------------------------------------------------------------


def localize(stack: "GenerationStack", request: GenerationRequest, files: JobFiles, worker: str) -> Localized:
    """`request` as this node runs it (see the module doc); raises `ModelNotOnWorker` for the first file it lacks."""
    catalog = stack.models.catalog
    changes: dict[str, Any] = {}
    records: dict[str, "CheckpointRecord"] = {}
    for field_name, ref in (("checkpoint", files.checkpoint), ("refiner_checkpoint", files.refiner),
                            ("hr_checkpoint_name", files.hires)):
        if ref is not None:
            records[field_name] = record = require_checkpoint(catalog, ref, worker)
            if record.name != ref.name:
                changes[field_name] = record.name
    options = ModelOptions.from_mapping(stack.generation.job_settings(request))
    vae = _local_vae(stack.models, request, files, records, options, worker)
    if vae is not None:
        changes["vae"] = vae
    loras = {ref.name: _local_lora(stack.networks, ref, worker) for ref in files.loras}
    embeddings = {ref.name: _local_embedding(stack.networks, ref, worker) for ref in files.embeddings}
    named: dict[str, str] = {}
    for ref in files.named:
        record = require_checkpoint(catalog, ref, worker)
        if record.name != ref.name:
            named.update({ref.name: record.name, ref.title: record.name})
    return Localized(request.with_changes(**changes) if changes else request,
                     {name: lora for name, lora in loras.items() if lora is not None},
                     {name: embedding for name, embedding in embeddings.items() if embedding is not None}, named)


def _local_vae(models: "ModelManager", request: GenerationRequest, files: JobFiles,
               records: Mapping[str, "CheckpointRecord"], options: ModelOptions, worker: str) -> str | None:
    """The `vae` the request needs here (None: unchanged). When the node's own choice for each pass has the driver's
    contents, nothing changes; else, when both passes use one VAE, the node's file with its sha256 is named
    ("None" for the checkpoint's own); else the node lacks the VAE."""
    passes = [("checkpoint", files.vae)] + ([("hr_checkpoint_name", files.hires_vae)] if files.hires else [])
    if all(_same_vae(models, records.get(name), request, options, ref) for name, ref in passes):
        return None
    wanted = {ref for _name, ref in passes}
    ref = next((ref for _name, ref in passes if ref is not None), None)
    if len(wanted) == 1 and models.forced_vae is None:
        if ref is None:
            return "None"
        record = find_vae(models.catalog, ref)
        if record is not None:
            return record.name
    assert ref is not None  # two passes differ, or the driver named a VAE: at least one is a file
    raise not_on_worker(ref, worker, models.catalog.roots.vae_dirs)


def _same_vae(models: "ModelManager", record: "CheckpointRecord | None", request: GenerationRequest,
              options: ModelOptions, ref: ModelRef | None) -> bool:
    """Whether the node, left to itself, takes the VAE `ref` (None: the checkpoint's own) for `record`'s pass."""
    if record is None:
        return ref is None
    try:
        mine = models.resolve_vae(record, request.vae, options)
    except ModelNotFound:  # a VAE name this node lacks: looked up by sha256 instead
        return False
    if mine is None or ref is None:
        return mine is None and ref is None
    return mine.calculate_sha256() == ref.sha256 if ref.sha256 else mine.name == ref.name


def _local_lora(networks: "ExtraNetworks", ref: ModelRef, worker: str) -> "LoraFile | None":
    """None when the node's file of that name has the contents, else the node's file with them (to lend)."""
    for attempt in range(2):
        networks.refresh_loras(force=bool(attempt))
        named = networks.loras.find(ref.name)
        if named is not None and named.sha256 == ref.sha256:
            return None
        found = find_by_sha256(networks.loras.files.values(), ref, lambda lora: lora.name, lambda lora: lora.sha256)
        if found is not None:
            return found
    raise not_on_worker(ref, worker, [networks.lora_dir])


def _local_embedding(networks: "ExtraNetworks", ref: ModelRef, worker: str) -> "Embedding | None":
    """None when the node's embedding of that name has the contents, else the node's one with them, renamed."""
    for attempt in range(2):
        networks.refresh_embeddings(force=bool(attempt))
        known = networks.embeddings.embeddings
        named = known.get(ref.name)
        if named is not None and named.sha256 == ref.sha256:
            return None
        found = find_by_sha256(known.values(), ref, lambda item: item.name, lambda item: item.sha256)
        if found is not None:
            return dataclasses.replace(found, name=ref.name)
    raise not_on_worker(ref, worker, [networks.embeddings_dir])
