"""`ExtensionHost`: loads extensions at start and calls them at each hook, isolating their failures.

The App owns one host (built by `modules.bootstrap`). Life cycle:
1. `load()`: discover folders, refuse disabled / incompatible ones, order by metadata.ini, import (loader.py);
2. `setup(samplers, settings)`: `Hook.SAMPLERS` rows go into the sampler registry, `Hook.UI_SETTINGS` rows into
   the option table (values come from config.json like any setting);
3. the UI calls `ui_tabs()` and `script_ui.render_script_area(host, mode)`; the API uses `scripts.api_scripts()`,
   `scripts.api_script_info()` and `request_from_api(...)`; `app_started(fastapi_app)` once routes are mounted;
4. per job (modules.processing): `before_job`, `step_hooks` (given to the core), `after_images`, `image_saved`;
   a selected script runs through `run_script` instead of a plain generation.

Isolation: every call into extension code goes through `_invoke`, which logs an exception with the extension's
name, adds it to the extension's error list and carries on as if the callback had not run. A failing per-step
callback is skipped for the rest of that generation. Deliberate refusals are the exception: a `UserError` raised in
`BEFORE_JOB` or by a selectable script's `run` reaches the user, since that is how an extension rejects a request.

Enable/disable: the list is the A1111 option `disabled_extensions` in config.json (with `disable_all_extensions`
none/extra/all). Disabling a loaded extension stops its generation hooks at once; its UI parts and routes go away at
the next start. Enabling takes effect at the next start.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from PIL import Image

from modules.errors import UserError
from modules.extensions import api
from modules.extensions.loader import (
    ExtensionRecord,
    ExtensionRoot,
    ExtensionState,
    RegisteredCallback,
    discover,
    import_extension,
)
from modules.extensions.metadata import (
    VersionLookup,
    api_problem,
    installed_version,
    order_extensions,
    requirement_problems,
)
from modules.extensions.script_ui import as_tab, guarded_build, tab_items
from modules.extensions.scripts import SCRIPT_KEY, ScriptCatalog, ScriptEntry
from modules.options import OptionSpec
from modules.paths import REPO_ROOT
from modules.types import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    from modules.cli import LaunchOptions
    from modules.core.denoise import StepContext as CoreStepContext
    from modules.samplers.registry import SamplerRegistry
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

BUILTIN_ROOT = REPO_ROOT / "extensions"
DISABLED_OPTION = OptionSpec("disabled_extensions", (), "Disabled extensions", "Extensions", "list",
                             info="names of extensions not to load (changed from the Extensions tab)")
DISABLE_ALL_OPTION = OptionSpec("disable_all_extensions", "none", "Disable all extensions", "Extensions", "choice",
                                choices=("none", "extra", "all"),
                                info="extra = load only built-in extensions; the list of disabled ones is kept")


class ExtensionNotFound(UserError):
    http_status = 404


class ExtensionFailed(UserError):
    """A selectable script raised something other than a UserError (its extension's error list has the trace)."""

    http_status = 500


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


@dataclass(frozen=True)
class RunServices:
    """What the job runner provides to a selectable script (see api.RunContext)."""

    generate: Callable[[GenerationRequest], GenerationResult]
    resolve_sampler: Callable[[str], str]
    resolve_checkpoint: Callable[[str], str]
    save_grid: Callable[[Image.Image, str], None]
    interrupted: Callable[[], bool]


class ExtensionHost:
    """Discovered extensions, their callbacks and scripts; see the module doc. `ExtensionHost()` is an empty host."""

    def __init__(self, roots: Sequence[ExtensionRoot] = (), *, settings: "SettingsStore | None" = None,
                 disable_all: bool = False, installs_allowed: bool = False, data_dir: Path | None = None,
                 install_dir: Path | None = None, version_lookup: VersionLookup = installed_version,
                 api_version: int = api.API_VERSION) -> None:
        self.roots = tuple(roots)
        self.installs_allowed = installs_allowed
        user_roots = [root.path for root in self.roots if not root.builtin]
        self.install_dir = install_dir or (user_roots[-1] if user_roots else None)
        self.data_dir = data_dir or Path.cwd()
        self.records: list[ExtensionRecord] = []
        self.scripts = ScriptCatalog(self)
        self._settings = settings
        self._disable_all_flag = disable_all
        self._lookup = version_lookup
        self._api_version = api_version
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
                   installs_allowed=launch.extension_installs_allowed, data_dir=launch.data_dir, install_dir=user)

    # -- state ------------------------------------------------------------------------------------------------

    def _option(self, key: str, default: Any) -> Any:
        if self._settings is None:
            return default
        return self._settings.get().get(key, default)

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
        problem = api_problem(record.meta, self._api_version)
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

    # -- dispatch ---------------------------------------------------------------------------------------------

    def callbacks(self, hook: api.Hook) -> list[RegisteredCallback]:
        """Callbacks of active extensions for `hook`, in dispatch order (order, load order, registration)."""
        found = [cb for record in self.active_records() for cb in record.callbacks if cb.hook is hook]
        return sorted(found, key=lambda cb: (cb.order, cb.extension.load_index, cb.seq))

    @staticmethod
    def _invoke(cb: RegisteredCallback, context: Any, *, refusals: bool = False) -> tuple[bool, Any]:
        """(True, result) or (False, None) after recording the exception; UserError passes when `refusals`."""
        try:
            return True, cb.fn(context)
        except UserError as exc:
            if refusals:
                raise
            cb.extension.record_error(f"hook {cb.hook.name}", exc)
        except Exception as exc:  # noqa: BLE001 - the point of the host
            cb.extension.record_error(f"hook {cb.hook.name}", exc)
        return False, None

    @staticmethod
    def _reject(cb: RegisteredCallback, message: str) -> None:
        cb.extension.record_error(f"hook {cb.hook.name}", TypeError(message))

    # -- app hooks --------------------------------------------------------------------------------------------

    def setup(self, samplers: "SamplerRegistry | None" = None, settings: "SettingsStore | None" = None) -> None:
        """Add extension samplers to `samplers` and extension settings to `settings`' option table."""
        if samplers is not None:
            self._add_samplers(samplers)
        settings = settings or self._settings
        if settings is not None:
            self._add_settings(settings)

    def _add_samplers(self, samplers: "SamplerRegistry") -> None:
        for cb in self.callbacks(api.Hook.SAMPLERS):
            ok, rows = self._invoke(cb, api.SamplersContext(tuple(samplers.all_known())))
            for row in (rows or ()) if ok else ():
                try:
                    samplers.add(row)
                except (ValueError, TypeError, AttributeError) as exc:
                    cb.extension.record_error("hook SAMPLERS", exc)

    def _add_settings(self, settings: "SettingsStore") -> None:
        table = settings.get().table
        rows: list[OptionSpec] = []
        for cb in self.callbacks(api.Hook.UI_SETTINGS):
            ok, specs = self._invoke(cb, api.SettingsContext(section=cb.extension.name))
            for spec in (specs or ()) if ok else ():
                if not isinstance(spec, OptionSpec):
                    self._reject(cb, f"UI_SETTINGS must return OptionSpec rows, got {type(spec).__name__}")
                elif spec.key in table or any(spec.key == row.key for row in rows):
                    self._reject(cb, f"setting {spec.key!r} already exists")
                else:
                    rows.append(spec)
        if rows:
            settings.replace_table(table.with_specs(rows))

    def app_started(self, fastapi_app: Any) -> None:
        """Fire APP_STARTED (call once, after the UI and the API routes are mounted)."""
        for cb in self.callbacks(api.Hook.APP_STARTED):
            self._invoke(cb, api.AppStartedContext(fastapi_app, self.data_dir))

    def model_loaded(self, title: str, components: Any) -> None:
        context = api.ModelLoadedContext(title, components.identity.family.value, components)
        for cb in self.callbacks(api.Hook.MODEL_LOADED):
            self._invoke(cb, context)

    def wrap_model_loader(self, load_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """A ModelManager `load_fn` that fires MODEL_LOADED after `load_fn` read a checkpoint."""
        def load(record: Any, plan: Any) -> Any:
            components = load_fn(record, plan)
            self.model_loaded(record.title, components)
            return components
        return load

    def ui_tabs(self) -> list[api.UiTab]:
        """Extension tabs; each `build` is wrapped so that a failure shows a message inside the tab."""
        tabs: list[api.UiTab] = []
        for cb in self.callbacks(api.Hook.UI_TABS):
            ok, result = self._invoke(cb, api.UiTabsContext(self.data_dir))
            if not ok or result is None:
                continue
            for item in tab_items(result):
                tab = as_tab(item)
                if tab is None:
                    self._reject(cb, f"UI_TABS must return UiTab(build, title, id), got {item!r}")
                else:
                    tabs.append(api.UiTab(guarded_build(cb.extension, tab), tab.title, tab.id))
        return tabs

    def javascript_files(self) -> list[Path]:
        return [path for record in self.active_records() for path in record.javascript_files()]

    def style_files(self) -> list[Path]:
        return [path for record in self.active_records() if (path := record.style_file()) is not None]

    # -- generation hooks -------------------------------------------------------------------------------------

    def before_job(self, request: GenerationRequest, options: Mapping[str, Any]) -> GenerationRequest:
        """Let BEFORE_JOB callbacks change the request, in dispatch order."""
        for cb in self.callbacks(api.Hook.BEFORE_JOB):
            context = api.BeforeJobContext(request, _args(request, cb), options)
            ok, result = self._invoke(cb, context, refusals=True)
            if not ok or result is None:
                continue
            if isinstance(result, GenerationRequest):
                request = result
            else:
                self._reject(cb, f"BEFORE_JOB must return a GenerationRequest or None, got {type(result).__name__}")
        return request

    def step_hooks(self, request: GenerationRequest) -> list[Callable[["CoreStepContext"], None]]:
        """POST_CFG callbacks adapted to the core's StepHook (one hook for all of them; [] when there are none)."""
        callbacks = self.callbacks(api.Hook.POST_CFG)
        if not callbacks:
            return []
        failed: set[int] = set()

        def hook(core: "CoreStepContext") -> None:
            for cb in callbacks:
                if cb.seq in failed:
                    continue
                context = api.StepContext(core.step, core.total, core.timestep, core.sigma, core.latents,
                                          core.noise_pred, core.noise_pred_cond, core.noise_pred_uncond,
                                          core.cfg_scale, request, _args(request, cb))
                ok, _ = self._invoke(cb, context)
                if ok and _same_shapes(context, core):
                    core.noise_pred, core.latents = context.noise_pred, context.latents
                    continue
                if ok:
                    self._reject(cb, "POST_CFG changed the shape of noise_pred or latents")
                failed.add(cb.seq)
                log.warning("Extension %s: POST_CFG callback skipped for the rest of this generation",
                            cb.extension.name)
        return [hook]

    def after_images(self, request: GenerationRequest, images: Sequence[Image.Image], infotexts: Sequence[str],
                     seeds: Sequence[int], options: Mapping[str, Any]
                     ) -> tuple[tuple[Image.Image, ...], tuple[str, ...]]:
        """AFTER_IMAGE for every image; returns the (possibly replaced) images and infotexts."""
        callbacks = self.callbacks(api.Hook.AFTER_IMAGE)
        out_images, out_texts = list(images), list(infotexts)
        for index in range(len(out_images)) if callbacks else ():
            for cb in callbacks:
                context = api.AfterImageContext(out_images[index], out_texts[index], index, seeds[index], request,
                                                _args(request, cb), options)
                ok, _ = self._invoke(cb, context)
                if not ok:
                    continue
                if isinstance(context.image, Image.Image) and isinstance(context.infotext, str):
                    out_images[index], out_texts[index] = context.image, context.infotext
                else:
                    self._reject(cb, "AFTER_IMAGE must leave a PIL image in ctx.image and a str in ctx.infotext")
        return tuple(out_images), tuple(out_texts)

    def image_saved(self, request: GenerationRequest, path: Path, image: Image.Image, infotext: str) -> None:
        for cb in self.callbacks(api.Hook.IMAGE_SAVED):
            self._invoke(cb, api.ImageSavedContext(path, image, infotext, request, _args(request, cb)))

    # -- scripts ----------------------------------------------------------------------------------------------

    def selected_script(self, request: GenerationRequest) -> ScriptEntry | None:
        return self.scripts.selection(request)

    def request_from_api(self, script_name: str | None, script_args: Any, alwayson_scripts: Mapping[str, Any] | None,
                         request: GenerationRequest) -> GenerationRequest:
        """See ScriptCatalog.request_from_api."""
        return self.scripts.request_from_api(script_name, script_args, alwayson_scripts, request)

    def run_script(self, entry: ScriptEntry, request: GenerationRequest, services: RunServices,
                   options: Mapping[str, Any]) -> GenerationResult:
        """Run a selectable script on `request` (its selection removed, so `generate` runs plain generations)."""
        inner_args = {key: value for key, value in request.extension_args.items() if key != SCRIPT_KEY}
        inner = request.with_changes(extension_args=inner_args)
        context = api.RunContext(inner_args.get(entry.name, {}), options, services.generate, services.resolve_sampler,
                                 services.resolve_checkpoint, services.save_grid, services.interrupted)
        assert entry.script.run is not None  # selectable scripts always have run (api.Script checks)
        try:
            result = entry.script.run(context, inner)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            entry.extension.record_error(f"run() of script '{entry.title}'", exc)
            raise ExtensionFailed(f"The script '{entry.title}' of extension '{entry.name}' failed: "
                                  f"{type(exc).__name__}: {exc}. See the Extensions tab for details.") from exc
        if not isinstance(result, GenerationResult):
            message = f"run() returned {type(result).__name__}, not a GenerationResult"
            entry.extension.record_error(f"run() of script '{entry.title}'", TypeError(message))
            raise ExtensionFailed(f"The script '{entry.title}' of extension '{entry.name}' failed: {message}.")
        return result

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


def _args(request: GenerationRequest, cb: RegisteredCallback) -> Mapping[str, Any]:
    return request.extension_args.get(cb.extension.name, {})


def _same_shapes(context: api.StepContext, core: "CoreStepContext") -> bool:
    return (tuple(context.noise_pred.shape) == tuple(core.noise_pred.shape)
            and tuple(context.latents.shape) == tuple(core.latents.shape))
