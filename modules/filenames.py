"""A1111's file and folder name patterns: `[seed]`, `[prompt_words]`, `[date]`, `[model_name]`, ...

The settings `samples_filename_pattern` and `directories_filename_pattern` are texts with `[tag]`s, rendered per
saved picture from a `NameFields` (what the picture's name may show) by `render`. The tags and their values are
A1111's (see docs/compat.md, "Files"):

- `[seed]`, `[seed_first]`, `[seed_last]`, `[steps]`, `[cfg]`, `[width]`, `[height]`, `[sampler]`, `[scheduler]`,
  `[sampler_scheduler]`, `[styles]`, `[model_name]`, `[model_hash]`, `[vae_filename]`, `[clip_skip]`,
  `[denoising]`, `[batch_number]`, `[batch_size]`, `[generation_number]`, `[basename]`, `[none]`;
- `[prompt]` (spaces become `_`), `[prompt_spaces]`, `[prompt_no_styles]`, `[prompt_words]` (the first
  `directories_max_prompt_words` words), `[hasprompt<word|default>...]`;
- `[prompt_hash<n>]`, `[negative_prompt_hash<n>]`, `[full_prompt_hash<n>]` (8 hex digits of a SHA-256 unless `<n>`
  says), `[image_hash<n>]` (of the pixels, whole unless `<n>`);
- `[date]` (YYYY-MM-DD), `[datetime]`, `[datetime<strftime format>]`, `[datetime<format><time zone>]`,
  `[job_timestamp]` (when the job started).

Values are made safe for file names (`sanitize_part`: no `<>:"/\\|?*`, tabs or line breaks, at most 128
characters, no leading space or trailing dot). A tag that is unknown or has no value here is kept as written, as
A1111 keeps it. `[seed_last]`, `[batch_number]`, `[generation_number]` and `[denoising]` vanish together with the
text before them when they have nothing to say (one picture, no denoising), as in A1111: `[seed]-[batch_number]`
is `1234` for a single picture and `1234-2` for the second of a batch.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image

INVALID_CHARS = '<>:"/\\|?*\n\r\t'
MAX_PART_LENGTH = 128
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
DEFAULT_DIRECTORY_PATTERN = "[prompt_words]"
"""A1111's folder name when `directories_filename_pattern` is empty."""

_TAG = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)", re.DOTALL)
_TAG_ARGUMENT = re.compile(r"(.*)<([^>]*)>$", re.DOTALL)
_NON_LETTERS = re.compile(r"[\s!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+")
_TRANSLATION = {ord(char): "_" for char in INVALID_CHARS}


class _Skip:
    """A tag's value meaning "nothing here, and drop the text before the tag too"."""


SKIP = _Skip()


def sanitize_part(text: str, replace_spaces: bool = True) -> str:
    """`text` made safe as (part of) a file name: A1111's `sanitize_filename_part`."""
    if replace_spaces:
        text = text.replace(" ", "_")
    return text.translate(_TRANSLATION).lstrip(" ")[:MAX_PART_LENGTH].rstrip(" .")


@dataclass(frozen=True)
class NameFields:
    """What the name of one saved picture may show; None or empty where the picture has no such thing."""

    seed: int | None = None
    prompt: str = ""
    negative_prompt: str = ""
    styles: tuple[str, ...] = ()
    style_prompts: tuple[str, ...] = ()
    """The prompt texts of `styles` (for `[prompt_no_styles]`)."""
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str = ""
    scheduler: str = ""
    model_name: str = ""
    model_hash: str = ""
    vae_name: str = ""
    """The VAE file's name without extension; empty for the checkpoint's own VAE."""
    clip_skip: int | None = None
    denoising_strength: float | None = None
    batch_size: int = 1
    batch_index: int = 0
    n_iter: int = 1
    iteration: int = 0
    all_seeds: tuple[int, ...] = ()
    job_timestamp: str = ""
    basename: str = ""
    image: Image.Image | None = None
    max_prompt_words: int = 8
    now: datetime.datetime | None = None
    """The time `[date]`/`[datetime]` show (None: the moment of rendering)."""


def render(pattern: str, fields: NameFields) -> str:
    """`pattern` with its tags replaced by `fields`' values (A1111's `FilenameGenerator.apply`)."""
    out = []
    for match in _TAG.finditer(pattern):
        text, tag = match.group(1), match.group(2)
        if tag is None:
            out.append(text)
            continue
        name, arguments = tag, list[str]()
        while (argument := _TAG_ARGUMENT.match(name)) is not None:
            name = argument.group(1)
            arguments.insert(0, argument.group(2))
        value = _value(name.lower(), arguments, fields)
        if value is SKIP:
            continue
        out.append(text + (str(value) if value is not None else f"[{tag}]"))
    return "".join(out)


def folder_parts(rendered: str) -> tuple[str, ...]:
    """A rendered folder pattern as relative folder names: split at `/` and `\\`, without empty, `.` and `..`
    parts (a pattern never leads out of the output folder)."""
    names = (sanitize_part(part, replace_spaces=False) for part in re.split(r"[/\\]+", rendered.strip()))
    return tuple(name for name in names if name not in ("", ".", ".."))


def prompt_words(prompt: str, count: int) -> str:
    """The first `count` words of the prompt, separated by spaces ("empty" for none): A1111's `[prompt_words]`."""
    words = [word for word in _NON_LETTERS.split(prompt) if word] or ["empty"]
    return sanitize_part(" ".join(words[:max(1, count)]), replace_spaces=False)


def _now(fields: NameFields) -> datetime.datetime:
    return fields.now if fields.now is not None else datetime.datetime.now()


def _datetime(fields: NameFields, arguments: list[str]) -> str:
    time_format = arguments[0] if arguments and arguments[0] else DEFAULT_TIME_FORMAT
    moment = _now(fields)
    if len(arguments) > 1:
        try:
            moment = moment.astimezone(ZoneInfo(arguments[1]))
        except (ZoneInfoNotFoundError, ValueError):
            pass  # an unknown time zone: local time, as A1111
    try:
        text = moment.strftime(time_format)
    except ValueError:
        text = moment.strftime(DEFAULT_TIME_FORMAT)
    return sanitize_part(text, replace_spaces=False)


def _hash(text: str, arguments: list[str], default: int | None = 8) -> str:
    length = int(arguments[0]) if arguments and arguments[0].isdigit() else default
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _has_prompt(fields: NameFields, arguments: list[str]) -> str:
    lower = fields.prompt.lower()
    out = ""
    for argument in arguments:
        if not argument:
            continue
        expected, _, default = argument.partition("|")
        if expected.lower() in lower:
            out += expected.lower()
        else:
            out += default
    return sanitize_part(out)


def _prompt_no_styles(fields: NameFields) -> str:
    prompt = fields.prompt
    for style in fields.style_prompts:
        if not style:
            continue
        for part in style.split("{prompt}"):
            prompt = prompt.replace(part, "").replace(", ,", ",").strip().strip(",")
        prompt = prompt.replace(style, "").strip().strip(",").strip()
    return sanitize_part(prompt, replace_spaces=False)


def _image_hash(fields: NameFields, arguments: list[str]) -> str | None:
    if fields.image is None:
        return None
    length = int(arguments[0]) if arguments and arguments[0].isdigit() else None
    return hashlib.sha256(fields.image.tobytes()).hexdigest()[:length]


def _sampler_scheduler(fields: NameFields, with_sampler: bool) -> str | _Skip:
    if not fields.sampler:
        return SKIP
    schedule = (fields.scheduler or "Automatic").capitalize()
    return sanitize_part(f"{fields.sampler} {schedule}" if with_sampler else schedule, replace_spaces=False)


def _first_or_last_seed(fields: NameFields, last: bool) -> int | None | _Skip:
    if fields.batch_size == 1 or not fields.all_seeds:
        return SKIP if last else fields.seed
    return fields.all_seeds[-1] if last else fields.all_seeds[0]


_TAGS: dict[str, Callable[[NameFields, list[str]], object]] = {
    "basename": lambda f, a: f.basename or "img",
    "seed": lambda f, a: f.seed if f.seed is not None else "",
    "seed_first": lambda f, a: _first_or_last_seed(f, last=False),
    "seed_last": lambda f, a: _first_or_last_seed(f, last=True),
    "steps": lambda f, a: f.steps,
    "cfg": lambda f, a: f.cfg_scale,
    "width": lambda f, a: f.image.width if f.image is not None else None,
    "height": lambda f, a: f.image.height if f.image is not None else None,
    "styles": lambda f, a: sanitize_part(", ".join(s for s in f.styles if s != "None") or "None", replace_spaces=False),
    "sampler": lambda f, a: sanitize_part(f.sampler, replace_spaces=False) if f.sampler else None,
    "sampler_scheduler": lambda f, a: _sampler_scheduler(f, with_sampler=True),
    "scheduler": lambda f, a: _sampler_scheduler(f, with_sampler=False),
    "model_hash": lambda f, a: f.model_hash or None,
    "model_name": lambda f, a: sanitize_part(f.model_name, replace_spaces=False) if f.model_name else None,
    "vae_filename": lambda f, a: sanitize_part(f.vae_name, replace_spaces=False) if f.vae_name else "NoneType",
    "date": lambda f, a: _now(f).strftime("%Y-%m-%d"),
    "datetime": _datetime,
    "job_timestamp": lambda f, a: f.job_timestamp or None,
    "prompt_hash": lambda f, a: _hash(f.prompt, a),
    "negative_prompt_hash": lambda f, a: _hash(f.negative_prompt, a),
    "full_prompt_hash": lambda f, a: _hash(f"{f.prompt} {f.negative_prompt}", a),
    "prompt": lambda f, a: sanitize_part(f.prompt),
    "prompt_no_styles": lambda f, a: _prompt_no_styles(f),
    "prompt_spaces": lambda f, a: sanitize_part(f.prompt, replace_spaces=False),
    "prompt_words": lambda f, a: prompt_words(f.prompt, f.max_prompt_words),
    "batch_number": lambda f, a: SKIP if f.batch_size == 1 else f.batch_index + 1,
    "batch_size": lambda f, a: f.batch_size,
    "generation_number": lambda f, a: (SKIP if f.n_iter == 1 and f.batch_size == 1
                                       else f.iteration * f.batch_size + f.batch_index + 1),
    "hasprompt": _has_prompt,
    "clip_skip": lambda f, a: f.clip_skip,
    "denoising": lambda f, a: f.denoising_strength if f.denoising_strength else SKIP,
    "none": lambda f, a: "",
    "image_hash": _image_hash,
}


def _value(name: str, arguments: list[str], fields: NameFields) -> object:
    tag = _TAGS.get(name)
    return tag(fields, arguments) if tag is not None else None
