"""The read-only listings of `/sdapi/v1` (models, VAEs, samplers, schedulers, upscalers, embeddings, LoRAs,
command-line flags, PNG info) in A1111's JSON shapes, built from the App's services.

Each lists what exists here, not A1111's full catalogue: the samplers and schedule types diffusers can run, the
PIL upscalers ("None", "Lanczos", "Nearest") and the latent upscale modes, embeddings as "loaded" (compatible
with the current checkpoint, which is loaded for the answer if needed) or "skipped" (the rest; all of them when no
checkpoint can be loaded).
Folders are rescanned first when their files changed. Launch flags keep A1111's argparse names, passwords masked.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from modules import infotext
from modules.cli import IGNORED_A1111_FLAGS, Credentials, LaunchOptions
from modules.errors import UserError
from modules.extensions.host import ExtensionHost
from modules.extensions.installer import git_head
from modules.images import read_infotext
from modules.models.manager import ModelOptions, Selection
from modules.prompts.styles import StyleDatabase
from modules.samplers.registry import SamplerRegistry, SamplerSpec, SigmaAlgorithm
from modules.samplers.schedules import AUTOMATIC, AUTOMATIC_LABEL, SCHEDULES
from modules.upscalers.registry import ModelUpscaler, UpscalerRegistry

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

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
    if isinstance(spec.algorithm, SigmaAlgorithm) and spec.algorithm.discard_penultimate:
        options["discard_next_to_last_sigma"] = True
    if "ancestral" in spec.flags:
        options["uses_ensd"] = True
    if "second_order" in spec.flags:
        options["second_order"] = True
    if spec.flags & {"sde", "brownian"}:
        options["brownian_noise"] = True
    if spec.name.endswith("SDE Heun"):
        options["solver_type"] = "heun"
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


def upscalers(registry: UpscalerRegistry) -> list[dict[str, Any]]:
    """GET /sdapi/v1/upscalers (see the module doc)."""
    rows = []
    for upscaler in registry.image_upscalers():
        model = upscaler if isinstance(upscaler, ModelUpscaler) else None
        rows.append({"name": upscaler.name, "model_name": model.folder if model else None,
                     "model_path": str(model.path) if model else None, "model_url": None, "scale": upscaler.scale})
    return rows


def latent_upscale_modes(registry: UpscalerRegistry) -> list[dict[str, Any]]:
    """GET /sdapi/v1/latent-upscale-modes: the `Latent ...` names hires fix takes."""
    return [{"name": u.name} for u in registry.latent_modes()]


def embeddings(app: "App") -> dict[str, Any]:
    """GET /sdapi/v1/embeddings (see the module doc)."""
    app.networks.refresh_embeddings()
    database = app.networks.embeddings
    try:
        options = ModelOptions.from_mapping(app.settings.get())
        record = app.models.resolve_checkpoint(None, options)
        with app.models.use(Selection(record, None)) as components:
            return database.listing(components)
    except UserError as exc:
        log.warning("Embeddings listed without a model (none counts as loaded): %s", exc)
        return {"loaded": {}, "skipped": {name: item.listing() for name, item in database.embeddings.items()}}


def loras(app: "App") -> list[dict[str, Any]]:
    """GET /sdapi/v1/loras (see the module doc)."""
    app.networks.refresh_loras()
    return app.networks.loras.listing()


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


def prompt_styles(styles: StyleDatabase) -> list[dict[str, Any]]:
    """A1111's `GET prompt-styles`: every style of styles.csv, in file order."""
    return [{"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt}
            for style in styles.styles.values()]


def extensions(host: ExtensionHost) -> list[dict[str, Any]]:
    """A1111's `GET extensions`: every discovered extension; git fields are empty for folders that are no checkout
    (the built-in ones), and `version` is the commit's first 8 digits as in A1111, else the declared version."""
    rows = []
    for info in host.list_extensions():
        branch, date = git_head(info.path) if info.commit else (None, None)
        rows.append({"name": info.name, "remote": info.remote or "", "branch": branch or "",
                     "commit_hash": info.commit or "", "version": (info.commit or "")[:8] or info.version,
                     "commit_date": date or 0, "enabled": info.enabled})
    return rows
