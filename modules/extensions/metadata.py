"""What an extension declares about itself, and the checks made before any of its code runs.

`metadata.ini` (A1111's file, with our `Version` and `Api` keys added)::

    [Extension]
    Name = cfg_rescale          ; canonical name, compared lower-case (default: the folder name)
    Version = 1.0.0
    Api = 1                     ; API version it was written for (1, 1.1, ..., 1.4), or a specifier such as ">=1.1,<2"
    Requires = other-ext, a|b   ; extensions that must be loaded first ("a|b": either one)
    Before = some-ext           ; load before these, when present
    After = another-ext         ; load after these, when present

Checks, each of which skips the whole extension with a message (nothing of it is imported):
- `api_problem`: the declared API major version is not this program's `API_VERSION` (no `Api` key means
  "current"; A1111 extensions have none and fail at import instead, which is isolated too). A newer minor version
  than `API_MINOR` still loads, with a note (`api_note`): only what it uses from that version is missing;
- `requirement_problems`: a `requirements.txt` line that the installed packages do not satisfy. A core package
  (torch, diffusers, gradio, ...) at another version is refused as a downgrade or an upgrade of the application's own
  dependencies: requirements are never installed at start (A1111's `install.py` pip calls are not run, see
  installer.py);
- `order_extensions`: a `Requires` entry that names no loadable extension.
"""

from __future__ import annotations

import configparser
import logging
import re
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.ini"
REQUIREMENTS_FILE = "requirements.txt"

CORE_PACKAGES = frozenset(canonicalize_name(name) for name in (
    "torch", "diffusers", "transformers", "tokenizers", "safetensors", "accelerate", "huggingface-hub", "gradio",
    "numpy", "pillow", "fastapi", "pydantic", "uvicorn", "httpx", "lark", "torchsde", "packaging", "torchvision",
    "spandrel", "tomesd", "opencv-python-headless",
))
"""Packages the application itself depends on: an extension may not require another version of any of them."""

VersionLookup = Callable[[str], "str | None"]


def installed_version(name: str) -> str | None:
    """Installed version of distribution `name`, or None when it is not installed."""
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _split_list(text: str) -> tuple[str, ...]:
    """A1111 list syntax: names separated by commas and/or spaces, compared lower-case."""
    return tuple(item for item in re.split(r"[,\s]+", text.strip().lower()) if item)


@dataclass(frozen=True)
class ExtensionMetadata:
    """metadata.ini of one extension folder (defaults when the file or a key is missing)."""

    folder: str
    name: str
    version: str = ""
    api: str | None = None
    requires: tuple[tuple[str, ...], ...] = ()
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())


def read_metadata(folder: Path) -> ExtensionMetadata:
    """Read `folder/metadata.ini`; an unreadable file gives defaults and a problem (which skips the extension)."""
    parser = configparser.ConfigParser()
    path = folder / METADATA_FILE
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        return ExtensionMetadata(folder.name, folder.name.lower(),
                                 problems=(f"{METADATA_FILE} cannot be read: {exc}",))

    def get(key: str) -> str:
        return parser.get("Extension", key, fallback="").strip()

    requires = tuple(tuple(part for part in item.split("|") if part) for item in _split_list(get("Requires")))
    return ExtensionMetadata(
        folder=folder.name,
        name=(get("Name") or folder.name).strip().lower(),
        version=get("Version"),
        api=get("Api") or None,
        requires=requires,
        before=_split_list(get("Before")),
        after=_split_list(get("After")),
    )


def _numeric(declared: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)*", declared) is not None


def api_problem(meta: ExtensionMetadata, api_version: int, api_minor: int = 0) -> str | None:
    """Why `meta`'s declared API version cannot be served by `api_version`.`api_minor`, or None when it can."""
    if meta.api is None:
        return None
    declared = meta.api.strip()
    if _numeric(declared):
        major = int(declared.split(".")[0])
        if major == api_version:
            return None
        return (f"it was written for extension API version {declared}, but this program provides version "
                f"{api_version}; update the extension (or the program)")
    try:
        accepted = SpecifierSet(declared)
    except InvalidSpecifier:
        return f"its {METADATA_FILE} has an unreadable Api value {declared!r} (expected e.g. '1' or '>=1,<2')"
    if accepted.contains(Version(f"{api_version}.{api_minor}")):
        return None
    return f"it needs extension API {declared}, but this program provides version {api_version}.{api_minor}"


def api_note(meta: ExtensionMetadata, api_version: int, api_minor: int) -> str | None:
    """A note when `meta` was written for a newer minor version of the served major version (it still loads)."""
    declared = (meta.api or "").strip()
    if not _numeric(declared):
        return None
    parts = [int(part) for part in declared.split(".")]
    if parts[0] != api_version or len(parts) < 2 or parts[1] <= api_minor:
        return None
    return (f"written for extension API {declared}; this program provides {api_version}.{api_minor}, so what the "
            f"extension uses from the newer version is missing")


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            lines.append(line)
    return lines


def _direction(requirement: Requirement, installed: str) -> str:
    """'downgrade' when every version the specifier names is at or below the installed one, else 'upgrade'."""
    try:
        current = Version(installed)
        named = [Version(spec.version.rstrip(".*")) for spec in requirement.specifier]
    except InvalidVersion:
        return "change"
    return "downgrade" if named and all(version <= current for version in named) else "upgrade"


def _check_requirement(requirement: Requirement, lookup: VersionLookup) -> str | None:
    """Why `requirement` is not satisfied by the installed packages, or None."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        return None
    name = canonicalize_name(requirement.name)
    installed = lookup(requirement.name)
    if installed is None:
        return (f"it requires the package '{requirement}', which is not installed (install it into this program's "
                f"environment, then restart)")
    if not requirement.specifier or requirement.specifier.contains(installed, prereleases=True):
        return None
    if name in CORE_PACKAGES:
        return (f"its requirement '{requirement}' would {_direction(requirement, installed)} the core package "
                f"{requirement.name} {installed} that this program depends on")
    return f"it requires '{requirement}', but {requirement.name} {installed} is installed"


def requirement_problems(folder: Path, lookup: VersionLookup = installed_version) -> tuple[list[str], list[str]]:
    """(problems that skip the extension, warnings) for `folder/requirements.txt`; ([], []) without the file.

    Option lines (`-r`, `--index-url`, `-e`) and lines that are not PEP 508 requirements (bare VCS URLs) cannot be
    checked; they only give warnings."""
    path = folder / REQUIREMENTS_FILE
    if not path.is_file():
        return [], []
    problems: list[str] = []
    warnings: list[str] = []
    for line in _requirement_lines(path):
        if line.startswith("-"):
            warnings.append(f"{REQUIREMENTS_FILE}: option line {line!r} is not checked")
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            warnings.append(f"{REQUIREMENTS_FILE}: {line!r} is not a requirement this program can check")
            continue
        problem = _check_requirement(requirement, lookup)
        if problem is not None:
            problems.append(problem)
    return problems, warnings


@dataclass
class OrderResult:
    """Load order (canonical names), extensions skipped for a missing `Requires`, and ordering notes per name."""

    order: list[str]
    skipped: dict[str, str]
    notes: dict[str, list[str]]


def _unmet_requires(metas: dict[str, ExtensionMetadata]) -> dict[str, str]:
    """Skip extensions whose `Requires` names nothing loadable, repeating until no skip cascades further."""
    skipped: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for name, meta in metas.items():
            if name in skipped:
                continue
            for alternatives in meta.requires:
                if not any(alt in metas and alt not in skipped for alt in alternatives):
                    wanted = " or ".join(repr(alt) for alt in alternatives)
                    skipped[name] = f"it requires the extension {wanted}, which is not installed or not loaded"
                    changed = True
                    break
    return skipped


def _edges(meta: ExtensionMetadata, present: set[str]) -> list[tuple[str, str]]:
    """(first, then) pairs for one extension: required and `After` ones first, `Before` ones after it."""
    edges: list[tuple[str, str]] = []
    for alternatives in meta.requires:
        edges.extend((alt, meta.name) for alt in alternatives if alt in present)
    edges.extend((other, meta.name) for other in meta.after if other in present)
    edges.extend((meta.name, other) for other in meta.before if other in present)
    return [(a, b) for a, b in edges if a != b]


def order_extensions(candidates: Sequence[ExtensionMetadata]) -> OrderResult:
    """Stable topological order of `candidates` (given in discovery order) under Requires/Before/After.

    Ties keep discovery order. A cycle is not fatal: its members are appended in discovery order with a note."""
    metas = {meta.name: meta for meta in candidates}
    skipped = _unmet_requires(metas)
    rank = {name: index for index, name in enumerate(metas) if name not in skipped}
    present = set(rank)
    incoming: dict[str, set[str]] = {name: set() for name in rank}
    for name in rank:
        for first, then in _edges(metas[name], present):
            incoming[then].add(first)
    order: list[str] = []
    while True:
        ready = [name for name in rank if name not in order and not (incoming[name] - set(order))]
        if not ready:
            break
        order.append(min(ready, key=rank.__getitem__))
    notes: dict[str, list[str]] = {}
    rest = [name for name in rank if name not in order]
    for name in rest:
        notes.setdefault(name, []).append(
            f"Before/After/Requires of {', '.join(rest)} form a cycle; loaded in folder order")
    return OrderResult(order + rest, skipped, notes)
