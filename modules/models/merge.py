"""Checkpoint Merger (A1111's tab of that name): two or three single-file checkpoints -> a new one.

Methods, with A the primary, B the secondary, C the tertiary model and M the multiplier:
- **Weighted sum**: (1 - M)·A + M·B;
- **Add difference**: A + M·(B - C);
- **No interpolation**: A as it is (to bake in a VAE, drop weights, or save in another format or precision).

As in A1111, only keys whose name contains "model" are merged (the UNet, text encoders and VAE; schedule buffers
and `position_ids` stay A's), keys missing from B (or C) stay A's, and an inpainting (9-channel) or
instruct-pix2pix (8-channel) A merges its first 4 input channels with a normal B (the other way round is an
error). Arithmetic is done in 32-bit floats and stored in A's precision, or fp16 with "Save as float16". "Bake in
VAE" replaces the VAE weights with a VAE file's (A1111 or diffusers layout); "Discard weights" drops the keys a
regular expression finds. The file goes into the first checkpoint folder (`--ckpt-dir`, else
`models/Stable-diffusion`) as `<name>.safetensors` or `.ckpt`, written whole under a temporary name first; a
name that is taken is refused, never overwritten. The component configs this program embeds in a checkpoint (tiny
and demo models) and a `.yaml` beside it are copied as "Copy config from" says, and the safetensors header records
A1111's `sd_merge_recipe` and `sd_merge_models` with "Save metadata".
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from modules.errors import UserError
from modules.models.configs import sidecar_path
from modules.models.keys import CONFIGS_METADATA_KEY
from modules.models.records import CheckpointRecord, Format, VaeRecord
from modules.models.state_dict import StateDict, read_metadata, read_state_dict

if TYPE_CHECKING:
    import torch

Method = Literal["No interpolation", "Weighted sum", "Add difference"]
METHODS: tuple[Method, ...] = ("No interpolation", "Weighted sum", "Add difference")
FORMATS = ("ckpt", "safetensors")
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
SKIP_KEYS = frozenset({"cond_stage_model.transformer.text_model.embeddings.position_ids"})
VAE_PREFIX = "first_stage_model."
_VAE_IGNORED = frozenset({"model_ema.decay", "model_ema.num_updates"})


@dataclass(frozen=True)
class MergeRequest:
    """What the Checkpoint Merger tab sends; checkpoints and the VAE by title or name."""

    primary: str
    secondary: str | None = None
    tertiary: str | None = None
    method: Method = "Weighted sum"
    multiplier: float = 0.3
    name: str = ""
    checkpoint_format: str = "safetensors"
    save_as_half: bool = False
    config_source: str = "A, B or C"
    bake_in_vae: str | None = None
    discard_weights: str = ""
    save_metadata: bool = True


@dataclass(frozen=True)
class MergeInputs:
    """The files a merge reads, resolved by the model manager."""

    primary: CheckpointRecord
    secondary: CheckpointRecord | None
    tertiary: CheckpointRecord | None
    vae: VaeRecord | None


def check_request(request: MergeRequest, inputs: MergeInputs) -> re.Pattern[str] | None:
    """Refuse what cannot run, before anything is read (`UserError` with the reason); the discard pattern."""
    if request.method not in METHODS:
        raise UserError(f"Unknown interpolation method {request.method!r}: choose one of {', '.join(METHODS)}.")
    if request.method != "No interpolation" and inputs.secondary is None:
        raise UserError(f"{request.method} needs a secondary model (B).")
    if request.method == "Add difference" and inputs.tertiary is None:
        raise UserError("Add difference needs a tertiary model (C).")
    if request.checkpoint_format not in FORMATS:
        raise UserError(f"Unknown checkpoint format {request.checkpoint_format!r}: choose ckpt or safetensors.")
    if request.config_source not in CONFIG_SOURCES:
        raise UserError(f"Unknown config source {request.config_source!r}.")
    for role, record in (("A", inputs.primary), ("B", inputs.secondary), ("C", inputs.tertiary)):
        if record is not None and record.format is Format.DIFFUSERS:
            raise UserError(f"Model {role} ({record.name}) is a diffusers folder: the merger works on single-file "
                            "checkpoints (.safetensors / .ckpt).")
    if "/" in request.name or "\\" in request.name or request.name.strip() in (".", ".."):
        raise UserError("The custom name is a file name: no folders.")
    try:
        return re.compile(request.discard_weights) if request.discard_weights.strip() else None
    except re.error as error:
        raise UserError(f"Discard weights is not a valid regular expression: {error}.") from error


def output_name(request: MergeRequest, inputs: MergeInputs) -> str:
    """The file name without extension: the custom name, else A1111's "0.7(a) + 0.3(b)" style name."""
    if request.name.strip():
        return request.name.strip()
    a = inputs.primary.model_name
    m = round(request.multiplier, 2)
    if request.method == "Weighted sum" and inputs.secondary is not None:
        return f"{round(1 - request.multiplier, 2)}({a}) + {m}({inputs.secondary.model_name})"
    if request.method == "Add difference" and inputs.secondary is not None and inputs.tertiary is not None:
        return f"{a} + {m}({inputs.secondary.model_name} - {inputs.tertiary.model_name})"
    return a


def merge_state_dicts(a: StateDict, b: StateDict | None, c: StateDict | None, method: Method,
                      multiplier: float, progress: Callable[[int, int], None] | None = None) -> tuple[StateDict, str]:
    """The merged tensors (a new dict; `a` itself is not changed) and the suffix A1111 adds to the name
    (".inpainting", ".instruct-pix2pix" or "")."""
    import torch

    merged: StateDict = dict(a)
    suffix = ""
    if method == "No interpolation" or b is None:
        return merged, suffix
    keys = [key for key in a if "model" in key and key in b and key not in SKIP_KEYS and a[key].is_floating_point()]
    for done, key in enumerate(keys, 1):
        theirs = b[key].to(torch.float32)
        if method == "Add difference":
            if c is None or key not in c:
                continue  # A1111 adds nothing where C has no such key
            theirs = theirs - c[key].to(torch.float32)
        mine = a[key]
        if mine.shape != theirs.shape:
            merged[key], suffix = _merge_channels(key, mine, theirs, method, multiplier)
        else:
            merged[key] = _combine(mine.to(torch.float32), theirs, method, multiplier).to(mine.dtype)
        if progress is not None:
            progress(done, len(keys))
    return merged, suffix


def _combine(mine: "torch.Tensor", theirs: "torch.Tensor", method: Method, multiplier: float) -> "torch.Tensor":
    if method == "Weighted sum":
        return mine * (1 - multiplier) + theirs * multiplier
    return mine + theirs * multiplier  # add difference: `theirs` is B - C


def _merge_channels(key: str, mine: "torch.Tensor", theirs: "torch.Tensor", method: Method,
                    multiplier: float) -> tuple["torch.Tensor", str]:
    """An inpainting / instruct-pix2pix A with a normal B: only the first 4 input channels are merged."""
    import torch

    same_rest = mine.dim() > 1 and mine.shape[:1] + mine.shape[2:] == theirs.shape[:1] + theirs.shape[2:]
    if not same_rest or theirs.shape[1] != 4 or mine.shape[1] not in (8, 9):
        if same_rest and mine.shape[1] == 4 and theirs.shape[1] in (8, 9):
            kind = "an inpainting" if theirs.shape[1] == 9 else "an instruct-pix2pix"
            raise UserError(f"When merging {kind} model with a normal one, A must be the {kind[3:]} model.")
        raise UserError(f"The models do not fit together: {key} is {tuple(mine.shape)} in A and "
                        f"{tuple(theirs.shape)} in B (different families?).")
    result = mine.clone()
    result[:, :4] = _combine(mine[:, :4].to(torch.float32), theirs, method, multiplier).to(mine.dtype)
    return result, ".inpainting" if mine.shape[1] == 9 else ".instruct-pix2pix"


def vae_weights(path: Path) -> StateDict:
    """A VAE file's weights under the checkpoint's `first_stage_model.` prefix (A1111 or diffusers layout)."""
    from modules.models.convert import vae_to_original

    weights = {key: value for key, value in read_state_dict(path).items()
               if not key.startswith("loss") and key not in _VAE_IGNORED}
    weights = {key.removeprefix(VAE_PREFIX): value for key, value in weights.items()}
    if any("down_blocks." in key or "mid_block." in key for key in weights):
        return vae_to_original(weights, VAE_PREFIX)
    return {VAE_PREFIX + key: value for key, value in weights.items()}


def bake_vae(merged: StateDict, vae: StateDict, vae_name: str) -> None:
    """Replace the checkpoint's VAE weights by `vae`'s (shapes must match)."""
    for key, value in vae.items():
        if key in merged and tuple(merged[key].shape) != tuple(value.shape):
            raise UserError(f"The VAE {vae_name} does not fit this checkpoint ({key} is {tuple(value.shape)}, the "
                            f"checkpoint's is {tuple(merged[key].shape)}).")
        merged[key] = value


def run_merge(request: MergeRequest, inputs: MergeInputs, folder: Path,
              progress: Callable[[str, float], None] | None = None) -> Path:
    """Merge and write the new checkpoint into `folder`; returns its path (see the module docstring)."""
    import torch

    discard = check_request(request, inputs)
    stem = output_name(request, inputs)

    def report(text: str, fraction: float) -> None:
        if progress is not None:
            progress(text, fraction)

    report("Reading model A", 0.0)
    a = read_state_dict(inputs.primary.path)
    b = read_state_dict(inputs.secondary.path) if inputs.secondary is not None and request.method != \
        "No interpolation" else None
    c = read_state_dict(inputs.tertiary.path) if inputs.tertiary is not None and request.method == \
        "Add difference" else None
    merged, suffix = merge_state_dicts(a, b, c, request.method, request.multiplier,
                                       lambda done, total: report(f"Merging: {done} of {total} tensors",
                                                                  0.1 + 0.7 * done / total))
    if inputs.vae is not None:
        report(f"Baking in {inputs.vae.name}", 0.8)
        bake_vae(merged, vae_weights(inputs.vae.path), inputs.vae.name)
    if discard is not None:
        merged = {key: value for key, value in merged.items() if not discard.search(key)}
    final: StateDict = {}
    storages: set[int] = set()
    for key, value in merged.items():
        if request.save_as_half and value.dtype == torch.float32:
            value = value.half()
        pointer = value.untyped_storage().data_ptr()
        final[key] = value.clone() if pointer in storages else value.contiguous()  # a file holds no shared tensors
        storages.add(pointer)
    target = folder / f"{stem}{suffix}.{request.checkpoint_format}"
    if target.exists():
        raise UserError(f"A checkpoint named {target.name} already exists in {folder}: choose another name.")
    report("Saving", 0.9)
    configs_from = _config_source(request, inputs)
    _write(final, target, _metadata(request, inputs, configs_from, suffix))
    if configs_from is not None:
        yaml = configs_from.path.with_suffix(".yaml")
        if yaml.is_file():
            shutil.copyfile(yaml, target.with_suffix(".yaml"))
    report("Done", 1.0)
    return target


def _config_source(request: MergeRequest, inputs: MergeInputs) -> CheckpointRecord | None:
    """The checkpoint whose configs (embedded or `.yaml`) the result takes."""
    choice = {"B": [inputs.secondary], "C": [inputs.tertiary], "Don't": []}.get(
        request.config_source, [inputs.primary, inputs.secondary, inputs.tertiary])
    for record in choice:
        if record is not None and (CONFIGS_METADATA_KEY in _configs(record) or record.path.with_suffix(".yaml")
                                   .is_file()):
            return record
    return None


def _configs(record: CheckpointRecord) -> dict[str, str]:
    """{CONFIGS_METADATA_KEY: json} when the checkpoint carries our component configs (header or sidecar)."""
    if record.format is Format.SAFETENSORS:
        text = read_metadata(record.path).get(CONFIGS_METADATA_KEY)
    else:
        sidecar = sidecar_path(record.path)
        text = sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None
    return {CONFIGS_METADATA_KEY: text} if text else {}


def _metadata(request: MergeRequest, inputs: MergeInputs, configs_from: CheckpointRecord | None,
              suffix: str) -> dict[str, str]:
    header = {"format": "pt", **(_configs(configs_from) if configs_from is not None else {})}
    if not request.save_metadata:
        return header
    used = [record for record in (inputs.primary, inputs.secondary, inputs.tertiary) if record is not None]
    hashes = {record.name: record.calculate_sha256() or "" for record in used}
    recipe = {
        "type": "webui", "interp_method": request.method, "multiplier": request.multiplier,
        "primary_model_hash": hashes[inputs.primary.name],
        "secondary_model_hash": hashes.get(inputs.secondary.name) if inputs.secondary else None,
        "tertiary_model_hash": hashes.get(inputs.tertiary.name) if inputs.tertiary else None,
        "save_as_half": request.save_as_half, "custom_name": request.name, "config_source": request.config_source,
        "bake_in_vae": inputs.vae.name if inputs.vae is not None else None,
        "discard_weights": request.discard_weights, "is_inpainting": suffix == ".inpainting",
        "is_instruct_pix2pix": suffix == ".instruct-pix2pix",
    }
    models = {hashes[record.name]: {"name": record.name, "legacy_hash": record.legacy_hash} for record in used}
    return {**header, "sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


def _write(state: StateDict, target: Path, metadata: dict[str, str]) -> None:
    """Write to a hidden temporary file in the folder, then give it its name (never over an existing file)."""
    import torch
    from safetensors.torch import save_file

    from modules.images import link_without_overwrite

    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    try:
        if target.suffix == ".safetensors":
            save_file(state, str(temp), metadata=metadata)
        else:
            torch.save({"state_dict": state}, temp)
        try:
            link_without_overwrite(temp, target)
        except FileExistsError as error:
            raise UserError(f"A checkpoint named {target.name} already exists: choose another name.") from error
        if target.suffix == ".ckpt" and CONFIGS_METADATA_KEY in metadata:
            sidecar_path(target).write_text(metadata[CONFIGS_METADATA_KEY], encoding="utf-8")
    finally:
        temp.unlink(missing_ok=True)
