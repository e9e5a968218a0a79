"""THE public surface for extensions (API version 1.7). Extension code imports this module and nothing else of ours.

An extension is a folder `extensions/<name>/` whose `scripts/*.py` modules each define
``def register(ext: ExtensionContext) -> None``. `register` runs once at start; it subscribes callbacks to hooks
(`ext.on(Hook.X, fn, order=0)` or the `@ext.hook(...)` decorator) and adds scripts (`ext.add_script(...)`).

Every hook is a member of the closed `Hook` enum and passes one typed context object to its callbacks. Callbacks run
in ascending `order`, then in extension load order, then in registration order. An exception in a callback is
logged with the extension's name, recorded in the extension's error list (shown in the Extensions tab) and otherwise
ignored: the application and the generation go on as if the callback had not been registered for that call.

Porting from AUTOMATIC1111: `A1111_EQUIVALENTS` maps A1111's callback/Script method names onto these hooks.

Compatibility promise: within `API_VERSION` 1, names here are only added, never removed or changed in meaning; each
addition raises `API_MINOR`. An extension declares the version it was written for in metadata.ini (`Api = 1`, or
`Api = 1.1` when it uses an addition); an extension asking for another major version is not loaded.
"""

from __future__ import annotations

import enum
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ContextManager,
    Hashable,
    Iterator,
    Literal,
    Mapping,
    Protocol,
    Sequence,
)

from PIL import Image

from modules import infotext as _infotext
from modules.errors import UserError
from modules.extensions.results import CombinedResult
from modules.options import OptionSpec
from modules.types import GenerationRequest, GenerationResult

if TYPE_CHECKING:
    import torch

    from modules.samplers.registry import SamplerSpec

API_VERSION = 1
"""The major version of this module's contract. metadata.ini `Api = 1` means "written for version 1"."""

API_MINOR = 9
"""Additions within API_VERSION 1: 1.1 added `Hook.UNET_CALL` (`UNetCallContext`); 1.2 added to `RunContext`
`generate(..., save=, part=)`, `choices`, `upscale` and `save_image` (scripts that run several generations as parts
of one picture, such as SD upscale), the "upscalers" / "hires_upscalers" kinds of `UiBuilder.choices`, and
`flatten_image`; 1.3 added `RunContext.interrogate` (a caption of a picture, for Loopback); 1.4 added `Combined`
(one script value built from several controls, such as ControlNet's units) and `UiBuilder.data_dir`; 1.5 added
`InfotextPaste` (a script's infotext keys filling its controls on paste), `PlotAxis` (`ExtensionContext.add_plot_axis`,
X/Y/Z plot axes of other extensions, read through `UiBuilder.plot_axes` / `RunContext.plot_axes`) and
`UNetCallContext.hold_model` (a network held in the model manager's budgeted cache); 1.6 added `CombinedResult` (one
result assembled from several generations' results, grids in front); 1.7 added the settings outside a job:
`UiBuilder.options` (when the page is built) and `AppStartedContext.options()` (at each call); 1.8 added
`AppStartedContext.models_dir` and `UiBuilder.models_dir` (the folder of the model folders: A1111's `--models-dir`)
and `UNetCallContext.refiner` (the call is the SDXL refiner's); 1.9 added `AppStartedContext.launch_flags` and
`UiBuilder.launch_flags` (the values of the command-line flags extensions add in their `preload.py`, A1111's
convention: `modules.extensions.preload`)."""

ScriptMode = Literal["txt2img", "img2img"]

__all__ = [
    "API_MINOR", "API_VERSION", "A1111_EQUIVALENTS", "AfterImageContext", "AppStartedContext", "BeforeJobContext",
    "Combined", "CombinedResult", "ExtensionContext", "Generate", "GenerationRequest", "GenerationResult", "HoldModel",
    "Hook", "ImageSavedContext", "InfotextPaste", "ModelLoadedContext", "OptionSpec", "PasteContext", "PlotAxis",
    "RunContext", "SamplersContext", "Script", "ScriptMode", "SettingsContext", "StepContext", "SamplerSpec",
    "UiBuilder", "UiTab", "UiTabsContext", "UNetCallContext", "UNetWrapper", "UserError", "flatten_image",
    "hold_uncached", "sampler_spec", "with_infotext_params",
]


def __getattr__(name: str) -> Any:
    """`SamplerSpec` is imported on first use (the sampler registry imports diffusers)."""
    if name == "SamplerSpec":
        from modules.samplers.registry import SamplerSpec

        return SamplerSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Hook(enum.Enum):
    """Every point where extensions are called. The context type each one passes is named in its comment."""

    APP_STARTED = "app_started"  # AppStartedContext; once, after the HTTP routes are mounted (add your own routes)
    MODEL_LOADED = "model_loaded"  # ModelLoadedContext; each time a checkpoint is read from disk
    UI_TABS = "ui_tabs"  # UiTabsContext -> UiTab | Sequence[UiTab]; while the page is built
    UI_SETTINGS = "ui_settings"  # SettingsContext -> Sequence[OptionSpec]; once at start (rows of the settings tab)
    SAMPLERS = "samplers"  # SamplersContext -> Sequence[SamplerSpec]; once at start (rows of the sampler registry)
    BEFORE_JOB = "before_job"  # BeforeJobContext -> GenerationRequest | None; before a generation is planned
    UNET_CALL = "unet_call"  # UNetCallContext; every UNet call of a denoising step, before it runs (API 1.1)
    POST_CFG = "post_cfg"  # StepContext; every denoising step, after CFG, before the scheduler step
    AFTER_IMAGE = "after_image"  # AfterImageContext; per decoded image, before it is saved or returned
    IMAGE_SAVED = "image_saved"  # ImageSavedContext; per image file written


A1111_EQUIVALENTS: Mapping[str, str] = {
    "Script.process / Script.before_process": "Hook.BEFORE_JOB (return a changed request)",
    "Script.process_batch / before_process_batch": "Hook.BEFORE_JOB (batches share one request here)",
    "Script.postprocess_image / postprocess_batch": "Hook.AFTER_IMAGE (set ctx.image / ctx.infotext)",
    "Script.postprocess": "Hook.AFTER_IMAGE (called once per image)",
    "on_cfg_denoiser / on_cfg_denoised / on_cfg_after_cfg": "Hook.POST_CFG (ctx.noise_pred, ctx.latents)",
    "ControlNet / T2I-Adapter residuals, FreeU, UNet patches": "Hook.UNET_CALL (ctx.add_residuals, ctx.wrap)",
    "on_image_saved": "Hook.IMAGE_SAVED",
    "on_ui_tabs": "Hook.UI_TABS (return UiTab(build, title, id))",
    "on_ui_settings": "Hook.UI_SETTINGS (return OptionSpec rows)",
    "on_app_started": "Hook.APP_STARTED (ctx.fastapi)",
    "on_model_loaded": "Hook.MODEL_LOADED",
    "sd_samplers.add_sampler / all_samplers.append": "Hook.SAMPLERS (return SamplerSpec rows)",
    "Script.title/show/ui/run (selectable)": "ext.add_script(title, ui=..., run=...)",
    "Script.show -> AlwaysVisible + ui": "ext.add_script(title, ui=..., always_on=True)",
}
"""Porting table: AUTOMATIC1111 names (left) -> this API (right). Documented in extensions/README.md."""


# -- app hooks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppStartedContext:
    """`fastapi` is the FastAPI application serving the UI and the API; add routes with `fastapi.add_api_route`."""

    fastapi: Any
    data_dir: Path
    options: Callable[[], Mapping[str, Any]] = field(default=lambda: {})
    """(API 1.7) The settings as they are now (extension settings included), read each time it is called."""
    models_dir: Path | None = None
    """(API 1.8) The folder holding the model folders (`--models-dir`, by default `data_dir / "models"`)."""
    launch_flags: Mapping[str, Any] = field(default_factory=dict)
    """(API 1.9) The values of the flags extensions add in their `preload.py`, by argparse `dest` name
    ("--controlnet-dir" -> "controlnet_dir"); a flag not given has its default."""


@dataclass(frozen=True)
class ModelLoadedContext:
    """A checkpoint was just loaded. `components` is the loaded component set (read-only: do not patch it)."""

    title: str
    family: str
    components: Any


@dataclass(frozen=True)
class UiTabsContext:
    """Building the page. Return one `UiTab` or a sequence of them."""

    data_dir: Path


@dataclass(frozen=True)
class UiTab:
    """A top-level tab: `build()` creates Gradio components inside the tab (called within its `gr.Tab`)."""

    build: Callable[[], None]
    title: str
    id: str


@dataclass(frozen=True)
class SettingsContext:
    """Declaring settings. Return `OptionSpec` rows; `section` is the suggested section label (the extension name).

    Values are read from config.json and appear in `BeforeJobContext.options` (and the other job contexts)."""

    section: str


@dataclass(frozen=True)
class SamplersContext:
    """Adding samplers. Return `SamplerSpec` rows (see `sampler_spec`); `known` lists the names already taken."""

    known: tuple[str, ...]


def sampler_spec(name: str, scheduler_cls: type, config: Mapping[str, Any] | None = None, *,
                 aliases: Sequence[str] = (), default_schedule: str = "uniform") -> "SamplerSpec":
    """Build a sampler row: a diffusers scheduler class plus the config that makes it this sampler."""
    from modules.samplers.registry import SamplerSpec

    return SamplerSpec(name=name, scheduler_cls=scheduler_cls, config=dict(config or {}), aliases=tuple(aliases),
                       default_schedule=default_schedule)


# -- generation hooks -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeforeJobContext:
    """A generation is about to be planned. Return a changed request (`ctx.request.with_changes(...)`) or None.

    `args` are this extension's values from `request.extension_args[<extension name>]` (empty when not sent);
    `options` is the settings snapshot of this job."""

    request: GenerationRequest
    args: Mapping[str, Any]
    options: Mapping[str, Any]


@dataclass
class StepContext:
    """One denoising step after classifier-free guidance and before the scheduler step.

    Assign `noise_pred` (the guided model output the scheduler will use) or `latents` to change the step; the other
    fields are information. `noise_pred_uncond` is None when the uncond pass was skipped (CFG scale 1). `sigma` is
    the k-diffusion sigma of `timestep` (NaN for schedulers without alphas)."""

    step: int
    total: int
    timestep: "torch.Tensor"
    sigma: float
    latents: "torch.Tensor"
    noise_pred: "torch.Tensor"
    noise_pred_cond: "torch.Tensor"
    noise_pred_uncond: "torch.Tensor | None"
    cfg_scale: float
    request: GenerationRequest
    args: Mapping[str, Any]


UNetWrapper = Callable[[Callable[[], "torch.Tensor"]], "torch.Tensor"]
"""`wrapper(call)`: runs instead of one UNet call; `call()` runs it and returns its output."""

HoldModel = Callable[[Hashable, Callable[[], Any]], ContextManager[Any]]
"""(API 1.5) `with hold_model(key, load) as network:` the network cached under `key` in the model manager's budgeted
cache of extension networks, loaded with `load()` when missing; it is not evicted while held. A key names what the
network depends on (its file, the file's modification time, the UNet's config, device and dtype)."""


@contextmanager
def hold_uncached(key: Hashable, load: Callable[[], Any]) -> Iterator[Any]:
    """A `HoldModel` that keeps nothing: `load()` on every use (a context built without a model manager)."""
    yield load()



@dataclass
class UNetCallContext:
    """One UNet call of a denoising step, before it runs (API 1.1). With CFG one call usually holds the uncond and
    the cond rows together: `rows[i]` is the image (index in the batch) of row i of `sample`, `uncond[i]` is True for
    rows of the negative prompt. A callback may, for this call only:

    - assign `sample` (same shape), `encoder_hidden_states` (same number of rows), `timestep` or `added_cond_kwargs`;
    - `add_residuals(down=..., mid=..., intrablock=...)`: ControlNet / T2I-Adapter residuals, added to those of other
      extensions;
    - `wrap(wrapper)`: `wrapper(call)` runs instead of the UNet call and returns `call()`'s output or a tensor of its
      shape (the first callback's wrapper is the outermost);
    - `forward_hook(module, fn)`: a torch forward hook on a module of `unet`, removed when the call returns;
    - (API 1.5) `with ctx.hold_model(key, load) as network:` use a network (a ControlNet) kept in the model manager's
      budgeted cache between calls and jobs; a `UserError` raised by a callback (a file that does not fit the
      checkpoint) stops the generation with its message.

    `unet` is shared: never assign to it or its modules. `sigma` is NaN for schedulers without alphas."""

    step: int
    total: int
    timestep: "torch.Tensor"
    sigma: float
    rows: tuple[int, ...]
    uncond: tuple[bool, ...]
    sample: "torch.Tensor"
    encoder_hidden_states: "torch.Tensor"
    added_cond_kwargs: "Mapping[str, torch.Tensor] | None"
    unet: Any
    request: GenerationRequest
    args: Mapping[str, Any]
    down_block_additional_residuals: "tuple[torch.Tensor, ...] | None" = None
    mid_block_additional_residual: "torch.Tensor | None" = None
    down_intrablock_additional_residuals: "tuple[torch.Tensor, ...] | None" = None
    hold_model: HoldModel = hold_uncached
    """(API 1.5) Hold a network in the model manager's cache for this call (see `HoldModel`)."""
    refiner: bool = False
    """(API 1.8) The call is the SDXL refiner's (the job's second model, from the refiner switch on); `unet` is then
    the refiner's UNet. Networks made for the base model (ControlNets, IP-Adapters) leave these calls alone."""
    _wrappers: list[UNetWrapper] = field(default_factory=list, init=False, repr=False)  # read by the host
    _handles: list[Any] = field(default_factory=list, init=False, repr=False)  # removed by the host

    def add_residuals(self, down: "Sequence[torch.Tensor] | None" = None, mid: "torch.Tensor | None" = None, *,
                      intrablock: "Sequence[torch.Tensor] | None" = None) -> None:
        """Add ControlNet-style residuals (`down`: one per down-block output, `mid`: the mid block's) or T2I-Adapter
        ones (`intrablock`); residuals already there are summed with them."""
        if down is not None:
            self.down_block_additional_residuals = _summed(self.down_block_additional_residuals, down)
        if mid is not None:
            current = self.mid_block_additional_residual
            self.mid_block_additional_residual = mid if current is None else current + mid
        if intrablock is not None:
            self.down_intrablock_additional_residuals = _summed(self.down_intrablock_additional_residuals, intrablock)

    def wrap(self, wrapper: UNetWrapper) -> None:
        """Run `wrapper(call)` instead of this UNet call (see the class doc)."""
        if not callable(wrapper):
            raise TypeError("wrap() needs a callable wrapper(call)")
        self._wrappers.append(wrapper)

    def forward_hook(self, module: Any, fn: Callable[..., Any], *, pre: bool = False,
                     with_kwargs: bool = False) -> None:
        """`module.register_forward_hook(fn)` (or the pre-hook with `pre=True`) for this call only."""
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self._handles.append(register(fn, with_kwargs=with_kwargs))


def _summed(current: "tuple[torch.Tensor, ...] | None", added: "Sequence[torch.Tensor]") -> "tuple[torch.Tensor, ...]":
    if current is None:
        return tuple(added)
    if len(current) != len(added):
        raise ValueError(f"{len(added)} residuals given, {len(current)} already added by another extension")
    return tuple(a + b for a, b in zip(current, added))


@dataclass
class AfterImageContext:
    """One finished image, before it is saved and returned. Assign `image` and/or `infotext` to change them
    (`with_infotext_params` adds `Key: value` pairs)."""

    image: Image.Image
    infotext: str
    index: int
    seed: int
    request: GenerationRequest
    args: Mapping[str, Any]
    options: Mapping[str, Any]


@dataclass(frozen=True)
class ImageSavedContext:
    """An image file was written to `path` (with `infotext` embedded when PNG info is on)."""

    path: Path
    image: Image.Image
    infotext: str
    request: GenerationRequest
    args: Mapping[str, Any]


def with_infotext_params(text: str, params: Mapping[str, Any]) -> str:
    """`text` with `params` added to (or replacing keys of) its A1111 parameter line; None values remove keys."""
    parsed = _infotext.parse(text)
    merged: dict[str, Any] = dict(parsed.written_params())
    for key, value in params.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return _infotext.build(parsed.prompt, parsed.negative_prompt, merged)


def flatten_image(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """(API 1.2) An RGB copy of `image` with transparent parts over `background` (A1111's `images.flatten`; img2img
    does this to init images with the `img2img_background_color` option)."""
    from modules.core.masks import flatten

    return flatten(image, background)


# -- scripts ----------------------------------------------------------------------------------------------------


@dataclass
class PasteContext:
    """(API 1.5) What `InfotextPaste.read` gets: `params`, the pasted infotext's values of the keys the script owns
    (unquoted), `mode` (the tab pasted into). `warn(message)` shows the user a message (a value that cannot be
    used here, such as a model file that is missing)."""

    params: Mapping[str, str]
    mode: ScriptMode
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(str(message))


@dataclass(frozen=True)
class InfotextPaste:
    """(API 1.5) The infotext keys a script owns and how they fill its controls when the user pastes an infotext
    (the prompt box's "read generation parameters" button, PNG Info's and the gallery's "send to" buttons).

    `keys`: the keys the script writes (`with_infotext_params`), exact or with `*` wildcards ("ControlNet *").
    `read(ctx)` runs when the infotext has at least one of them and returns `{control name: value}`: the names `ui`
    returned, and `"<value>/<control>"` for a control of a `Combined` value; a value may be a Gradio update
    (`gr.update(visible=True, value=...)`). Controls it leaves out keep what the user had."""

    keys: tuple[str, ...]
    read: Callable[[PasteContext], Mapping[str, Any]]

    def __post_init__(self) -> None:
        if isinstance(self.keys, str) or not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise ValueError("InfotextPaste needs a tuple of infotext keys")
        if not callable(self.read):
            raise TypeError("InfotextPaste needs a callable read(ctx)")

    def owns(self, key: str) -> bool:
        from fnmatch import fnmatchcase

        return any(fnmatchcase(key, pattern) for pattern in self.keys)


PLOT_KINDS = (int, float, str, bool)


@dataclass(frozen=True)
class PlotAxis:
    """(API 1.5) An axis type an extension adds to the X/Y/Z plot (`ext.add_plot_axis`), listed after its own.

    `kind` (int, float, str or bool) reads the typed values (numbers with A1111's ranges, bools from
    true/false/1/0/yes/no); `apply(request, value)` returns the request of a cell; `confirm(request, values)`
    checks (raise `UserError`) and normalises every value before the first generation; `choices()` lists the
    values offered in the axis's dropdown; `cost` > 0 makes it an outer loop (a model switch)."""

    label: str
    kind: type
    apply: Callable[[GenerationRequest, Any], GenerationRequest]
    confirm: Callable[[GenerationRequest, list[Any]], list[Any]] | None = None
    choices: Callable[[], list[str]] | None = None
    modes: tuple[ScriptMode, ...] = ("txt2img", "img2img")
    cost: float = 0.0

    def __post_init__(self) -> None:
        if not self.label.strip():
            raise ValueError("a plot axis needs a label")
        if self.kind not in PLOT_KINDS:
            raise ValueError(f"plot axis {self.label!r}: kind must be int, float, str or bool")
        if not callable(self.apply):
            raise TypeError(f"plot axis {self.label!r} needs a callable apply(request, value)")


def _no_axes() -> tuple[PlotAxis, ...]:
    return ()



@dataclass(frozen=True)
class UiBuilder:
    """Passed to a script's `ui` function, which runs inside the Gradio layout of one tab.

    The function creates Gradio components and returns them by name: ``{"phi": gr.Slider(...)}``. The names become
    the keys of `request.extension_args[<extension name>]`; their order is the order of A1111's positional
    `script_args`. `choices(kind)` lists names for dropdowns: "samplers", "checkpoints", and (API 1.2)
    "upscalers" (the image upscalers in A1111's `sd_upscalers` order: None, Lanczos, Nearest, then the model files)
    and "hires_upscalers" (the latent modes, then the image upscalers: A1111's Hires. fix list).

    A value of the returned dict may be a `Combined` (API 1.4): one named value that the page builds from several
    controls."""

    mode: ScriptMode
    extension: str
    choices: Callable[[str], list[str]] = field(default=lambda kind: [])
    data_dir: Path | None = None
    """(API 1.4) The data directory (its `models/` folders), or None where the host has none (tests)."""
    plot_axes: Callable[[], Sequence[PlotAxis]] = _no_axes
    """(API 1.5) The X/Y/Z plot axes the active extensions add (`ExtensionContext.add_plot_axis`)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """(API 1.7) The settings when the page is built (extension settings included; {} in a host without them)."""
    models_dir: Path | None = None
    """(API 1.8) The folder holding the model folders (`--models-dir`); None where the host has none (tests)."""
    launch_flags: Mapping[str, Any] = field(default_factory=dict)
    """(API 1.9) As `AppStartedContext.launch_flags`."""

    @property
    def is_img2img(self) -> bool:
        return self.mode == "img2img"

    def elem_id(self, name: str) -> str:
        """A page-unique HTML id for a component of this script."""
        return f"script_{self.mode}_{self.extension}_{name}".replace(" ", "_").lower()


@dataclass(frozen=True)
class Combined:
    """(API 1.4) One named script value that the page builds from several controls, for a `ui` function to return
    instead of a component (A1111's ControlNet sends a list of units, each made of a dozen controls).

    `controls` are the components (by name) drawn by `ui`; when the page sends a job, `combine({name: value})`
    builds the value from their current values. To the HTTP API the value is one argument: `value` is its default
    (`script-info`, an `alwayson_scripts` request that leaves it out) and `label` its label."""

    controls: Mapping[str, Any]
    combine: Callable[[Mapping[str, Any]], Any]
    value: Any = None
    label: str = ""

    def __post_init__(self) -> None:
        if not callable(self.combine):
            raise TypeError("Combined needs a callable combine(values)")
        if not all(isinstance(name, str) and "/" not in name for name in self.controls):
            raise ValueError("Combined controls must be named by strings without '/'")


class Generate(Protocol):
    """`ctx.generate(request)`: one ordinary generation, its images saved as the job is configured.

    API 1.2 keywords: `save=False` never saves this generation's images (a script that saves its own combined
    picture with `ctx.save_image`); `part=(index, count)` reports this generation's progress as part `index`
    (0-based) of `count` equal parts of the job (e.g. tile 3 of 12), so the progress bar counts the parts."""

    def __call__(self, request: GenerationRequest, /, *, save: bool = True,
                 part: tuple[int, int] | None = None) -> GenerationResult: ...


def _no_choices(kind: str) -> list[str]:
    return []


def _no_upscale(image: Image.Image, name: str, scale: float) -> Image.Image | None:
    raise UserError(f"Upscaler {name!r} is not available here.")


def _no_save(image: Image.Image, infotext: str, seed: int) -> None:
    return None


def _no_interrogate(image: Image.Image, model: str) -> str:
    raise UserError("Interrogating is not available here (no captioning service).")


@dataclass(frozen=True)
class RunContext:
    """What a selectable script's `run(ctx, request)` gets. `generate(request)` runs one normal generation (with
    every always-on extension and saving as configured) and returns its result; call it as often as needed (see
    `Generate` for its `save` and `part` keywords).

    `resolve_sampler` / `resolve_checkpoint` return the canonical name or raise `UserError` (validate before a long
    run); `save_grid(image, infotext)` saves a grid when grid saving is on; `interrupted()` is True once the user
    pressed Interrupt (stop launching generations then).

    API 1.2: `choices(kind)` lists names as `UiBuilder.choices` does ("upscalers", "hires_upscalers", ...);
    `upscale(image, name, scale)` enlarges a picture by `scale` with the image upscaler `name` as A1111's
    `Upscaler.upscale` does (passes of the upscaler, then Lanczos to the size rounded down to a multiple of 8),
    raises `UserError` for an unknown or latent upscaler and returns None when the user interrupted it;
    `save_image(image, infotext, seed)` saves a finished picture like a generated one (when the job saves them).

    API 1.3: `interrogate(image, model="clip")` is a caption of a picture, as A1111's interrogate (`model` "clip": a
    BLIP caption from the captioning model in models/BLIP); it raises `UserError` when no captioning model is there
    or the model is not available ("deepdanbooru").

    API 1.5: `plot_axes()` lists the X/Y/Z plot axes the active extensions add (for the plot script)."""

    args: Mapping[str, Any]
    options: Mapping[str, Any]
    generate: Generate
    resolve_sampler: Callable[[str], str]
    resolve_checkpoint: Callable[[str], str]
    save_grid: Callable[[Image.Image, str], None]
    interrupted: Callable[[], bool]
    choices: Callable[[str], list[str]] = _no_choices
    upscale: Callable[[Image.Image, str, float], Image.Image | None] = _no_upscale
    save_image: Callable[[Image.Image, str, int], None] = _no_save
    interrogate: Callable[[Image.Image, str], str] = _no_interrogate
    plot_axes: Callable[[], Sequence[PlotAxis]] = _no_axes


UiFunction = Callable[[UiBuilder], Mapping[str, Any]]
RunFunction = Callable[[RunContext, GenerationRequest], GenerationResult]
PositionalFunction = Callable[[Sequence[Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Script:
    """A script with UI controls in txt2img/img2img.

    Selectable (A1111 "Script" dropdown): has `run`, which takes over the generation when the user selects it.
    Always-on (`always_on=True`): its controls are always shown and its values reach the extension's hooks as
    `ctx.args`; it has no `run`.

    `positional` (optional) turns an API client's positional `script_args` list into named values, for a script
    whose positional layout is not simply its controls in order (one that accepts an older layout too); the
    names it returns must be control names. Without it the list is zipped with the controls.

    `paste` (API 1.5) names the infotext keys the script writes and fills its controls from them when the user
    pastes an infotext (see `InfotextPaste`)."""

    title: str
    ui: UiFunction | None = None
    run: RunFunction | None = None
    always_on: bool = False
    modes: tuple[ScriptMode, ...] = ("txt2img", "img2img")
    positional: PositionalFunction | None = None
    paste: InfotextPaste | None = None

    def __post_init__(self) -> None:
        if not self.title.strip():
            raise ValueError("a script needs a title")
        if self.always_on and self.run is not None:
            raise ValueError(f"script {self.title!r}: always-on scripts cannot take over the run (drop `run`)")
        if not self.always_on and self.run is None:
            raise ValueError(f"script {self.title!r}: a selectable script needs `run` (or set always_on=True)")
        if not set(self.modes) <= {"txt2img", "img2img"} or not self.modes:
            raise ValueError(f"script {self.title!r}: modes must be a non-empty subset of ('txt2img', 'img2img')")


Callback = Callable[[Any], Any]


class ExtensionContext:
    """The handle `register(ext)` receives: this extension's identity and the ways to plug into the application."""

    def __init__(self, name: str, path: Path, version: str,
                 add_callback: Callable[[Hook, Callback, int], None],
                 add_script: Callable[[Script], None],
                 add_plot_axis: Callable[[PlotAxis], None] | None = None) -> None:
        self.name = name
        self.path = path
        self.version = version
        self.log = logging.getLogger(f"extensions.{name}")
        self._add_callback = add_callback
        self._add_script = add_script
        self._add_plot_axis = add_plot_axis

    def on(self, hook: Hook, callback: Callback, *, order: int = 0) -> None:
        """Call `callback(context)` at `hook`; lower `order` runs first (default 0)."""
        if not isinstance(hook, Hook):
            raise TypeError(f"{hook!r} is not a Hook")
        if not callable(callback):
            raise TypeError(f"callback for {hook.name} is not callable")
        self._add_callback(hook, callback, int(order))

    def hook(self, hook: Hook, *, order: int = 0) -> Callable[[Callback], Callback]:
        """Decorator form of `on`."""
        def decorate(callback: Callback) -> Callback:
            self.on(hook, callback, order=order)
            return callback
        return decorate

    def add_script(self, title: str, *, ui: UiFunction | None = None, run: RunFunction | None = None,
                   always_on: bool = False, modes: Sequence[ScriptMode] = ("txt2img", "img2img"),
                   positional: PositionalFunction | None = None, paste: InfotextPaste | None = None) -> Script:
        """Add a selectable (`run=...`) or always-on (`always_on=True`) script; see `Script`."""
        script = Script(title=title, ui=ui, run=run, always_on=always_on, modes=tuple(modes), positional=positional,
                        paste=paste)
        self._add_script(script)
        return script

    def add_plot_axis(self, axis: PlotAxis) -> PlotAxis:
        """(API 1.5) Add an axis type to the X/Y/Z plot (see `PlotAxis`)."""
        if not isinstance(axis, PlotAxis):
            raise TypeError(f"{axis!r} is not a PlotAxis")
        if self._add_plot_axis is None:
            raise RuntimeError("this host takes no plot axes")
        self._add_plot_axis(axis)
        return axis
