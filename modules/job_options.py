"""Typed views of the settings a generation job reads outside the core, and the one rule for output folders.

`OutputOptions` (saving, formats, folders) and `RequestDefaults` (clip skip) are built with
`from_mapping(settings)`, like `CoreOptions` and `ModelOptions`: known keys are picked and converted to the
field's type, unknown keys ignored, missing keys keep the defaults of the option table. `output_folder` is the
only place that turns the outdir_* options into a folder, for samples and grids alike.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Self

from modules.paths import DataPaths

OutputKind = Literal["samples", "grids"]


class SettingsView:
    """Base of the frozen dataclasses below: `from_mapping` builds one from a settings mapping."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """The defaults with the fields named in `values` replaced, each converted to the type of its default."""
        view = cls()
        changes = {spec.name: _coerce(type(getattr(view, spec.name)), values[spec.name])
                   for spec in fields(view) if spec.name in values}  # type: ignore[arg-type]
        return replace(view, **changes)  # type: ignore[type-var]


def _coerce(kind: type, value: Any) -> Any:
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if kind is str:
        return str(value or "")
    return kind(value)


@dataclass(frozen=True)
class OutputOptions(SettingsView):
    """How and where a job saves its images and grids (option keys and defaults of modules/options.py)."""

    samples_save: bool = True
    samples_format: str = "png"
    jpeg_quality: int = 80
    enable_pnginfo: bool = True
    save_images_before_highres_fix: bool = False
    grid_save: bool = True
    grid_format: str = "png"
    outdir_samples: str = ""
    outdir_txt2img_samples: str = "outputs/txt2img-images"
    outdir_img2img_samples: str = "outputs/img2img-images"
    outdir_grids: str = ""
    outdir_txt2img_grids: str = "outputs/txt2img-grids"
    outdir_img2img_grids: str = "outputs/img2img-grids"

    def configured_folder(self, mode: str, kind: OutputKind) -> str:
        """The folder option in force: the shared outdir_samples/outdir_grids, else the mode's own ("" if none)."""
        txt2img = mode == "txt2img"
        if kind == "samples":
            return self.outdir_samples or (self.outdir_txt2img_samples if txt2img else self.outdir_img2img_samples)
        return self.outdir_grids or (self.outdir_txt2img_grids if txt2img else self.outdir_img2img_grids)


@dataclass(frozen=True)
class RequestDefaults(SettingsView):
    """Settings that fill request fields left at their defaults: clip skip. (A request's eta left at None means the
    eta setting of its sampler's kind, which the core resolves: `modules/samplers/tuning.py`.)"""

    CLIP_stop_at_last_layers: int = 1


def output_folder(options: OutputOptions, paths: DataPaths, mode: str, kind: OutputKind,
                  day: datetime.date) -> Path:
    """`<folder>/<YYYY-MM-DD>` for a mode's samples or grids; a relative folder is under the data directory.

    With no folder configured: `outputs/<txt2img|img2img>-images` (samples) or `-grids`; inpaint counts as img2img.
    """
    configured = options.configured_folder(mode, kind)
    group = "txt2img" if mode == "txt2img" else "img2img"
    base = Path(configured) if configured else paths.outputs / f"{group}-{'images' if kind == 'samples' else 'grids'}"
    base = base if base.is_absolute() else paths.data_dir / base
    return base / day.isoformat()
