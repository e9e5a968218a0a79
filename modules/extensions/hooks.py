"""`HookDispatcher`: calls the active extensions' callbacks of each `api.Hook`, in order, isolating their failures.

Callbacks run in ascending `order`, then extension load order, then registration order. Every call into extension
code goes through `invoke` (UNET_CALL's through `unet_call.py`), which records an exception in the extension's error
list and carries on as if the callback had not run; a failing per-step callback (UNET_CALL, POST_CFG) is skipped for
the rest of that generation.
A `UserError` raised in BEFORE_JOB is the one deliberate exception: it refuses the request.

The dispatcher knows nothing of discovery or enable state: it asks `records()` (the host's active extensions, in
load order) at each dispatch, so disabling an extension stops its callbacks at once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Hashable, Mapping, Sequence

from PIL import Image

from modules.errors import UserError
from modules.extensions import api
from modules.extensions.loader import ActiveRecords, RegisteredCallback
from modules.extensions.script_ui import as_tab, guarded_build, tab_items
from modules.options import OptionSpec
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.core.denoise import StepContext as CoreStepContext
    from modules.core.denoise import UNetHook
    from modules.samplers.registry import SamplerRegistry
    from modules.settings import SettingsStore

log = logging.getLogger(__name__)

def invoke(cb: RegisteredCallback, context: Any, *, refusals: bool = False) -> tuple[bool, Any]:
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


def reject(cb: RegisteredCallback, message: str) -> None:
    """Record a callback's result that broke its hook's contract (the result is ignored)."""
    cb.extension.record_error(f"hook {cb.hook.name}", TypeError(message))


def extension_args(request: GenerationRequest, cb: RegisteredCallback) -> Mapping[str, Any]:
    """The values sent for `cb`'s extension (`request.extension_args[<name>]`; empty when none)."""
    return request.extension_args.get(cb.extension.name, {})


class HookDispatcher:
    """Every hook's dispatch: app hooks (start, model loaded, UI) and generation hooks (job, UNet call, step, image)."""

    def __init__(self, records: ActiveRecords, data_dir: Path,
                 options: Callable[[], Mapping[str, Any]] = dict, models_dir: Path | None = None,
                 launch_flags: Mapping[str, Any] | None = None) -> None:
        self._records = records
        self.data_dir = data_dir
        self.models_dir = models_dir or data_dir / "models"
        self.launch_flags = dict(launch_flags or {})
        self._options = options
        self.model_holder: api.HoldModel | None = None
        """The model manager's `hold_extension_model` (set by `ExtensionHost.setup`); None: a cache of our own."""
        self._own_cache: Any = None

    def hold_model(self, key: Hashable, load: Callable[[], Any]) -> ContextManager[Any]:
        """`UNetCallContext.hold_model`: the model manager's cache of extension networks, or (a host without one)
        a small cache of this dispatcher's."""
        if self.model_holder is not None:
            return self.model_holder(key, load)
        if self._own_cache is None:
            from modules.models.cache import ModelCache  # imports torch, which the host needs only here

            self._own_cache = ModelCache(2, name="extension networks", one_on_device=False)
        cache = self._own_cache
        return cache.use(key, load)

    def callbacks(self, hook: api.Hook) -> list[RegisteredCallback]:
        """Callbacks of active extensions for `hook`, in dispatch order (order, load order, registration)."""
        found = [cb for record in self._records() for cb in record.callbacks if cb.hook is hook]
        return sorted(found, key=lambda cb: (cb.order, cb.extension.load_index, cb.seq))

    # -- app hooks --------------------------------------------------------------------------------------------

    def add_samplers(self, samplers: "SamplerRegistry") -> None:
        """SAMPLERS: extension rows go into `samplers`."""
        for cb in self.callbacks(api.Hook.SAMPLERS):
            ok, rows = invoke(cb, api.SamplersContext(tuple(samplers.all_known())))
            for row in (rows or ()) if ok else ():
                try:
                    samplers.add(row)
                except (ValueError, TypeError, AttributeError) as exc:
                    cb.extension.record_error("hook SAMPLERS", exc)

    def add_settings(self, settings: "SettingsStore") -> None:
        """UI_SETTINGS: extension rows go into `settings`' option table (values come from config.json)."""
        table = settings.get().table
        rows: list[OptionSpec] = []
        for cb in self.callbacks(api.Hook.UI_SETTINGS):
            ok, specs = invoke(cb, api.SettingsContext(section=cb.extension.name))
            for spec in (specs or ()) if ok else ():
                if not isinstance(spec, OptionSpec):
                    reject(cb, f"UI_SETTINGS must return OptionSpec rows, got {type(spec).__name__}")
                elif spec.key in table or any(spec.key == row.key for row in rows):
                    reject(cb, f"setting {spec.key!r} already exists")
                else:
                    rows.append(spec)
        if rows:
            settings.replace_table(table.with_specs(rows))

    def app_started(self, fastapi_app: Any) -> None:
        """Fire APP_STARTED (call once, after the UI and the API routes are mounted)."""
        for cb in self.callbacks(api.Hook.APP_STARTED):
            invoke(cb, api.AppStartedContext(fastapi_app, self.data_dir, self._options, self.models_dir,
                                             self.launch_flags))

    def model_loaded(self, title: str, components: Any) -> None:
        context = api.ModelLoadedContext(title, components.identity.family.value, components)
        for cb in self.callbacks(api.Hook.MODEL_LOADED):
            invoke(cb, context)

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
            ok, result = invoke(cb, api.UiTabsContext(self.data_dir))
            if not ok or result is None:
                continue
            for item in tab_items(result):
                tab = as_tab(item)
                if tab is None:
                    reject(cb, f"UI_TABS must return UiTab(build, title, id), got {item!r}")
                else:
                    tabs.append(api.UiTab(guarded_build(cb.extension, tab), tab.title, tab.id))
        return tabs

    # -- generation hooks -------------------------------------------------------------------------------------

    def before_job(self, request: GenerationRequest, options: Mapping[str, Any]) -> GenerationRequest:
        """Let BEFORE_JOB callbacks change the request, in dispatch order."""
        for cb in self.callbacks(api.Hook.BEFORE_JOB):
            context = api.BeforeJobContext(request, extension_args(request, cb), options)
            ok, result = invoke(cb, context, refusals=True)
            if not ok or result is None:
                continue
            if isinstance(result, GenerationRequest):
                request = result
            else:
                reject(cb, f"BEFORE_JOB must return a GenerationRequest or None, got {type(result).__name__}")
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
                                          core.cfg_scale, request, extension_args(request, cb))
                ok, _ = invoke(cb, context)
                if ok and _same_shapes(context, core):
                    core.noise_pred, core.latents = context.noise_pred, context.latents
                    continue
                if ok:
                    reject(cb, "POST_CFG changed the shape of noise_pred or latents")
                failed.add(cb.seq)
                log.warning("Extension %s: POST_CFG callback skipped for the rest of this generation",
                            cb.extension.name)
        return [hook]

    def unet_hooks(self, request: GenerationRequest) -> list["UNetHook"]:
        """UNET_CALL callbacks adapted to the core's UNetHook (one hook for all of them; [] when there are none)."""
        callbacks = self.callbacks(api.Hook.UNET_CALL)
        if not callbacks:
            return []
        from modules.extensions.unet_call import unet_call_hook  # imports torch, which the host needs only here

        return [unet_call_hook(callbacks, request, lambda cb: extension_args(request, cb), self.hold_model)]

    def after_images(self, request: GenerationRequest, images: Sequence[Image.Image], infotexts: Sequence[str],
                     seeds: Sequence[int], options: Mapping[str, Any]
                     ) -> tuple[tuple[Image.Image, ...], tuple[str, ...]]:
        """AFTER_IMAGE for every image; returns the (possibly replaced) images and infotexts."""
        callbacks = self.callbacks(api.Hook.AFTER_IMAGE)
        out_images, out_texts = list(images), list(infotexts)
        for index in range(len(out_images)) if callbacks else ():
            for cb in callbacks:
                context = api.AfterImageContext(out_images[index], out_texts[index], index, seeds[index], request,
                                                extension_args(request, cb), options)
                ok, _ = invoke(cb, context)
                if not ok:
                    continue
                if isinstance(context.image, Image.Image) and isinstance(context.infotext, str):
                    out_images[index], out_texts[index] = context.image, context.infotext
                else:
                    reject(cb, "AFTER_IMAGE must leave a PIL image in ctx.image and a str in ctx.infotext")
        return tuple(out_images), tuple(out_texts)

    def image_saved(self, request: GenerationRequest, path: Path, image: Image.Image, infotext: str) -> None:
        for cb in self.callbacks(api.Hook.IMAGE_SAVED):
            invoke(cb, api.ImageSavedContext(path, image, infotext, request, extension_args(request, cb)))


def _same_shapes(context: api.StepContext, core: "CoreStepContext") -> bool:
    return (tuple(context.noise_pred.shape) == tuple(core.noise_pred.shape)
            and tuple(context.latents.shape) == tuple(core.latents.shape))
