"""The results panel's **Save** and **Zip** buttons (A1111's `save_files`): keep pictures of the last result.

For users who leave "Always save all generated images" off and keep the ones they like. Save writes the selected
picture (or every picture, with `save_selected_only` off or the grid selected) to `outdir_save` (default
`log/images` under the data directory; with `use_save_to_dirs_for_ui`, in the directory pattern's subfolder), named
by the file name pattern and with its infotext, as generated pictures are; it appends one row per click to
`log.csv` there (A1111's columns). Zip does the same and also packs the saved files into one archive named by
`grid_zip_filename_pattern` (default `[datetime]_[[model_name]]_[seed]-[seed_last]`), for download. Nothing is
overwritten: pictures get new numbers, an archive whose name is taken gets a number, and a `log.csv` with other
columns (an older program's) is set aside as `log.csv.bak` (numbered when that exists) before a new one starts.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from modules import images, infotext
from modules.filenames import NameFields, render, sanitize_part
from modules.job_options import OutputOptions, SettingsView, pattern_folder
from modules.picture_names import JobNames
from modules.types import GenerationResult

LOG_COLUMNS = ("prompt", "seed", "width", "height", "sampler", "cfgs", "steps", "filename", "negative_prompt",
               "sd_model_name", "sd_model_hash")
DEFAULT_ZIP_PATTERN = "[datetime]_[[model_name]]_[seed]-[seed_last]"


@dataclass(frozen=True)
class SaveButtonOptions(SettingsView):
    """The settings of the Save and Zip buttons (option keys and defaults of modules/options.py)."""

    outdir_save: str = "log/images"
    save_selected_only: bool = True
    use_save_to_dirs_for_ui: bool = False
    grid_zip_filename_pattern: str = ""


@dataclass(frozen=True)
class SavedFiles:
    """What one click wrote: the pictures (and text files) in order, and the archive for Zip."""

    pictures: tuple[Path, ...]
    archive: Path | None = None

    @property
    def downloads(self) -> list[Path]:
        """What the browser is offered: the archive, else the pictures."""
        return [self.archive] if self.archive is not None else list(self.pictures)


def chosen_indices(result: GenerationResult, selected: int | None, selected_only: bool) -> list[int]:
    """The pictures a click saves: the selected one, or all when `selected_only` is off, nothing is selected or
    the selected one is the grid (A1111's rule)."""
    count = len(result.images)
    if selected_only and selected is not None and result.grids <= selected < count:
        return [selected]
    return list(range(count))


def save_result(result: GenerationResult, selected: int | None, output: OutputOptions,
                options: SaveButtonOptions, data_dir: Path, *, make_zip: bool = False,
                on_saved: Callable[[Path], None] | None = None) -> SavedFiles:
    """Save the chosen pictures of `result` (see the module docstring); `on_saved` hears of each picture."""
    if not result.images:
        raise ValueError("There is no picture to save: generate one first.")
    root = Path(options.outdir_save or "log/images").expanduser()
    root = root if root.is_absolute() else data_dir / root
    names = JobNames(result.request, tuple(result.request.styles), started=datetime.datetime.now(),
                     max_prompt_words=output.directories_max_prompt_words)
    seeds = result.seeds[result.grids:]
    saved: list[Path] = []
    first_fields: NameFields | None = None
    for index in chosen_indices(result, selected, options.save_selected_only):
        image = result.images[index]
        text = result.infotexts[index] if index < len(result.infotexts) else None
        seed = result.seeds[index] if index < len(result.seeds) else result.request.seed
        fields = names.fields(image, text, seed, max(0, index - result.grids), seeds)
        if first_fields is None:
            first_fields = fields
        folder = pattern_folder(root, output, fields) if options.use_save_to_dirs_for_ui else root
        path = images.save_image(image, folder, **output.save_arguments(text, fields))
        saved.append(path)
        if on_saved is not None:
            on_saved(path)
        if output.save_txt and text is not None:
            saved.append(path.with_suffix(".txt"))
    append_log(root / "log.csv", result, saved[0])
    archive = None
    if make_zip and first_fields is not None:
        pattern = options.grid_zip_filename_pattern or DEFAULT_ZIP_PATTERN
        archive = write_zip(root, sanitize_part(render(pattern, first_fields), replace_spaces=False) or "images",
                            saved)
    return SavedFiles(tuple(saved), archive)


def append_log(path: Path, result: GenerationResult, first_file: Path) -> None:
    """One row for this click in A1111's `log.csv` (the first picture's prompt, seed, size, sampler, ...)."""
    first = result.grids if result.grids < len(result.images) else 0
    text = result.infotexts[first] if first < len(result.infotexts) else ""
    parsed = infotext.parse(text)
    params = parsed.params
    width, height = result.images[first].size
    row = [parsed.prompt, params.get("Seed", str(result.request.seed)), width, height,
           params.get("Sampler", result.request.sampler), params.get("CFG scale", result.request.cfg_scale),
           params.get("Steps", result.request.steps), first_file.name, parsed.negative_prompt,
           params.get("Model", ""), params.get("Model hash", "")]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and _header(path) != list(LOG_COLUMNS):
        _set_aside(path)
    new = not path.exists()
    with open(path, "a", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(LOG_COLUMNS)
        writer.writerow(row)


def _header(path: Path) -> list[str] | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _set_aside(path: Path) -> None:
    """Rename `path` to `<name>.bak` (or `<name>.bak.1`, ... when taken), never over another file."""
    target = path.with_name(f"{path.name}.bak")
    number = 0
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.bak.{number}")
    os.replace(path, target)


def write_zip(folder: Path, stem: str, files: Sequence[Path]) -> Path:
    """A zip archive of `files` (by their names) as `<folder>/<stem>.zip` (`<stem>-1.zip`, ... when taken), written
    whole to a temporary file first."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, arcname=file.name)
    temp = folder / f".{uuid.uuid4().hex}.tmp"
    temp.write_bytes(buffer.getvalue())
    try:
        number = 0
        while True:
            target = folder / (f"{stem}.zip" if number == 0 else f"{stem}-{number}.zip")
            try:
                images.link_without_overwrite(temp, target)
                return target
            except FileExistsError:
                number += 1
    finally:
        temp.unlink(missing_ok=True)
