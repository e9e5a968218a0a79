"""Typed views of the settings a generation job reads outside the core, and the one rule for output folders.

`OutputOptions` (saving, formats, folders, file name patterns) and `RequestDefaults` (clip skip) are built with
`from_mapping(settings)`, like `CoreOptions` and `ModelOptions`: known keys are picked and converted to the
field's type, unknown keys ignored, missing keys keep the defaults of the option table. `output_folder` is the
only place that turns the outdir_* options and the directory name pattern into a folder, for samples and grids
alike; `OutputOptions.file_pattern` is the file name pattern in force.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Self

from modules.filenames import DEFAULT_DIRECTORY_PATTERN, NameFields, folder_parts, render
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
    samples_filename_pattern: str = ""
    save_images_add_number: bool = True
    save_to_dirs: bool = True
    grid_save_to_dirs: bool = True
    directories_filename_pattern: str = "[date]"
    directories_max_prompt_words: int = 8
    save_txt: bool = False
    webp_lossless: bool = False
    save_incomplete_images: bool = False
    grid_only_if_multiple: bool = True
    n_rows: int = -1
    return_grid: bool = True

    def save_arguments(self, text: str | None, fields: NameFields, *, grid: bool = False,
                       suffix: str = "") -> dict[str, Any]:
        """The keyword arguments of `images.save_image` for one picture (or grid) as these settings save it:
        format, quality, infotext (with `enable_pnginfo`), the file name pattern (plus `suffix`; grids are
        `grid-NNNN`), the number, lossless WebP and the `.txt` file (`save_txt`)."""
        return {
            "seed": fields.seed if fields.seed is not None else 0,
            "infotext": text if self.enable_pnginfo else None,
            "extension": self.grid_format if grid else self.samples_format,
            "jpeg_quality": self.jpeg_quality,
            "basename_pattern": "" if grid else self.file_pattern + suffix,
            "fields": fields,
            "add_number": grid or self.save_images_add_number,
            "basename": "grid" if grid else "",
            "lossless": self.webp_lossless,
            "text_file": text if self.save_txt else None,
        }

    @property
    def file_pattern(self) -> str:
        """The samples' file name pattern: the setting, else A1111's `[seed]` (in dated folders) or
        `[seed]-[prompt_spaces]` (all in one folder)."""
        return self.samples_filename_pattern or ("[seed]" if self.save_to_dirs else "[seed]-[prompt_spaces]")

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
                  fields: NameFields) -> Path:
    """The folder of one of a mode's samples or grids: the configured folder (a relative one is under the data
    directory), then, with `save_to_dirs` (`grid_save_to_dirs` for grids), the `directories_filename_pattern`
    (default `[date]`: `<folder>/<YYYY-MM-DD>`) rendered with the picture's `fields`; its `/` make subfolders,
    which never lead out of the folder (`filenames.folder_parts`).

    With no folder configured: `outputs/<txt2img|img2img>-images` (samples) or `-grids`; inpaint counts as img2img.
    """
    configured = options.configured_folder(mode, kind)
    group = "txt2img" if mode == "txt2img" else "img2img"
    base = Path(configured) if configured else paths.outputs / f"{group}-{'images' if kind == 'samples' else 'grids'}"
    base = base if base.is_absolute() else paths.data_dir / base
    if not (options.save_to_dirs if kind == "samples" else options.grid_save_to_dirs):
        return base
    return pattern_folder(base, options, fields)


def pattern_folder(base: Path, options: OutputOptions, fields: NameFields) -> Path:
    """`base` with the `directories_filename_pattern` (A1111's `[prompt_words]` when empty) rendered for `fields`
    below it; its `/` make subfolders, which never lead out of `base` (`filenames.folder_parts`)."""
    pattern = options.directories_filename_pattern or DEFAULT_DIRECTORY_PATTERN
    return base.joinpath(*folder_parts(render(pattern, fields)))
