"""A1111 prompt styles: named prompt fragments kept in `styles.csv`, applied to prompts before generation.

File format (A1111's): UTF-8 CSV (a BOM is accepted and written) with a header and the columns `name, prompt,
negative_prompt` (the oldest `name, text` is read too); names starting with `#` are comments. Other columns are
kept and written back. A style text containing `{prompt}` wraps the user's prompt; any other is appended after
`, `; several apply in the order given, and `extract_styles_from_prompt` undoes this (infotext paste).

Saving is atomic and keeps the previous file as `styles.csv.bak`. A file that cannot be decoded is copied aside to
`styles.csv.corrupt-<time>` before the database starts empty; a file that cannot be read is never overwritten.
"""

from __future__ import annotations

import csv
import logging
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modules.errors import UserError
from modules.fileio import aside_path, atomic_writer

log = logging.getLogger(__name__)

PROMPT_PLACEHOLDER = "{prompt}"
BASE_COLUMNS = ("name", "prompt", "negative_prompt")
_OLD_PROMPT_COLUMN = "text"


class StylesFileError(UserError):
    """styles.csv cannot be written (or would overwrite a file we could not read); the message says which."""

    http_status = 500


@dataclass(frozen=True)
class PromptStyle:
    """One style: `extra` holds the file's other columns (e.g. 'description') as (column, value) pairs."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())


# --- applying and extracting (pure) -------------------------------------------------------------------------------


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Apply one style text to a prompt: fill `{prompt}`, or else append it after `, ` (blank sides dropped)."""
    if PROMPT_PLACEHOLDER in style_prompt:
        return style_prompt.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, style_prompts: Iterable[str]) -> str:
    """Apply style texts one after the other, in order (A1111 `apply_styles_to_prompt`)."""
    for style_prompt in style_prompts:
        prompt = merge_prompts(style_prompt, prompt)
    return prompt


def extract_style_text_from_prompt(style_text: str, prompt: str) -> tuple[bool, str]:
    """Whether `prompt` is `style_text` applied to something, and that something (else the prompt unchanged).

    ("masterpiece", "1girl, masterpiece") -> (True, "1girl");
    ("masterpiece, {prompt}", "masterpiece, 1girl") -> (True, "1girl"). A style text with more than one
    `{prompt}` never matches (A1111 raises there).
    """
    stripped_prompt = prompt.strip()
    stripped_style = style_text.strip()
    if PROMPT_PLACEHOLDER in stripped_style:
        sides = stripped_style.split(PROMPT_PLACEHOLDER)
        if len(sides) != 2:
            return False, prompt
        left, right = sides
        if stripped_prompt.startswith(left) and stripped_prompt.endswith(right):
            return True, stripped_prompt[len(left):len(stripped_prompt) - len(right)]
        return False, prompt
    if stripped_prompt.endswith(stripped_style):
        inner = stripped_prompt[:len(stripped_prompt) - len(stripped_style)]
        return True, inner[:-2] if inner.endswith(", ") else inner
    return False, prompt


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[bool, str, str]:
    """Whether `style` was applied to both prompts, and the prompts without it (A1111 semantics)."""
    if not style.prompt and not style.negative_prompt:
        return False, prompt, negative_prompt
    matched, inner_prompt = extract_style_text_from_prompt(style.prompt, prompt)
    if not matched:
        return False, prompt, negative_prompt
    matched, inner_negative = extract_style_text_from_prompt(style.negative_prompt, negative_prompt)
    if not matched:
        return False, prompt, negative_prompt
    return True, inner_prompt, inner_negative


def extract_styles(styles: Iterable[PromptStyle], prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
    """Peel applied styles off both prompts, last applied first; returns (names in applied order, prompt, negative).

    Each style is removed at most once; at each round the first style (in file order) that matches is taken.
    """
    remaining = list(styles)
    extracted: list[str] = []
    while True:
        for style in remaining:
            matched, new_prompt, new_negative = extract_original_prompts(style, prompt, negative_prompt)
            if matched:
                prompt, negative_prompt = new_prompt, new_negative
                remaining.remove(style)
                extracted.append(style.name)
                break
        else:
            return list(reversed(extracted)), prompt, negative_prompt


# --- reading and writing styles.csv -------------------------------------------------------------------------------


class _CorruptStyles(Exception):
    """The file's content is not a styles CSV (wrong encoding, broken CSV, no `name` column)."""


def read_styles_csv(path: Path) -> tuple[dict[str, PromptStyle], list[str]]:
    """Styles in file order and the file's extra column names; raises `_CorruptStyles` or `OSError`."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file, skipinitialspace=True)
            header = list(reader.fieldnames or [])
            if header and "name" not in header:
                raise _CorruptStyles(f"it has no 'name' column (columns: {', '.join(header)})")
            extra_columns = [c for c in header if c and c not in BASE_COLUMNS and not _is_old_text_column(c, header)]
            styles: dict[str, PromptStyle] = {}
            for row in reader:
                style = _style_from_row(row, header, extra_columns)
                if style is not None:
                    styles[style.name] = style
            return styles, extra_columns
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _CorruptStyles(str(exc)) from exc


def _is_old_text_column(column: str, header: Sequence[str]) -> bool:
    return column == _OLD_PROMPT_COLUMN and "prompt" not in header


def _style_from_row(row: Mapping[str | None, object], header: Sequence[str],
                    extra_columns: Sequence[str]) -> PromptStyle | None:
    def value(column: str) -> str:
        cell = row.get(column)
        return cell if isinstance(cell, str) else ""

    name = value("name")
    if not name or name.startswith("#"):
        return None
    prompt_column = "prompt" if "prompt" in header or _OLD_PROMPT_COLUMN not in header else _OLD_PROMPT_COLUMN
    extra = tuple((column, value(column)) for column in extra_columns if value(column))
    return PromptStyle(name, value(prompt_column), value("negative_prompt"), extra)


def write_styles_csv(path: Path, styles: Iterable[PromptStyle], extra_columns: Sequence[str]) -> None:
    """Write atomically: a temporary file in the same folder, flushed to disk, then renamed over `path`."""
    rows = list(styles)
    columns = list(BASE_COLUMNS) + [c for c in extra_columns if c not in BASE_COLUMNS]
    for style in rows:
        columns += [c for c, _ in style.extra if c not in columns]
    with atomic_writer(path, encoding="utf-8-sig", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        for style in rows:
            writer.writerow({"name": style.name, "prompt": style.prompt,
                             "negative_prompt": style.negative_prompt, **dict(style.extra)})


class StyleDatabase:
    """The styles of one styles.csv, owned by the App. Thread-safe: the UI edits while jobs read.

    `load_warning` is None after a clean load, else a message for the user (the file was set aside or unreadable).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._styles: dict[str, PromptStyle] = {}
        self._extra_columns: list[str] = []
        self._protected = False  # True while the file on disk could not be read and must not be overwritten
        self.load_warning: str | None = None
        self.reload()

    # -- loading and saving --

    def reload(self) -> None:
        """Read the file again; a missing or empty file means no styles."""
        with self._lock:
            self._styles, self._extra_columns, self._protected, self.load_warning = {}, [], False, None
            if not self.path.exists():
                return
            try:
                self._styles, self._extra_columns = read_styles_csv(self.path)
            except _CorruptStyles as exc:
                self._set_aside(str(exc))
            except OSError as exc:
                self._protected = True
                self.load_warning = f"Styles file {self.path} cannot be read ({exc}); it will not be overwritten."
                log.warning(self.load_warning)

    def _set_aside(self, reason: str) -> None:
        """Copy a corrupt file aside so that a later save cannot lose it."""
        backup = aside_path(self.path, "corrupt")
        try:
            shutil.copy2(self.path, backup)
        except OSError as exc:
            self._protected = True
            self.load_warning = (f"Styles file {self.path} is not a valid styles CSV ({reason}) and could not be "
                                 f"copied aside ({exc}); no styles are loaded and the file will not be overwritten.")
        else:
            self.load_warning = (f"Styles file {self.path} is not a valid styles CSV ({reason}); "
                                 f"it was copied to {backup} and no styles are loaded from it.")
        log.warning(self.load_warning)

    def save(self) -> None:
        """Write all styles to the file, keeping the previous version as `<file>.bak`."""
        with self._lock:
            if self._protected:
                raise StylesFileError(f"Not saving styles: {self.path} could not be read when it was loaded, and "
                                      f"saving would overwrite it. Fix or move the file, then reload the styles.")
            try:
                if self.path.exists():
                    shutil.copy2(self.path, self.path.with_name(self.path.name + ".bak"))
                write_styles_csv(self.path, self._styles.values(), self._extra_columns)
            except OSError as exc:
                raise StylesFileError(f"Could not save styles to {self.path}: {exc}") from exc

    # -- the styles --

    @property
    def styles(self) -> dict[str, PromptStyle]:
        """A copy of the styles by name, in file order."""
        with self._lock:
            return dict(self._styles)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._styles)

    def get(self, name: str) -> PromptStyle | None:
        with self._lock:
            return self._styles.get(name)

    def set_style(self, style: PromptStyle) -> None:
        """Add a style, or replace the one of the same name in place (call `save()` to persist)."""
        if not style.name.strip():
            raise UserError("A style needs a name.")
        with self._lock:
            self._styles[style.name] = style

    def delete_style(self, name: str) -> bool:
        """Remove a style; False when there was none of that name (call `save()` to persist)."""
        with self._lock:
            return self._styles.pop(name, None) is not None

    # -- applying --

    def _lookup(self, names: Sequence[str]) -> list[PromptStyle]:
        """Styles by name; an unknown name acts as an empty style, as in A1111 (the prompt is only stripped)."""
        with self._lock:
            found = [self._styles.get(name) for name in names]
        missing = [name for name, style in zip(names, found, strict=True) if style is None]
        if missing:
            log.warning("unknown styles ignored: %s", ", ".join(missing))
        return [style or PromptStyle(name="") for style in found]

    def apply_styles_to_prompt(self, prompt: str, names: Sequence[str]) -> str:
        return apply_styles_to_prompt(prompt, [style.prompt for style in self._lookup(names)])

    def apply_negative_styles_to_prompt(self, negative_prompt: str, names: Sequence[str]) -> str:
        return apply_styles_to_prompt(negative_prompt, [style.negative_prompt for style in self._lookup(names)])

    def apply(self, prompt: str, negative_prompt: str, names: Sequence[str]) -> tuple[str, str]:
        """Both prompts with the named styles applied in order."""
        styles = self._lookup(names)
        return (apply_styles_to_prompt(prompt, [s.prompt for s in styles]),
                apply_styles_to_prompt(negative_prompt, [s.negative_prompt for s in styles]))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """A1111 `extract_styles_from_prompt`: (style names in applied order, prompt, negative prompt)."""
        with self._lock:
            styles = list(self._styles.values())
        return extract_styles(styles, prompt, negative_prompt)
