"""LoRA files: the `models/Lora` database, `<lora:...>` multipliers, hashes, and merging into a loaded model.

`apply_loras(components, uses)` is a context manager: on entry it merges `delta W = up @ down * (alpha / rank) *
multiplier` into every layer a LoRA names (the text-encoder multiplier for text-encoder layers, the UNet one for
UNet layers); on exit it copies the saved original tensors back, so the model is bit-identical to before (never
restored by subtracting). A LoRA is found by file stem or metadata alias; `<lora:name:te:unet>`, `te=` and `unet=`
set the multipliers; the scale is alpha / rank, or 1.0 without an alpha. A LoRA that does not fit the loaded model
is skipped, never fatal: the job goes on and reports "Networks with errors: name (count)".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from modules.errors import CorruptFile, InvalidRequest, ModelNotFound
from modules.models.components import ComponentSet
from modules.models.hashes import addnet_sha256, calculate_sha256
from modules.models.speedups import refresh_fused
from modules.models.state_dict import read_metadata, read_state_dict
from modules.networks.folders import LORA_EXTENSIONS
from modules.networks.lora_keys import TEXT_ENCODER, LoraModule, ModuleIndex, Target, group_lora_keys

log = logging.getLogger(__name__)

PEFT_METADATA_KEY = "lora_adapter_metadata"
SHORTHASH_LENGTH = 12


# ---------------------------------------------------------------- files and hashes


def read_safetensors_metadata(path: Path) -> dict[str, Any]:
    """The `__metadata__` of a safetensors header; values that are JSON objects/arrays are decoded (as A1111)."""
    metadata: dict[str, Any] = {}
    for key, value in read_metadata(path).items():
        if value[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        metadata[key] = value
    return metadata


@dataclass
class LoraFile:
    """One LoRA on disk. `name` is the file stem, `alias` the metadata's "ss_output_name" (or the stem)."""

    path: Path
    name: str
    alias: str
    metadata: dict[str, Any] = field(default_factory=dict)
    _sha256: str | None = field(default=None, repr=False)

    @classmethod
    def from_path(cls, path: Path) -> "LoraFile":
        metadata = read_safetensors_metadata(path) if path.suffix.lower() == ".safetensors" else {}
        name = path.stem
        alias = metadata.get("ss_output_name")
        return cls(path=path, name=name, alias=str(alias) if alias else name, metadata=metadata)

    @property
    def sha256(self) -> str:
        """A1111's LoRA hash (addnet hash for .safetensors, file sha256 otherwise); computed once, on first use."""
        if self._sha256 is None:
            is_safetensors = self.path.suffix.lower() == ".safetensors"
            self._sha256 = addnet_sha256(self.path) if is_safetensors else calculate_sha256(self.path)
        return self._sha256

    @property
    def shorthash(self) -> str:
        return self.sha256[:SHORTHASH_LENGTH]

    def load_state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors of the file on the CPU (pickles through the weights-only reader; never executed)."""
        return read_state_dict(self.path)

    def listing(self) -> dict[str, Any]:
        """One entry of A1111's /sdapi/v1/loras."""
        return {"name": self.name, "alias": self.alias, "path": str(self.path), "metadata": self.metadata}


class LoraDatabase:
    """LoRA files under one folder (recursive), looked up the way A1111's Lora extension does."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.files: dict[str, LoraFile] = {}
        self._aliases: dict[str, LoraFile] = {}
        self._ambiguous_aliases: set[str] = set()

    def refresh(self) -> None:
        """Rescan the folder. Unreadable files are logged and left out."""
        files: dict[str, LoraFile] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.rglob("*"), key=lambda p: str(p).lower()):
                if path.is_file() and path.suffix.lower() in LORA_EXTENSIONS:
                    try:
                        entry = LoraFile.from_path(path)
                    except CorruptFile as exc:
                        log.warning("Skipping LoRA: %s", exc)
                        continue
                    files[entry.name] = entry
        aliases: dict[str, LoraFile] = {}
        ambiguous: set[str] = set()
        for entry in files.values():
            if entry.alias in aliases and entry.alias != entry.name:
                ambiguous.add(entry.alias.lower())
            aliases[entry.name] = entry
            aliases[entry.alias] = entry
        self.files, self._aliases, self._ambiguous_aliases = files, aliases, ambiguous
        log.info("Found %d LoRA files in %s", len(files), self.folder)

    def find(self, name: str) -> LoraFile | None:
        """By alias or file stem; an alias that two files share matches only by stem (A1111)."""
        if name.lower() in self._ambiguous_aliases:
            return self.files.get(name)
        return self._aliases.get(name)

    def require(self, name: str) -> LoraFile:
        found = self.find(name)
        if found is None:
            raise ModelNotFound(f"LoRA '{name}' was not found in {self.folder} (by file name or alias).")
        return found

    def listing(self) -> list[dict[str, Any]]:
        """A1111's /sdapi/v1/loras response."""
        return [entry.listing() for entry in self.files.values()]


# ---------------------------------------------------------------- prompt references


@dataclass(frozen=True)
class LoraUse:
    """A LoRA with its multipliers, and the name the prompt used for it (for the "Lora hashes" infotext)."""

    lora: LoraFile
    te_weight: float = 1.0
    unet_weight: float = 1.0
    mentioned_name: str = ""


def _number(name: str, field_name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidRequest(f"<lora:{name}:...>: the {field_name} multiplier '{text}' is not a number.") from None


def lora_multipliers(name: str, args: Sequence[str]) -> tuple[float, float]:
    """(te, unet) multipliers of `<lora:name:args...>`, following A1111's positional and named fields."""
    positional = [arg for arg in args if "=" not in arg]
    named = dict(arg.split("=", 1) for arg in args if "=" in arg)
    te = _number(name, "text encoder", positional[0]) if positional else 1.0
    te = _number(name, "text encoder", named["te"]) if "te" in named else te
    unet = _number(name, "UNet", positional[1]) if len(positional) > 1 else te
    unet = _number(name, "UNet", named["unet"]) if "unet" in named else unet
    if len(positional) > 2 or "dyn" in named:
        log.warning("<lora:%s>: dynamic rank (dyn) is not supported; the LoRA is applied at full rank", name)
    return te, unet


def resolve_lora_refs(database: LoraDatabase, refs: Sequence[tuple[str, Sequence[str]]]) -> list[LoraUse]:
    """`(name, args)` of each `<lora:...>` reference -> LoraUse; an unknown name raises ModelNotFound."""
    uses = []
    for name, args in refs:
        te, unet = lora_multipliers(name, args)
        uses.append(LoraUse(database.require(name), te, unet, mentioned_name=name))
    return uses


def lora_hashes_infotext(uses: Sequence[LoraUse]) -> str:
    """A1111's "Lora hashes" value: "name: shorthash, ..." (':' and ',' removed from names), "" when none."""
    parts = {}
    for use in uses:
        name = (use.mentioned_name or use.lora.alias).replace(":", "").replace(",", "")
        parts[name] = use.lora.shorthash
    return ", ".join(f"{name}: {shorthash}" for name, shorthash in parts.items())


# ---------------------------------------------------------------- merging


def _peft_alphas(metadata: Mapping[str, Any]) -> dict[str, Any]:
    raw = metadata.get(PEFT_METADATA_KEY)
    return raw if isinstance(raw, dict) else {}


def _module_alpha(module: LoraModule, peft: Mapping[str, Any]) -> float | None:
    """The file's alpha for this layer: its ".alpha" tensor, else the PEFT adapter metadata, else None."""
    if module.alpha is not None:
        return module.alpha
    prefix, _, path = module.name.partition(".")
    pattern = peft.get(f"{prefix}.alpha_pattern") or {}
    if isinstance(pattern, dict) and path in pattern:
        return float(pattern[path])
    alpha = peft.get(f"{prefix}.lora_alpha")
    return float(alpha) if alpha is not None else None


def lora_delta(module: LoraModule, target_shape: torch.Size, device: torch.device) -> torch.Tensor:
    """`up @ down` (or the LoCon CP rebuild with `mid`) in float32, reshaped to the target weight's shape.

    Linear and 1x1 ups compose as matrices: a 3x3 down with a 1x1 up gives a 3x3 delta. Raises ValueError when
    the shapes cannot make a delta of `target_shape`.
    """
    assert module.up is not None and module.down is not None
    up = module.up.to(device=device, dtype=torch.float32)
    down = module.down.to(device=device, dtype=torch.float32)
    if up.ndim == 4 and up.shape[2:] != (1, 1):
        raise ValueError(f"an up weight with kernel {tuple(up.shape[2:])}")
    up2, down2 = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
    if module.mid is not None:
        mid = module.mid.to(device=device, dtype=torch.float32)
        delta = torch.einsum("nmkl,in,mj->ijkl", mid, up2, down2)
    else:
        delta = up2 @ down2
    if delta.numel() != target_shape.numel():
        raise ValueError(f"a delta of shape {tuple(delta.shape)} for a weight of shape {tuple(target_shape)}")
    return delta.reshape(target_shape)


@dataclass
class _Patch:
    target: Target
    module: LoraModule
    scale: float


def _plan_patches(lora: LoraFile, index: ModuleIndex) -> tuple[list[_Patch], int]:
    """(layers of `lora` that exist in the model, how many layers the file has); logs the entries that match none
    when some do."""
    grouped = group_lora_keys(lora.load_state_dict())
    peft = _peft_alphas(lora.metadata)
    patches: list[_Patch] = []
    unmatched = list(grouped.unknown)
    for module in grouped.modules.values():
        target = index.find(module.name)
        if target is None or module.up is None or module.down is None:
            unmatched.append(module.name)
            continue
        alpha = _module_alpha(module, peft)
        rank = module.down.shape[0]
        patches.append(_Patch(target, module, alpha / rank if alpha is not None else 1.0))
    if patches and unmatched:
        log.warning(
            "LoRA %s: %d of its entries match no layer of the loaded model and were skipped (e.g. %s)",
            lora.name, len(unmatched), ", ".join(sorted(unmatched)[:3]),
        )
    return patches, len(patches) + len(unmatched)


def networks_with_errors(errors: Mapping[str, int]) -> str:
    """A1111's comment for LoRAs that could not be applied: "Networks with errors: name (count), ..."."""
    return "Networks with errors: " + ", ".join(f"{name} ({count})" for name, count in errors.items())


@dataclass
class AppliedLoras:
    """What `apply_loras` did: the LoRAs merged (`uses`), and for each LoRA that could not be applied in full the
    number of its layers that failed, by the name the prompt used (A1111's `errors` of its Lora extension)."""

    uses: list[LoraUse] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add_errors(self, use: LoraUse, count: int) -> None:
        name = use.mentioned_name or use.lora.name
        self.errors[name] = self.errors.get(name, 0) + count

    def comments(self) -> tuple[str, ...]:
        """Messages for the user ("Networks with errors: ..."), none when every LoRA was applied."""
        return (networks_with_errors(self.errors),) if self.errors else ()


def _as_use(item: LoraUse | tuple[LoraFile, float, float]) -> LoraUse:
    return item if isinstance(item, LoraUse) else LoraUse(item[0], float(item[1]), float(item[2]))


def _plan_all(components: ComponentSet, uses: Sequence[LoraUse], report: AppliedLoras
              ) -> list[tuple[LoraUse, list[_Patch]]]:
    """The patches of every LoRA that has layers in this model; the others are logged and counted as errors."""
    if not uses:
        return []
    index = ModuleIndex(components)
    plans = []
    for use in uses:
        try:
            patches, total = _plan_patches(use.lora, index)
        except CorruptFile as exc:
            log.warning("LoRA %s skipped: %s", use.lora.name, exc)
            report.add_errors(use, 1)
            continue
        if not patches:
            log.warning("LoRA %s skipped: none of its %d layers exist in the loaded %s model (it was made for "
                        "another model family, or is not a LoRA format this program reads)",
                        use.lora.path, total, components.identity.describe())
            report.add_errors(use, max(1, total))
            continue
        plans.append((use, patches))
    return plans


@torch.no_grad()
def _merge(patch: _Patch, multiplier: float, backups: dict[int, tuple[torch.nn.Parameter, torch.Tensor]]) -> bool:
    weight = patch.target.weight
    try:
        delta = lora_delta(patch.module, weight.shape, weight.device)
    except ValueError as exc:
        log.warning("LoRA layer %s skipped: %s", patch.module.name, exc)
        return False
    if id(weight) not in backups:
        backups[id(weight)] = (weight, weight.detach().to("cpu", copy=True))
    merged = weight.detach().to(torch.float32) + delta * (patch.scale * multiplier)
    weight.data.copy_(merged.to(weight.dtype))
    return True


@torch.no_grad()
def _restore(backups: dict[int, tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
    for weight, original in backups.values():
        weight.data.copy_(original.to(weight.device))
    backups.clear()


def same_loras(first: Sequence[LoraUse], second: Sequence[LoraUse]) -> bool:
    """Whether two prompts' LoRAs put the same weights into a model (same files, same multipliers)."""
    return _net_multipliers(first, ()) == _net_multipliers(second, ())


def _net_multipliers(add: Sequence[LoraUse], remove: Sequence[LoraUse]) -> dict[Path, tuple[LoraFile, float, float]]:
    """Per LoRA file, the text-encoder and UNet multipliers of `add` minus those of `remove` (zeros left out)."""
    totals: dict[Path, list[Any]] = {}
    for sign, uses in ((1.0, add), (-1.0, remove)):
        for use in uses:
            entry = totals.setdefault(use.lora.path, [use.lora, 0.0, 0.0])
            entry[1] += sign * use.te_weight
            entry[2] += sign * use.unet_weight
    return {path: (lora, te, unet) for path, (lora, te, unet) in totals.items() if te != 0.0 or unet != 0.0}


def switched_loras(components: ComponentSet, merged: Sequence[LoraUse],
                   wanted: Sequence[LoraUse]) -> contextlib.AbstractContextManager[AppliedLoras]:
    """Within the block, `components` (into which `apply_loras` merged `merged`) hold `wanted` instead: the
    differences of the multipliers are merged on top (a merge is linear in its multiplier), and on exit the weights
    come back as they were, bit-exact. A1111's hires prompt with LoRAs of its own does this for the second pass."""
    return apply_loras(components, list(_net_multipliers(wanted, merged).values()))


@contextlib.contextmanager
def apply_loras(
    components: ComponentSet, uses: Sequence[LoraUse | tuple[LoraFile, float, float]]
) -> Iterator[AppliedLoras]:
    """Merge LoRAs into `components` for the duration of the block; the originals come back on exit, bit-exact.

    `uses` holds LoraUse values or `(lora, te_weight, unet_weight)` tuples. A multiplier of 0 leaves that part of
    the model untouched. As in A1111, a LoRA that does not fit the model never fails the job: one none of whose
    layers exist in the model (made for another family) or whose file cannot be read is skipped, a layer whose
    shape differs is skipped; both are logged and counted in the yielded `AppliedLoras.errors` (whose
    `comments()` give A1111's "Networks with errors: name (count)"). Entries that match no layer while others do
    are only logged, as A1111 does. `AppliedLoras.uses` lists the LoRAs merged.
    """
    report = AppliedLoras()
    plans = _plan_all(components, [_as_use(item) for item in uses], report)
    backups: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}
    try:
        for use, patches in plans:
            merged = failed = 0
            for patch in patches:
                is_te = patch.target.component == TEXT_ENCODER
                multiplier = use.te_weight if is_te else use.unet_weight
                if multiplier != 0.0:
                    done = _merge(patch, multiplier, backups)
                    merged, failed = merged + done, failed + (not done)
            if failed:
                report.add_errors(use, failed)
            report.uses.append(use)
            log.info("LoRA %s: merged %d layers (te %g, unet %g)", use.lora.name, merged, use.te_weight,
                     use.unet_weight)
        _refresh_fused(components, backups)
        yield report
    finally:
        touched = dict(backups)
        _restore(backups)
        _refresh_fused(components, touched)


def _refresh_fused(components: ComponentSet, backups: Mapping[int, tuple[torch.nn.Parameter, torch.Tensor]]) -> None:
    """Rebuild the fused attention projections (the `fused_qkv` setting) whose q/k/v weights were changed."""
    if backups:
        refresh_fused(components.unet, lambda weight: id(weight) in backups)
