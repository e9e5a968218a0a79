"""Scripts of loaded extensions: lookup, their UI controls described as data, A1111's API forms, and running the
selected one.

A script's controls are the named Gradio components its `ui` function returns. Their metadata (label, default,
bounds, choices) is read from those components, built once per mode in a throw-away `gr.Blocks` for the API (so
`/sdapi/v1/script-info` works with `--nowebui` too). Their order is the order of A1111's positional `script_args`.

How a request carries script values (`GenerationRequest.extension_args`):
- `extension_args[<extension name>][<component name>]`: values of that extension's script controls;
- `extension_args[SCRIPT_KEY] = {"title": <title>}`: the selectable script that takes over the run (A1111's
  "Script" dropdown / `script_name`). Extension folders starting with '_' are never loaded, so the key cannot clash.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from PIL import Image

from modules.errors import UserError
from modules.extensions.api import Combined, Generate, PlotAxis, RunContext, Script, ScriptMode, UiBuilder
from modules.extensions.loader import ActiveRecords, ExtensionRecord
from modules.types import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)

SCRIPT_KEY = "_script"
MODES: tuple[ScriptMode, ...] = ("txt2img", "img2img")


class ScriptNotFound(UserError):
    """A script name (API `script_name`, `alwayson_scripts` key, or a request's selection) that matches nothing."""

    http_status = 422


class BadScriptArgs(UserError):
    """Script values that do not fit the script's controls."""

    http_status = 422


class ExtensionFailed(UserError):
    """A selectable script raised something other than a UserError (its extension's error list has the trace)."""

    http_status = 500


ChoiceProvider = Callable[[str], list[str]]
"""Names offered to script UIs by kind ("samplers", "checkpoints"); see `api.UiBuilder.choices`."""


def no_choices(kind: str) -> list[str]:
    """The ChoiceProvider of a host with no model manager or sampler registry (tests, `ExtensionHost()`)."""
    return []


def _no_upscale(image: Image.Image, name: str, scale: float) -> Image.Image | None:
    raise UserError(f"Upscaler {name!r} is not available here (no upscaler registry).")


def _no_save(image: Image.Image, infotext: str, seed: int) -> None:
    return None


def _no_interrogate(image: Image.Image, model: str) -> str:
    raise UserError("Interrogating is not available here (no captioning service).")


@dataclass(frozen=True)
class RunServices:
    """What the job runner provides to a selectable script (see api.RunContext)."""

    generate: Generate
    resolve_sampler: Callable[[str], str]
    resolve_checkpoint: Callable[[str], str]
    save_grid: Callable[[Image.Image, str], None]
    interrupted: Callable[[], bool]
    choices: ChoiceProvider = no_choices
    upscale: Callable[[Image.Image, str, float], Image.Image | None] = _no_upscale
    save_image: Callable[[Image.Image, str, int], None] = _no_save
    interrogate: Callable[[Image.Image, str], str] = _no_interrogate


def script_mode(mode: str) -> ScriptMode:
    """The script runner of a request mode: inpaint requests use the img2img scripts, as in A1111."""
    return "txt2img" if mode == "txt2img" else "img2img"


@dataclass(frozen=True)
class ScriptEntry:
    """A script with the extension that registered it."""

    extension: ExtensionRecord
    script: Script

    @property
    def name(self) -> str:
        """The extension name: the key of this script's values in `extension_args`."""
        return self.extension.name

    @property
    def title(self) -> str:
        return self.script.title


@dataclass(frozen=True)
class ArgInfo:
    """One control, in A1111's `ScriptArg` shape plus its `name`."""

    name: str
    label: str
    value: Any = None
    minimum: Any = None
    maximum: Any = None
    step: Any = None
    choices: list[Any] | None = None


def _choice_values(choices: Sequence[Any] | None) -> list[Any] | None:
    if not choices:
        return None
    return [choice[1] if isinstance(choice, (tuple, list)) and len(choice) == 2 else choice for choice in choices]


def describe_component(name: str, component: Any) -> ArgInfo:
    """ArgInfo of a Gradio component (attributes that a component kind lacks are None) or of a `Combined` value."""
    if isinstance(component, Combined):
        return ArgInfo(name=name, label=component.label or name, value=component.value)
    value = getattr(component, "value", None)  # Gradio components differ in which of these they have
    return ArgInfo(
        name=name,
        label=str(getattr(component, "label", None) or name),
        value=None if callable(value) else value,
        minimum=getattr(component, "minimum", None),
        maximum=getattr(component, "maximum", None),
        step=getattr(component, "step", None),
        choices=_choice_values(getattr(component, "choices", None)),
    )


class ScriptCatalog:
    """Every script of the active extensions (`records()`, in load order), per mode; `choices` feeds their UIs."""

    def __init__(self, records: ActiveRecords, choices: ChoiceProvider = no_choices,
                 data_dir: Path | None = None, options: Callable[[], Mapping[str, Any]] = dict,
                 models_dir: Path | None = None, launch_flags: Mapping[str, Any] | None = None) -> None:
        self._records = records
        self._choices = choices
        self._data_dir = data_dir
        self._models_dir = models_dir or (data_dir / "models" if data_dir is not None else None)
        self._launch_flags = dict(launch_flags or {})
        self._options = options
        self._info: dict[tuple[str, str, str], list[ArgInfo]] = {}
        self._lock = threading.Lock()

    # -- lookup -----------------------------------------------------------------------------------------------

    def entries(self, mode: ScriptMode | None = None, *, always_on: bool | None = None) -> list[ScriptEntry]:
        found = []
        for record in self._records():
            for script in record.scripts:
                if mode is not None and mode not in script.modes:
                    continue
                if always_on is not None and script.always_on != always_on:
                    continue
                found.append(ScriptEntry(record, script))
        return found

    def find_selectable(self, title: str, mode: ScriptMode) -> ScriptEntry:
        wanted = title.strip().lower()
        entries = self.entries(mode, always_on=False)
        for entry in entries:
            if entry.title.lower() == wanted:
                return entry
        known = ", ".join(repr(e.title) for e in entries) or "none"
        other: ScriptMode = "img2img" if mode == "txt2img" else "txt2img"
        if any(entry.title.lower() == wanted for entry in self.entries(other, always_on=False)):
            raise ScriptNotFound(f"Script '{title}' works in {other} only, not in {mode}; available scripts for "
                                 f"{mode}: {known}.")
        raise ScriptNotFound(f"Script '{title}' not found for {mode}; available scripts: {known}.")

    def find_always_on(self, key: str, mode: ScriptMode) -> ScriptEntry:
        """An always-on script by title or by extension name (case-insensitive)."""
        wanted = key.strip().lower()
        entries = self.entries(mode, always_on=True)
        for entry in entries:
            if wanted in (entry.title.lower(), entry.name):
                return entry
        known = ", ".join(repr(e.title.lower()) for e in entries) or "none"
        raise ScriptNotFound(f"Always-on script '{key}' not found for {mode}; available: {known}.")

    def selected_script(self, request: GenerationRequest) -> ScriptEntry | None:
        """The selectable script a request asks for (`extension_args[SCRIPT_KEY]`), or None."""
        chosen = request.extension_args.get(SCRIPT_KEY)
        if not chosen:
            return None
        title = str(chosen.get("title") or "") if isinstance(chosen, Mapping) else str(chosen)
        if not title or title.lower() == "none":
            return None
        return self.find_selectable(title, script_mode(request.mode))

    def plot_axes(self) -> tuple[PlotAxis, ...]:
        """The X/Y/Z plot axes the active extensions add (API 1.5), in load order."""
        return tuple(axis for record in self._records() for axis in record.plot_axes)

    # -- controls ---------------------------------------------------------------------------------------------

    def build(self, entry: ScriptEntry, mode: ScriptMode) -> dict[str, Any]:
        """Create the script's components in the current Gradio context; {} (error recorded) when its UI fails."""
        if entry.script.ui is None:
            return {}
        builder = UiBuilder(mode=mode, extension=entry.name, choices=self._choices, data_dir=self._data_dir,
                            plot_axes=self.plot_axes, options=self._options(), models_dir=self._models_dir,
                            launch_flags=self._launch_flags)
        try:
            components = entry.script.ui(builder)
            if not isinstance(components, Mapping) or not all(isinstance(k, str) for k in components):
                raise TypeError(f"ui() must return a dict of named components, got {type(components).__name__}")
        except Exception as exc:  # noqa: BLE001 - isolated per extension
            entry.extension.record_error(f"ui() of script '{entry.title}'", exc)
            return {}
        return dict(components)

    def arg_info(self, entry: ScriptEntry, mode: ScriptMode) -> list[ArgInfo]:
        """The script's controls in order (built once per mode and cached)."""
        key = (entry.name, entry.title, mode)
        with self._lock:
            if key not in self._info:
                import gradio as gr

                with gr.Blocks():
                    components = self.build(entry, mode)
                self._info[key] = [describe_component(name, comp) for name, comp in components.items()]
            return list(self._info[key])

    def args_from_api(self, entry: ScriptEntry, mode: ScriptMode, given: Any) -> dict[str, Any]:
        """Named values from A1111's positional list or a {name: value} mapping, defaults for the rest."""
        infos = self.arg_info(entry, mode)
        values = {info.name: info.value for info in infos}
        names = [info.name for info in infos]
        if given is None:
            return values
        if isinstance(given, (list, tuple)):
            if entry.script.positional is not None:  # the script's own layout(s); names checked below
                given = entry.script.positional(list(given))
            elif len(given) > len(names):
                raise BadScriptArgs(f"Script '{entry.title}' takes at most {len(names)} argument(s) "
                                    f"({', '.join(names) or 'none'}), got {len(given)}.")
            else:
                values.update(zip(names, given))
                return values
        if isinstance(given, Mapping):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise BadScriptArgs(f"Script '{entry.title}' has no argument(s) {', '.join(unknown)}; its "
                                    f"arguments are: {', '.join(names) or 'none'}.")
            values.update(given)
            return values
        raise BadScriptArgs(f"Arguments of script '{entry.title}' must be a list or an object, "
                            f"got {type(given).__name__}.")

    # -- A1111 API --------------------------------------------------------------------------------------------

    def api_scripts(self) -> dict[str, list[str]]:
        """`GET /sdapi/v1/scripts`: lower-case titles of the selectable scripts per mode."""
        return {mode: [entry.title.lower() for entry in self.entries(mode, always_on=False)] for mode in MODES}

    def api_script_info(self) -> list[dict[str, Any]]:
        """`GET /sdapi/v1/script-info`: every script per mode with its arguments (A1111's shape, plus `name`)."""
        info = []
        for mode in MODES:
            for entry in self.entries(mode):
                info.append({
                    "name": entry.title.lower(),
                    "is_alwayson": entry.script.always_on,
                    "is_img2img": mode == "img2img",
                    "args": [asdict(arg) for arg in self.arg_info(entry, mode)],
                })
        return info

    def request_from_api(self, script_name: str | None, script_args: Any,
                         alwayson_scripts: Mapping[str, Any] | None,
                         request: GenerationRequest) -> GenerationRequest:
        """`request` with A1111's `script_name`/`script_args`/`alwayson_scripts` turned into named extension_args.

        `alwayson_scripts` values are `{"args": [...]}` (A1111, positional) or `{"args": {name: value}}`; keys are
        script titles or extension names, case-insensitive. Unknown names raise ScriptNotFound (HTTP 422)."""
        mode = script_mode(request.mode)
        ext_args: dict[str, Any] = {key: dict(value) for key, value in request.extension_args.items()}
        if script_name and script_name.strip().lower() != "none":
            entry = self.find_selectable(script_name, mode)
            ext_args.setdefault(entry.name, {}).update(self.args_from_api(entry, mode, script_args or []))
            ext_args[SCRIPT_KEY] = {"title": entry.title}
        for key, payload in (alwayson_scripts or {}).items():
            entry = self.find_always_on(key, mode)
            if not isinstance(payload, Mapping) or "args" not in payload:
                raise BadScriptArgs(f"alwayson_scripts['{key}'] must be an object with \"args\" "
                                    f"(a list, or an object of named values).")
            ext_args.setdefault(entry.name, {}).update(self.args_from_api(entry, mode, payload["args"]))
        return request.with_changes(extension_args=ext_args)

    # -- running ----------------------------------------------------------------------------------------------

    def run_script(self, entry: ScriptEntry, request: GenerationRequest, services: RunServices,
                   options: Mapping[str, Any]) -> GenerationResult:
        """Run a selectable script on `request` (its selection removed, so `generate` runs plain generations).

        A `UserError` from the script reaches the user; any other exception is recorded and becomes
        `ExtensionFailed`."""
        inner_args = {key: value for key, value in request.extension_args.items() if key != SCRIPT_KEY}
        inner = request.with_changes(extension_args=inner_args)
        context = RunContext(inner_args.get(entry.name, {}), options, services.generate, services.resolve_sampler,
                             services.resolve_checkpoint, services.save_grid, services.interrupted,
                             services.choices, services.upscale, services.save_image, services.interrogate,
                             self.plot_axes)
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
