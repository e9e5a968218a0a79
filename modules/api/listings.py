"""The read-only listings of `/sdapi/v1` (models, VAEs, samplers, schedulers, upscalers, embeddings, LoRAs,
command-line flags, PNG info) in A1111's JSON shapes, built from the App's services.

What is answered where this program differs from A1111:
- upscalers: only what exists here, "None" and the PIL resamplers "Lanczos" and "Nearest" (no model upscalers).
- embeddings: there is no textual-inversion service, so no embedding is applied to prompts. The files found in
  models/embeddings are listed under "skipped" (A1111's list of embeddings not loaded for the current model), with
  vector count and length read from safetensors headers; other formats are pickles and are not opened.
- loras: the files in models/Lora (A1111's Lora extension shape: name, alias, path, metadata). The metadata is
  the safetensors header's `__metadata__` (JSON values decoded), read without loading any tensor.
- cmd-flags: the launch options under A1111's argparse names; passwords in --api-auth/--gradio-auth are masked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from PIL import Image

from modules import infotext
from modules.cli import IGNORED_A1111_FLAGS, Credentials, LaunchOptions
from modules.images import read_infotext
from modules.samplers.registry import SamplerRegistry, SamplerSpec
from modules.samplers.schedules import AUTOMATIC, AUTOMATIC_LABEL, SCHEDULES

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
UPSCALERS = ("None", "Lanczos", "Nearest")
# A1111's metadata for its schedule rows: Karras and Polyexponential have a rho; the timestep-based schedules need
# the model's own sigma table (A1111's `need_inner_model`).
_DEFAULT_RHO = {"karras": 7.0, "polyexponential": 1.0}
_NEEDS_INNER_MODEL = frozenset({"uniform", "sgm_uniform", "simple", "normal", "ddim", "beta"})
# Launch option field -> A1111 argparse dest, where they differ.
_A1111_DESTS = {"log_level": "loglevel"}
_SECRET_FIELDS = ("api_auth", "gradio_auth")


def sd_models(app: "App") -> list[dict[str, Any]]:
    """GET /sdapi/v1/sd-models."""
    return [{"title": r.title, "model_name": r.model_name, "hash": r.shorthash, "sha256": r.sha256,
             "filename": str(r.path), "config": None} for r in app.models.list_checkpoints()]


def sd_vaes(app: "App") -> list[dict[str, Any]]:
    """GET /sdapi/v1/sd-vae: `model_name` is the value the `sd_vae` option takes."""
    return [{"model_name": r.name, "filename": str(r.path)} for r in app.models.list_vaes()]


def _sampler_options(spec: SamplerSpec) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if spec.default_schedule != "uniform":
        options["scheduler"] = spec.default_schedule
    if "ancestral" in spec.flags:
        options["uses_ensd"] = True
    if "second_order" in spec.flags:
        options["second_order"] = True
    if spec.flags & {"sde", "brownian"}:
        options["brownian_noise"] = True
    return options


def samplers(registry: SamplerRegistry) -> list[dict[str, Any]]:
    """GET /sdapi/v1/samplers: the samplers diffusers can run here, in A1111's order."""
    rows = (registry.sampler(name) for name in registry.visible())
    return [{"name": s.name, "aliases": list(s.aliases), "options": _sampler_options(s)} for s in rows]


def schedulers(registry: SamplerRegistry) -> list[dict[str, Any]]:
    """GET /sdapi/v1/schedulers: "Automatic" and every schedule type some sampler here honours."""
    usable = set(registry.schedule_labels())
    items: list[dict[str, Any]] = [{"name": AUTOMATIC, "label": AUTOMATIC_LABEL, "aliases": None,
                                    "default_rho": None, "need_inner_model": None}]
    for spec in SCHEDULES:
        if spec.unsupported or spec.label not in usable:
            continue
        items.append({"name": spec.name, "label": spec.label, "aliases": list(spec.aliases) or None,
                      "default_rho": _DEFAULT_RHO.get(spec.name, -1.0),
                      "need_inner_model": spec.name in _NEEDS_INNER_MODEL})
    return items


def upscalers() -> list[dict[str, Any]]:
    """GET /sdapi/v1/upscalers (see the module doc)."""
    return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
            for name in UPSCALERS]


def _files(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*"), key=lambda p: str(p).lower()):
        if path.is_file() and path.suffix.lower() in suffixes:
            yield path


def _safetensors_header(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensor entries, __metadata__) of a safetensors file, reading only its JSON header; empty when unreadable."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= 100_000_000:
                return {}, {}
            header = json.loads(handle.read(size))
    except (OSError, ValueError) as exc:
        log.warning("Cannot read the header of %s: %s", path, exc)
        return {}, {}
    if not isinstance(header, dict):
        return {}, {}
    metadata = header.pop("__metadata__", None)
    return header, metadata if isinstance(metadata, dict) else {}


def _decode_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, text in metadata.items():
        if isinstance(text, str) and text[:1] in ("{", "["):
            try:
                decoded[key] = json.loads(text)
                continue
            except ValueError:
                pass
        decoded[key] = text
    return decoded


def _embedding_item(path: Path) -> dict[str, Any]:
    item: dict[str, Any] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                            "vectors": None}
    if path.suffix.lower() != ".safetensors":
        return item
    tensors, _ = _safetensors_header(path)
    shapes = [entry.get("shape") for entry in tensors.values() if isinstance(entry, dict)]
    if len(shapes) == 1 and isinstance(shapes[0], list) and len(shapes[0]) == 2:
        item["vectors"], item["shape"] = shapes[0]
    return item


def embeddings(app: "App") -> dict[str, Any]:
    """GET /sdapi/v1/embeddings (see the module doc)."""
    found = {path.stem: _embedding_item(path) for path in _files(app.paths.embeddings, EMBEDDING_SUFFIXES)}
    return {"loaded": {}, "skipped": found}


def loras(app: "App") -> list[dict[str, Any]]:
    """GET /sdapi/v1/loras (see the module doc)."""
    items = []
    for path in _files(app.paths.lora, LORA_SUFFIXES):
        metadata = _decode_metadata(_safetensors_header(path)[1]) if path.suffix.lower() == ".safetensors" else {}
        alias = metadata.get("ss_output_name")
        items.append({"name": path.stem, "alias": alias if isinstance(alias, str) and alias else path.stem,
                      "path": str(path), "metadata": metadata})
    return items


def _masked(credentials: Credentials) -> str | None:
    return ",".join(f"{user}:***" for user, _ in credentials) or None


def cmd_flags(launch: LaunchOptions) -> dict[str, Any]:
    """GET /sdapi/v1/cmd-flags (see the module doc); every A1111 flag accepted without effect is listed too."""
    flags: dict[str, Any] = {}
    for item in dataclasses.fields(launch):
        raw = getattr(launch, item.name)
        if item.name in _SECRET_FIELDS:
            raw = _masked(raw)
        elif isinstance(raw, Path):
            raw = str(raw)
        elif isinstance(raw, tuple):
            raw = list(raw)
        flags[_A1111_DESTS.get(item.name, item.name)] = raw
    device = launch.device or ""
    flags["device_id"] = device.partition(":")[2] or None
    for flag in IGNORED_A1111_FLAGS:
        flags.setdefault(flag.lstrip("-").replace("-", "_"), flag in launch.ignored_flags)
    return flags


_IGNORED_INFO_KEYS = frozenset({"parameters", "exif", "icc_profile", "dpi", "jfif", "jfif_version", "jfif_unit",
                                "jfif_density", "adobe", "adobe_transform", "progressive", "progression", "loop",
                                "background", "timestamp", "duration", "transparency", "chromaticity", "photoshop"})


def png_info(image: Image.Image) -> dict[str, Any]:
    """POST /sdapi/v1/png-info: the infotext, the image's other text metadata, and the parsed parameters."""
    text = read_infotext(image) or ""
    items = {key: item for key, item in image.info.items()
             if key not in _IGNORED_INFO_KEYS and isinstance(key, str) and isinstance(item, (str, int, float))}
    parsed = infotext.parse(text)
    parameters: dict[str, Any] = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt}
    parameters.update(parsed.params)
    for key, default in infotext.A1111_DEFAULTS.items():
        parameters.setdefault(key, default)
    return {"info": text, "items": items, "parameters": parameters}
