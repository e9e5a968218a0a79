"""`ExtensionHost`: the extensions' life cycle (discovery, enable state, import, errors, installs).

The App owns one host (built by `modules.bootstrap`). `load()` discovers folders, refuses disabled or incompatible
ones, orders them by metadata.ini and imports them (loader.py); `setup(samplers, settings, choices)` adds their
samplers and settings and gives script UIs their choice lists. What runs extension code at run time hangs off the
host: `hooks` (`HookDispatcher`: every hook, in order, failures isolated) and `scripts` (`ScriptCatalog`: script
lookup, API forms, running the selected script). Both ask the host for the active extensions at each use.

Enable/disable is the option `disabled_extensions` in config.json (with `disable_all_extensions` none/extra/all).
Disabling a loaded extension stops its hooks and scripts at once; its UI parts and routes go away at the next start.
Enabling takes effect at the next start.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.errors import UserError
from modules.extensions import api
from modules.extensions.hooks import HookDispatcher
from modules.extensions.loader import (
    ExtensionRecord,
    ExtensionRoot,
    ExtensionState,
    discover,
    import_extension,
)
from modules.extensions.metadata import (
    VersionLookup,
    api_note,
    api_problem,
    installed_version,
    order_extensions,
    requirement_problems,
)
from modules.extensions.scripts import ChoiceProvider, ScriptCatalog, no_choices
from modules.options import OptionSpec
from modules.paths import BUILTIN_EXTENSIONS

if TYPE_CHECKING:
    from modules.cli import LaunchOptions
    from modules.samplers.registry import SamplerRegistry
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

BUILTIN_ROOT = BUILTIN_EXTENSIONS
DISABLED_OPTION = OptionSpec("disabled_extensions", (), "Disabled extensions", "Extensions", "list",
                             info="names of extensions not to load (changed from the Extensions tab)")
DISABLE_ALL_OPTION = OptionSpec("disable_all_extensions", "none", "Disable all extensions", "Extensions", "choice",
                                choices=("none", "extra", "all"),
                                info="extra = load only built-in extensions; the list of disabled ones is kept")


class ExtensionNotFound(UserError):
    http_status = 404


@dataclass(frozen=True)
class ExtensionInfo:
    """One row of the Extensions tab."""

    name: str
    folder: str
    path: Path
    version: str
    api: str | None
    builtin: bool
    enabled: bool
    state: str
    messages: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]  # (where, message), oldest first
    remote: str | None
    commit: str | None


class ExtensionHost:
    """Discovered extensions and their state; see the module doc. `ExtensionHost()` is an empty host."""

    def __init__(self, roots: Sequence[ExtensionRoot] = (), *, settings: "SettingsStore | None" = None,
                 disable_all: bool = False, installs_allowed: bool = False, data_dir: Path | None = None,
                 install_dir: Path | None = None, models_dir: Path | None = None,
                 launch_flags: Mapping[str, Any] | None = None, version_lookup: VersionLookup = installed_version,
                 api_version: int = api.API_VERSION, api_minor: int = api.API_MINOR) -> None:
        self.roots = tuple(roots)
        self.installs_allowed = installs_allowed
        user_roots = [root.path for root in self.roots if not root.builtin]
        self.install_dir = install_dir or (user_roots[-1] if user_roots else None)
        self.data_dir = data_dir or Path.cwd()
        self.models_dir = models_dir or self.data_dir / "models"
        """The folder of the model folders (`--models-dir`), handed to extensions (API 1.8)."""
        self.records: list[ExtensionRecord] = []
        self._choices: ChoiceProvider = no_choices
        self.hooks = HookDispatcher(self.active_records, self.data_dir, self.options, self.models_dir, launch_flags)
        self.scripts = ScriptCatalog(self.active_records, self.choices, self.data_dir, self.options, self.models_dir,
                                     launch_flags)
        self._settings = settings
        self._disable_all_flag = disable_all
        self._lookup = version_lookup
        self._api_version = api_version
        self._api_minor = api_minor
        self._disabled_in_memory: tuple[str, ...] = ()
        self._seq = itertools.count()

    @classmethod
    def for_launch(cls, launch: "LaunchOptions", settings: "SettingsStore | None" = None) -> "ExtensionHost":
        """Built-in extensions (<repo>/extensions) plus the data directory's extensions folder (where installs go;
        when both are the same folder, git checkouts in it count as user extensions, see loader.discover)."""
        roots = [ExtensionRoot(BUILTIN_ROOT, builtin=True)]
        user = launch.paths.extensions
        if user.resolve() != BUILTIN_ROOT.resolve():
            roots.append(ExtensionRoot(user))
        return cls(roots, settings=settings, disable_all=launch.disable_all_extensions,
                   installs_allowed=launch.extension_installs_allowed, data_dir=launch.data_dir, install_dir=user,
                   models_dir=launch.paths.models, launch_flags=launch.extension_flags)

    # -- state ------------------------------------------------------------------------------------------------

    def _option(self, key: str, default: Any) -> Any:
        if self._settings is None:
            return default
        return self._settings.get().get(key, default)

    def options(self) -> Mapping[str, Any]:
        """The settings as they are now (extension settings included); {} for a host without a settings store."""
        return {} if self._settings is None else self._settings.get()

    def disabled_names(self) -> tuple[str, ...]:
        if self._settings is None:
            return self._disabled_in_memory
        return tuple(str(name).lower() for name in self._option(DISABLED_OPTION.key, ()))

    def _disabled_by_settings(self, record: ExtensionRecord) -> str | None:
        mode = "all" if self._disable_all_flag else self._option(DISABLE_ALL_OPTION.key, "none")
        if mode == "all":
            return "all extensions are disabled (--disable-all-extensions or the disable_all_extensions option)"
        if mode == "extra" and not record.builtin:
            return "only built-in extensions are enabled (disable_all_extensions = extra)"
        if record.name in self.disabled_names():
            return "disabled in the Extensions tab"
        return None

    def active_records(self) -> list[ExtensionRecord]:
        """Loaded and not disabled since, in load order."""
        disabled = set(self.disabled_names())
        active = [r for r in self.records if r.loaded and r.name not in disabled]
        return sorted(active, key=lambda r: r.load_index)

    def get(self, name: str) -> ExtensionRecord:
        wanted = name.strip().lower()
        for record in self.records:
            if record.name == wanted or record.meta.folder == name:
                return record
        raise ExtensionNotFound(f"No extension named '{name}' is installed.")

    # -- loading ----------------------------------------------------------------------------------------------

    def _register_own_options(self) -> None:
        if self._settings is None:
            return
        table = self._settings.get().table
        new = [spec for spec in (DISABLED_OPTION, DISABLE_ALL_OPTION) if spec.key not in table]
        if new:
            self._settings.replace_table(table.with_specs(new))

    def _precheck(self, record: ExtensionRecord) -> bool:
        """Set DISABLED/SKIPPED with the reason when `record` must not be imported; True when it may."""
        if record.messages:  # duplicate name or unreadable metadata.ini (found by discovery)
            return False
        reason = self._disabled_by_settings(record)
        if reason is not None:
            record.state = ExtensionState.DISABLED
            record.messages.append(reason)
            return False
        problem = api_problem(record.meta, self._api_version, self._api_minor)
        note = api_note(record.meta, self._api_version, self._api_minor)
        if note:
            record.messages.append(note)
        problems, warnings = requirement_problems(record.path, self._lookup)
        record.messages.extend(warnings)
        problems = ([problem] if problem else []) + problems
        for text in problems:
            record.messages.append(f"not loaded: {text}")
            log.warning("Extension %s not loaded: %s", record.name, text)
        return not problems

    def _requires_failed(self, record: ExtensionRecord, by_name: dict[str, ExtensionRecord]) -> str | None:
        for alternatives in record.meta.requires:
            if not any(by_name.get(alt) is not None and by_name[alt].loaded for alt in alternatives):
                return f"not loaded: the required extension {' or '.join(alternatives)} failed to load"
        return None

    def load(self) -> None:
        """Discover and load every extension (see the module doc); problems end up in each record's messages."""
        self._register_own_options()
        self.records = discover(self.roots)
        candidates = [record for record in self.records if self._precheck(record)]
        by_name = {record.name: record for record in candidates}
        ordering = order_extensions([record.meta for record in candidates])
        for name, reason in ordering.skipped.items():
            by_name[name].messages.append(f"not loaded: {reason}")
        for index, name in enumerate(ordering.order):
            record = by_name[name]
            record.messages.extend(ordering.notes.get(name, []))
            failed = self._requires_failed(record, by_name)
            if failed:
                record.messages.append(failed)
                continue
            import_extension(record, index, lambda: next(self._seq))
        loaded = [r.name for r in self.active_records()]
        log.info("Extensions loaded: %s", ", ".join(loaded) or "none")

    def refresh(self) -> None:
        """Add folders installed since `load()` as PENDING records (they load at the next start)."""
        known = {record.path.resolve() for record in self.records}
        for record in discover(self.roots):
            if record.path.resolve() not in known:
                record.state = ExtensionState.PENDING
                self.records.append(record)

    # -- start ------------------------------------------------------------------------------------------------

    def setup(self, samplers: "SamplerRegistry | None" = None, settings: "SettingsStore | None" = None,
              choices: ChoiceProvider | None = None, hold_model: api.HoldModel | None = None) -> None:
        """After `load()`: extension samplers into `samplers`, extension settings into `settings`' option table
        (default: the host's settings store); `choices` lists names for script UIs (see `choices`); `hold_model`
        is the model manager's cache of extension networks (`api.UNetCallContext.hold_model`)."""
        if hold_model is not None:
            self.hooks.model_holder = hold_model
        if samplers is not None:
            self.hooks.add_samplers(samplers)
        settings = settings or self._settings
        if settings is not None:
            self.hooks.add_settings(settings)
        if choices is not None:
            self._choices = choices

    def choices(self, kind: str) -> list[str]:
        """Names offered to script UIs ("samplers", "checkpoints"; `api.UiBuilder.choices`) by the provider given
        to `setup`; [] before that."""
        return self._choices(kind)

    def javascript_files(self) -> list[Path]:
        return [path for record in self.active_records() for path in record.javascript_files()]

    def style_files(self) -> list[Path]:
        return [path for record in self.active_records() if (path := record.style_file()) is not None]

    # -- Extensions tab ---------------------------------------------------------------------------------------

    def list_extensions(self) -> list[ExtensionInfo]:
        """Every discovered extension with its state, version, messages and errors."""
        from modules.extensions.installer import git_details

        disabled = set(self.disabled_names())
        rows = []
        for record in self.records:
            remote, commit = (None, None) if record.builtin else git_details(record.path)
            rows.append(ExtensionInfo(
                name=record.name, folder=record.meta.folder, path=record.path, version=record.version,
                api=record.meta.api, builtin=record.builtin, enabled=record.name not in disabled,
                state=record.state.value, messages=tuple(record.messages),
                errors=tuple((e.where, e.message) for e in record.errors), remote=remote, commit=commit))
        return rows

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable an extension (persisted in config.json; see the module doc for when it applies)."""
        record = self.get(name)
        names = set(self.disabled_names())
        names = names - {record.name} if enabled else names | {record.name}
        value = tuple(sorted(names))
        if self._settings is None:
            self._disabled_in_memory = value
        else:
            self._settings.update({DISABLED_OPTION.key: list(value)})
        log.info("Extension %s %s (takes full effect at the next start)", record.name,
                 "enabled" if enabled else "disabled")

    def install(self, url: str, name: str | None = None) -> ExtensionInfo:
        """Install from a git URL into the user extensions folder (installer.py rules); loaded at the next start."""
        from modules.extensions.installer import install_from_git

        if self.install_dir is None:
            raise ExtensionNotFound("No folder for user extensions is configured.")
        outcome = install_from_git(url, self.install_dir, allowed=self.installs_allowed, name=name)
        self.refresh()
        return next(info for info in self.list_extensions() if info.path.resolve() == outcome.path.resolve())

