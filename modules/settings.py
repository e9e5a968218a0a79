"""Settings: immutable snapshots of option values (config.json) plus launch flags, and ui-config.json defaults.

A `Settings` value never changes. A job takes `settings.with_overrides(request.overrides)` and gets a copy, so one
request's overrides never leak into another job. The App owns one `SettingsStore`, which swaps in a new snapshot
when the settings tab or an API client saves; readers keep the snapshot they started with.

`config.json` is A1111's flat `{key: value}` object. Unknown keys are kept and written back unchanged; a value of
the wrong type is reported and replaced by its default; a file that is not valid JSON is moved aside to
`config.json.bak-<timestamp>` and defaults are used (`problems` holds the messages for the UI). Writes are atomic.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from modules.cli import LaunchOptions
from modules.errors import InvalidRequest, UserError
from modules.fileio import set_aside, write_text_atomic
from modules.options import OptionTable, OptionValueError, default_table

log = logging.getLogger(__name__)


class SettingsNotSaved(UserError):
    """The new settings are in effect but could not be written to disk (message names the file and reason)."""

    http_status = 500


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Read a JSON object file. Returns (data, None), (None, None) if the file is missing, or (None, problem).

    A file that exists but is not a JSON object is moved to `<name>.bak-<timestamp>` first, so that the next save
    cannot overwrite what the user had.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"{path.name} could not be read ({exc.strerror or exc}); defaults are used."
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # -sig: tolerate the BOM some Windows editors add
        reason = None if isinstance(data, dict) else f"it holds a JSON {type(data).__name__}, not an object"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        data, reason = None, f"it is not valid JSON: {exc}"
    if reason is None:
        return data, None
    try:
        backup = set_aside(path, "bak")
    except OSError as exc:
        return None, f"{path.name} could not be used ({reason}) nor moved aside ({exc}); defaults are used."
    return None, f"{path.name} could not be used ({reason}). It was moved to {backup} and defaults are used."


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that a crash leaves either the old or the new file, never a truncated one."""
    write_text_atomic(path, json.dumps(data, indent=4, ensure_ascii=False))


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Settings(Mapping[str, Any]):
    """An immutable snapshot: every option of the table (default when unset) plus preserved unknown keys.

    Read as a mapping (`settings["jpeg_quality"]`) or by attribute for known options (`settings.jpeg_quality`).
    `launch` holds the command-line flags; `problems` the messages produced while loading this snapshot.
    """

    __slots__ = ("_table", "_data", "launch", "problems")

    def __init__(self, table: OptionTable | None = None, values: Mapping[str, Any] | None = None, *,
                 launch: LaunchOptions | None = None) -> None:
        """Strict constructor: every value must be valid for its option (raises InvalidRequest otherwise)."""
        table = table if table is not None else default_table()
        data = table.defaults()
        data.update(_validate_changes(table, values or {}, allow_unknown=True))
        self._init(table, data, launch if launch is not None else LaunchOptions(), ())

    def _init(self, table: OptionTable, data: dict[str, Any], launch: LaunchOptions,
              problems: tuple[str, ...]) -> None:
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "launch", launch)
        object.__setattr__(self, "problems", problems)

    @classmethod
    def _make(cls, table: OptionTable, data: dict[str, Any], launch: LaunchOptions,
              problems: tuple[str, ...] = ()) -> "Settings":
        obj = cls.__new__(cls)
        obj._init(table, data, launch, problems)
        return obj

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], table: OptionTable | None = None, *,
                     launch: LaunchOptions | None = None, source: str = "config.json") -> "Settings":
        """Lenient constructor for file contents: invalid values fall back to defaults with a problem message."""
        table = table if table is not None else default_table()
        data: dict[str, Any] = {}
        problems: list[str] = []
        for key, value in raw.items():
            spec = table.get(key)
            if spec is None:
                data[key] = value
                continue
            try:
                data[key] = spec.validate(value)
            except OptionValueError as exc:
                message = (f"{source}: setting {key!r} has value {value!r} but {exc}; "
                           f"the default {spec.default!r} is used.")
                log.warning(message)
                problems.append(message)
                data[key] = spec.default
        for key, default in table.defaults().items():
            data.setdefault(key, default)
        return cls._make(table, data, launch or LaunchOptions(), tuple(problems))

    @classmethod
    def load(cls, path: Path, table: OptionTable | None = None, *,
             launch: LaunchOptions | None = None) -> "Settings":
        """Read config.json; a missing file gives defaults; see the module doc for broken files."""
        raw, problem = read_json_object(path)
        settings = cls.from_mapping(raw or {}, table, launch=launch, source=path.name)
        if problem:
            log.warning(problem)
            settings = cls._make(settings._table, settings._data, settings.launch, (problem, *settings.problems))
        return settings

    def save(self, path: Path) -> None:
        """Write every value (A1111 writes defaults too) atomically."""
        write_json_atomic(path, self.to_json())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict: known options and preserved unknown keys."""
        return {key: _json_value(value) for key, value in self._data.items()}

    @property
    def table(self) -> OptionTable:
        return self._table

    def known(self) -> dict[str, Any]:
        """Values of the options in the table only (what `GET /sdapi/v1/options` documents)."""
        return {key: self._data[key] for key in self._table}

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> "Settings":
        """A copy with some options changed (A1111 `override_settings`); unknown keys or bad values raise
        InvalidRequest naming all of them. The original snapshot is unchanged."""
        if not overrides:
            return self
        changes = _validate_changes(self._table, overrides)
        return Settings._make(self._table, {**self._data, **changes}, self.launch)

    def with_table(self, table: OptionTable) -> "Settings":
        """Re-read this snapshot under a bigger table (extension options): preserved unknown keys that the new
        table defines are validated now; invalid ones fall back to defaults with a problem message."""
        return Settings.from_mapping(self._data, table, launch=self.launch)

    def with_launch(self, launch: LaunchOptions) -> "Settings":
        return Settings._make(self._table, dict(self._data), launch, self.problems)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and name in self._table:
            return self._data[name]
        raise AttributeError(f"Settings has no option or attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are immutable; use with_overrides() or SettingsStore.update()")

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._data.items() if k not in self._table or v != self._table[k].default}
        return f"Settings(changed={changed!r})"


def _validate_changes(table: OptionTable, changes: Mapping[str, Any], *,
                      allow_unknown: bool = False) -> dict[str, Any]:
    """Validated copy of `changes`; InvalidRequest lists every unknown key and every bad value at once."""
    unknown = sorted(key for key in changes if key not in table)
    errors: list[str] = []
    result: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in table:
            result[key] = value
            continue
        try:
            result[key] = table[key].validate(value)
        except OptionValueError as exc:
            errors.append(f"{key}: {exc} (got {value!r})")
    messages = []
    if unknown and not allow_unknown:
        messages.append("Unknown settings: " + ", ".join(unknown) + ".")
    if errors:
        messages.append("Invalid values: " + "; ".join(errors) + ".")
    if messages:
        raise InvalidRequest(" ".join(messages))
    return result


SettingsListener = Callable[[Settings, Settings], None]


class SettingsStore:
    """The App's current settings: `get()` a snapshot, `update(changes)` to swap in a new one (and save it)."""

    def __init__(self, initial: Settings, path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._current = initial
        self._path = path
        self._listeners: list[SettingsListener] = []
        self.problems: tuple[str, ...] = initial.problems

    @classmethod
    def open(cls, path: Path, table: OptionTable | None = None, *,
             launch: LaunchOptions | None = None) -> "SettingsStore":
        """Load config.json (see `Settings.load`) and keep saving to the same file."""
        return cls(Settings.load(path, table, launch=launch), path)

    @property
    def path(self) -> Path | None:
        return self._path

    def get(self) -> Settings:
        with self._lock:
            return self._current

    def update(self, changes: Mapping[str, Any], *, persist: bool = True) -> Settings:
        """Validate and apply `changes` (InvalidRequest for unknown keys or bad values, nothing applied then),
        notify listeners, save to the store's file and return the new snapshot. If only the save fails, the new
        settings stay in effect and SettingsNotSaved is raised."""
        with self._lock:
            old = self._current
            new = self._current = old.with_overrides(changes)
            listeners = list(self._listeners)
            failure = self._save_locked() if persist else None
        self._notify(listeners, old, new)
        if failure is not None:
            raise failure
        return new

    def replace_table(self, table: OptionTable) -> Settings:
        """Adopt a table with extension options (values for them may already be in config.json); problems with
        those values are logged and appended to `problems`."""
        with self._lock:
            self._current = self._current.with_table(table)
            self.problems = (*self.problems, *self._current.problems)
            return self._current

    def persist(self) -> None:
        """Write the current snapshot to the store's file (no-op without a path); SettingsNotSaved on failure."""
        with self._lock:
            failure = self._save_locked()
        if failure is not None:
            raise failure

    def _save_locked(self) -> SettingsNotSaved | None:
        if self._path is None:
            return None
        try:
            self._current.save(self._path)
        except OSError as exc:
            log.error("could not save settings to %s: %s", self._path, exc)
            return SettingsNotSaved(f"The settings were applied but could not be saved to {self._path}: "
                                    f"{exc.strerror or exc}.")
        return None

    def subscribe(self, listener: SettingsListener) -> Callable[[], None]:
        """Call `listener(old, new)` after every update; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @staticmethod
    def _notify(listeners: list[SettingsListener], old: Settings, new: Settings) -> None:
        for listener in listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("settings listener %r failed", listener)


@dataclass(frozen=True)
class ComponentConfig:
    """Initial value and slider bounds of one UI component (None where the component has no such field)."""

    value: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


FIELDS = ("value", "minimum", "maximum", "step")


def _slider(value: float, minimum: float, maximum: float, step: float) -> ComponentConfig:
    return ComponentConfig(value, minimum, maximum, step)


def _generation_components() -> dict[str, ComponentConfig]:
    return {
        "Prompt": ComponentConfig(""),
        "Negative prompt": ComponentConfig(""),
        "Sampling method": ComponentConfig("DPM++ 2M"),
        "Schedule type": ComponentConfig("Automatic"),
        "Sampling steps": _slider(20, 1, 150, 1),
        "Width": _slider(512, 64, 2048, 8),
        "Height": _slider(512, 64, 2048, 8),
        "Batch count": _slider(1, 1, 100, 1),
        "Batch size": _slider(1, 1, 8, 1),
        "CFG Scale": _slider(7.0, 1.0, 30.0, 0.5),
        "Seed": ComponentConfig(-1),
        "Variation seed": ComponentConfig(-1),
        "Variation strength": _slider(0.0, 0.0, 1.0, 0.01),
    }


def default_ui_components() -> dict[str, ComponentConfig]:
    """A1111's component ids ("tab/label") and defaults for the generation tabs. Inpaint controls live under
    "img2img/" as in A1111, so an A1111 ui-config.json applies unchanged."""
    components = {f"txt2img/{label}": cfg for label, cfg in _generation_components().items()}
    components.update({f"img2img/{label}": cfg for label, cfg in _generation_components().items()})
    components.update({
        "img2img/Denoising strength": _slider(0.75, 0.0, 1.0, 0.01),
        "img2img/Scale": _slider(1.0, 0.05, 4.0, 0.05),
        "img2img/Resize mode": ComponentConfig("Just resize"),
        "img2img/Mask blur": _slider(4, 0, 64, 1),
        "img2img/Mask mode": ComponentConfig("Inpaint masked"),
        "img2img/Masked content": ComponentConfig("original"),
        "img2img/Inpaint area": ComponentConfig("Whole picture"),
        "img2img/Only masked padding, pixels": _slider(32, 0, 256, 4),
    })
    return components


class UiConfig:
    """ui-config.json: per-component defaults and slider bounds, keyed like A1111 ("txt2img/Sampling steps/value").

    Missing keys are filled from the defaults (built-in table or the caller's) and written back by `save()`, so the
    file lists every adjustable component after the first run, as in A1111. Stored values of the wrong type are
    ignored with a problem message.
    """

    def __init__(self, data: Mapping[str, Any] | None = None, path: Path | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, Any] = dict(data or {})
        self._path = path
        self._dirty = False
        self.problems: list[str] = list(problems)

    @classmethod
    def load(cls, path: Path, defaults: Mapping[str, ComponentConfig] | None = None) -> "UiConfig":
        """Read the file (a missing one is created, a corrupt one moved aside) and register `defaults`
        (default: `default_ui_components()`)."""
        raw, problem = read_json_object(path)
        if problem:
            log.warning(problem)
        config = cls(raw or {}, path, (problem,) if problem else ())
        for component_id, default in (defaults if defaults is not None else default_ui_components()).items():
            config.component(component_id, default)
        if raw is None or config._dirty:
            config.save()
        return config

    def component(self, component_id: str, default: ComponentConfig) -> ComponentConfig:
        """Stored settings of "tab/label" merged over `default`; missing fields are recorded for the next save."""
        merged: dict[str, Any] = {}
        with self._lock:
            for name in FIELDS:
                fallback = getattr(default, name)
                if fallback is None and name != "value":
                    merged[name] = None
                    continue
                merged[name] = self._field_locked(f"{component_id}/{name}", fallback)
        return self._within_bounds(component_id, ComponentConfig(**merged), default)

    def _field_locked(self, key: str, fallback: Any) -> Any:
        if key not in self._data:
            self._data[key] = _json_value(fallback)
            self._dirty = True
            return fallback
        stored = self._data[key]
        if fallback is None or _same_type(stored, fallback):
            return stored
        self._problem(f"ui-config.json: {key} is {stored!r}, expected a value like {fallback!r}; using the default.")
        return fallback

    def _within_bounds(self, component_id: str, cfg: ComponentConfig, default: ComponentConfig) -> ComponentConfig:
        low, high = cfg.minimum, cfg.maximum
        if low is None or high is None:
            return cfg
        if low > high:
            self._problem(f"ui-config.json: {component_id} has minimum {cfg.minimum} above maximum {cfg.maximum}; "
                          "using the default bounds.")
            cfg = ComponentConfig(cfg.value, default.minimum, default.maximum, cfg.step)
            if default.minimum is None or default.maximum is None:
                return cfg
            low, high = default.minimum, default.maximum
        if isinstance(cfg.value, (int, float)) and not low <= cfg.value <= high:
            self._problem(f"ui-config.json: {component_id}/value {cfg.value} is outside {cfg.minimum}..{cfg.maximum}; "
                          "it is clamped.")
            cfg = ComponentConfig(min(max(cfg.value, low), high), low, high, cfg.step)
        return cfg

    def _problem(self, message: str) -> None:
        log.warning(message)
        with self._lock:
            self.problems.append(message)

    def get(self, key: str, default: Any = None) -> Any:
        """Raw value of one key ("txt2img/Prompt/value")."""
        with self._lock:
            return self._data.get(key, default)

    def save(self) -> None:
        """Write the file if it has a path (atomically); errors are logged, the UI keeps working."""
        with self._lock:
            data, path = dict(self._data), self._path
            self._dirty = False
        if path is None:
            return
        try:
            write_json_atomic(path, data)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    def save_if_changed(self) -> bool:
        """Save when components registered since the last save added keys; returns whether it wrote."""
        with self._lock:
            dirty = self._dirty
        if dirty:
            self.save()
        return dirty


def _same_type(stored: Any, fallback: Any) -> bool:
    if isinstance(fallback, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(fallback, bool)
    if isinstance(fallback, (int, float)):
        return isinstance(stored, (int, float))
    return isinstance(stored, type(fallback))
