"""Component configs of a model: the ones a file carries, the bundled ones per family, and which one wins.

A file may carry its own configs (the "sdwebui.configs" safetensors metadata entry, or `<stem>.configs.json` beside
a `.ckpt`, both written by `convert.save_single_file`); per component they win over the bundled
`models/configs/<identity.config_name>/` configs. The identity's prediction type is always applied to the scheduler
config. Nothing is looked up on the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from modules import paths
from modules.errors import CorruptFile
from modules.models.identity import ModelIdentity
from modules.models.keys import CONFIGS_METADATA_KEY, CONFIGS_SIDECAR_SUFFIX, text_encoder_layouts

Configs = dict[str, dict[str, Any]]


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a config file; CorruptFile naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except (OSError, ValueError) as exc:
        raise CorruptFile(f"{path}: unreadable JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise CorruptFile(f"{path}: expected a JSON object.")
    return data


def sidecar_path(path: Path) -> Path:
    """Where the component configs of a `.ckpt` file are stored: `<stem>.configs.json` next to it."""
    return path.with_name(path.stem + CONFIGS_SIDECAR_SUFFIX)


def parse_configs(text: str, path: Path) -> Configs:
    """Embedded configs from their JSON text; CorruptFile naming `path` when they are not component configs."""
    try:
        configs = json.loads(text)
    except ValueError as exc:
        raise CorruptFile(f"{path.name}: the embedded model configs are not valid JSON ({exc}).") from exc
    if not isinstance(configs, dict) or not all(isinstance(v, dict) for v in configs.values()):
        raise CorruptFile(f"{path.name}: the embedded model configs are not a mapping of component configs.")
    return configs


def embedded_configs(path: Path, metadata: Mapping[str, str]) -> Configs | None:
    """The configs a file carries: its metadata entry, else its sidecar, else None."""
    embedded = metadata.get(CONFIGS_METADATA_KEY)
    if embedded:
        return parse_configs(embedded, path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        text = sidecar.read_text(encoding="utf-8")
    except OSError as exc:
        raise CorruptFile(f"{sidecar}: unreadable ({exc}).") from exc
    return parse_configs(text, sidecar)


def component_names(identity: ModelIdentity) -> tuple[str, ...]:
    """Config keys a family needs: unet, vae, its text encoder folder names, scheduler."""
    return ("unet", "vae", *(layout.component for layout in text_encoder_layouts(identity)), "scheduler")


def bundled_configs(identity: ModelIdentity) -> Configs:
    """The real diffusers configs of a family, from `models/configs/<identity.config_name>/`."""
    folder = paths.family_config_dir(identity.config_name)
    configs: Configs = {}
    for name in component_names(identity):
        filename = "scheduler_config.json" if name == "scheduler" else "config.json"
        configs[name] = read_json_object(folder / name / filename)
    return configs


def resolve_configs(identity: ModelIdentity, embedded: Mapping[str, Mapping[str, Any]] | None = None) -> Configs:
    """Per component: the embedded config when the file carries one, else the bundled one; prediction applied."""
    bundled: Configs | None = None
    configs: Configs = {}
    for name in component_names(identity):
        if embedded and name in embedded:
            configs[name] = dict(embedded[name])
            continue
        bundled = bundled or bundled_configs(identity)
        configs[name] = dict(bundled[name])
    configs["scheduler"]["prediction_type"] = identity.prediction.value
    return configs
