"""ModelManager: the one owner of checkpoints, VAEs and upscaler networks for the App.

It combines the catalog (records on disk), the hash cache and the `ModelCache`s (checkpoints within
`sd_checkpoints_limit`; one override VAE; one upscaler network, lent to `upscalers` through `hold_upscaler`; one
captioning model; extension networks such as ControlNets, `control_net_model_cache_size` of them, lent through
`hold_extension_model`).
Generation code asks for components per job and does not keep them:

    with manager.get(request.checkpoint, request.vae, options=job_options) as components:
        ...

There is no "current model" object: the current checkpoint is the `sd_model_checkpoint` setting, resolved per job.
The VAE follows `sd_vae` (see `resolve_vae`); an override VAE is swapped into a copy of the component set, so the
cached checkpoint keeps its own VAE.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Mapping

from modules.devices import (
    MODEL_DTYPE_AUTOMATIC,
    OFFLOAD_NONE,
    DevicePlan,
    plan_devices,
    warn_if_emulated,
    with_model_dtype,
)
from modules.errors import ModelNotFound
from modules.models.hashes import HashCache
from modules.models.records import (
    CheckpointRecord,
    Format,
    ModelCatalog,
    ProbeFn,
    ScanRoots,
    VaeRecord,
    default_probe,
    format_of,
)
from modules.paths import DataPaths
from modules.upscalers.registry import UpscalerRegistry

if TYPE_CHECKING:  # torch, diffusers and the loaders load with the first model, not at start-up
    from diffusers import AutoencoderKL
    from spandrel import ImageModelDescriptor

    from modules.interrogate import CaptionModel
    from modules.models.cache import ModelCache
    from modules.models.components import ComponentSet
    from modules.models.speedups import Speedups

log = logging.getLogger(__name__)

LoadFn = Callable[[CheckpointRecord, DevicePlan], "ComponentSet"]
VaeLoadFn = Callable[[VaeRecord, Mapping[str, Any], DevicePlan], "AutoencoderKL"]

VAE_AUTOMATIC = "Automatic"
VAE_NONE = "None"


@dataclass(frozen=True)
class ModelOptions:
    """The settings the manager reads per job (A1111 names and defaults)."""

    sd_model_checkpoint: str | None = None
    sd_vae: str = VAE_AUTOMATIC
    sd_checkpoints_limit: int = 1
    sd_checkpoints_keep_in_cpu: bool = True
    fp8_storage: str = "Disable"
    """A1111's "FP8 weight": store the UNet in fp8 when a checkpoint loads (`modules.models.weight_storage`)."""
    control_net_model_cache_size: int = 2
    """Extension networks kept loaded (ControlNets): A1111's ControlNet setting, declared by the built-in ControlNet
    extension's settings; without it, A1111's default of 2."""
    channels_last: bool = False
    fused_qkv: bool = False
    torch_compile: bool = False
    torch_compile_mode: str = "default"
    """The load-time speed-ups of `modules.models.speedups` (not A1111 settings)."""
    model_dtype: str = MODEL_DTYPE_AUTOMATIC
    """"Model precision": the launch flags' dtypes, or bfloat16 (`modules.devices.with_model_dtype`)."""

    def load_settings(self) -> tuple[Any, ...]:
        """The settings applied when a checkpoint loads: a change reloads the loaded checkpoints."""
        return (self.fp8_storage, self.channels_last, self.fused_qkv, self.torch_compile, self.torch_compile_mode,
                self.model_dtype)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ModelOptions":
        """Pick the manager's options out of a settings mapping (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclass(frozen=True)
class Selection:
    """What one job will use: the checkpoint and the override VAE (None = the checkpoint's own VAE)."""

    checkpoint: CheckpointRecord
    vae: VaeRecord | None


def default_load_fn(record: CheckpointRecord, plan: DevicePlan) -> ComponentSet:
    """Load through `modules.models.loaders` (single file or diffusers folder)."""
    import torch

    from modules.models import loaders
    from modules.models.offload import apply_offload

    load = loaders.load_diffusers_folder if record.format is Format.DIFFUSERS else loaders.load_checkpoint
    offload = plan.offload_for(record.identity.is_sdxl)
    device = plan.device if offload == OFFLOAD_NONE else torch.device("cpu")
    components = load(record.path, record.identity, device=device, dtype=plan.dtype, vae_dtype=plan.vae_dtype)
    return apply_offload(components, offload, plan.device)


def default_vae_load_fn(record: VaeRecord, base_config: Mapping[str, Any], plan: DevicePlan) -> AutoencoderKL:
    from modules.models import loaders

    return loaders.load_vae(record.path, base_config, device=plan.device, dtype=plan.vae_dtype)


def scan_roots(paths: DataPaths, ckpt_dir: Path | None = None, ckpt: Path | None = None,
               vae_dir: Path | None = None) -> ScanRoots:
    """A1111 folders plus the `--ckpt-dir`, `--ckpt` and `--vae-dir` launch flags."""
    checkpoint_dirs = ((Path(ckpt_dir),) if ckpt_dir else ()) + (paths.checkpoints,)
    vae_dirs = (paths.vae,) + ((Path(vae_dir),) if vae_dir else ())
    return ScanRoots(checkpoint_dirs, vae_dirs, Path(ckpt) if ckpt else None)


class ModelManager:
    """Lists, resolves, loads and caches checkpoints and VAEs; see the module doc."""

    def __init__(self, paths: DataPaths, options: ModelOptions | Mapping[str, Any] | None = None, *,
                 load_fn: LoadFn = default_load_fn, vae_load_fn: VaeLoadFn = default_vae_load_fn,
                 hash_cache: HashCache | None = None, device_plan: DevicePlan | Callable[[], DevicePlan] | None = None,
                 ckpt_dir: Path | None = None, ckpt: Path | None = None, vae_dir: Path | None = None,
                 vae_path: Path | None = None, no_hashing: bool = False, probe_fn: ProbeFn = default_probe) -> None:
        """`device_plan` may be a function that makes it: it is then called when the plan is first needed (with the
        first model), so start-up does not import torch."""
        self.options = self._coerce(options)
        self._plan_source = device_plan if device_plan is not None else plan_devices
        self.hash_cache = hash_cache if hash_cache is not None else HashCache(paths.hash_cache_file)
        self.catalog = ModelCatalog(scan_roots(paths, ckpt_dir, ckpt, vae_dir), self.hash_cache, probe_fn)
        self.forced_vae = VaeRecord(Path(vae_path), Path(vae_path).name, format_of(Path(vae_path)),
                                    self.hash_cache) if vae_path else None
        self.no_hashing = no_hashing
        self._load_fn = load_fn
        self._vae_load_fn = vae_load_fn
        self.upscalers = UpscalerRegistry(paths.models, hold=self.hold_upscaler, folders=dict(paths.upscaler_dirs))
        """Upscalers by A1111's name: the built-ins and the model files in A1111's upscaler folders."""
        self._lock = threading.Lock()
        self._substitutes: Mapping[str, str] = {}

    @contextmanager
    def substituted(self, names: Mapping[str, str]) -> Iterator[None]:
        """For the job a Ray worker runs (one at a time): checkpoint names of the driver resolved to this node's
        files with the same contents (`modules.jobs.job_files.localize`)."""
        previous, self._substitutes = self._substitutes, dict(names)
        try:
            yield
        finally:
            self._substitutes = previous

    # -- the device plan and the caches, made on first use ---------------------------------------------------

    @cached_property
    def launch_plan(self) -> DevicePlan:
        """Device, dtypes and offload from the launch flags (`modules.devices`)."""
        source = self._plan_source
        return source if isinstance(source, DevicePlan) else source()

    @property
    def plan(self) -> DevicePlan:
        """The plan models load with: the launch plan under the "Model precision" setting."""
        return with_model_dtype(self.launch_plan, self.options.model_dtype)

    @cached_property
    def checkpoints(self) -> ModelCache[ComponentSet]:
        from modules.models.cache import ModelCache

        return ModelCache(self.options.sd_checkpoints_limit, self.plan.device, name="checkpoints",
                          one_on_device=self.options.sd_checkpoints_keep_in_cpu)

    @cached_property
    def vaes(self) -> ModelCache[AutoencoderKL]:
        from modules.models.cache import ModelCache

        return ModelCache(1, self.plan.device, name="vaes")

    @cached_property
    def upscaler_models(self) -> ModelCache[ImageModelDescriptor]:
        from modules.models.cache import ModelCache

        return ModelCache(1, self.plan.device, name="upscalers")

    @cached_property
    def extension_models(self) -> ModelCache[Any]:
        """Networks extensions run beside the UNet (ControlNets), within `control_net_model_cache_size`; several are
        used in one step, so none is moved off the device for another."""
        from modules.models.cache import ModelCache

        return ModelCache(self.options.control_net_model_cache_size, self.plan.device, self.plan.device,
                          name="extension networks", one_on_device=False)

    @cached_property
    def caption_models(self) -> ModelCache[CaptionModel]:
        from modules.models.cache import ModelCache

        return ModelCache(1, self.plan.device, name="captioners")

    def _made_caches(self) -> list[ModelCache[Any]]:
        """The caches made so far (the others hold nothing)."""
        names = ("checkpoints", "vaes", "upscaler_models", "caption_models", "extension_models")
        return [self.__dict__[name] for name in names if name in self.__dict__]

    @staticmethod
    def _coerce(options: ModelOptions | Mapping[str, Any] | None) -> ModelOptions:
        if options is None:
            return ModelOptions()
        return options if isinstance(options, ModelOptions) else ModelOptions.from_mapping(options)

    # -- listing ---------------------------------------------------------------------------------------------

    def list_checkpoints(self) -> list[CheckpointRecord]:
        return self.catalog.checkpoints()

    def list_vaes(self) -> list[VaeRecord]:
        return self.catalog.vaes()

    def refresh(self) -> None:
        """Re-scan the model folders; cached models whose file changed or vanished are dropped (unless in use)."""
        with self._lock:
            self.catalog.refresh()
            current = set(self.catalog.checkpoints())
            if "checkpoints" not in self.__dict__:
                return
            for key in self.checkpoints.keys():
                if key not in current:
                    self.checkpoints.evict(key)

    def update_options(self, options: ModelOptions | Mapping[str, Any]) -> None:
        """Apply changed settings (a new checkpoint budget takes effect now; a new FP8 weight or speed-up setting
        drops the loaded checkpoints and VAEs that are not in use, so they load again with it)."""
        with self._lock:
            previous, self.options = self.options, self._coerce(options)
            if "extension_models" in self.__dict__:
                self.extension_models.set_limit(self.options.control_net_model_cache_size)
            if "checkpoints" not in self.__dict__:  # made later, with these options
                return
            if previous.load_settings() != self.options.load_settings():
                dropped = self.checkpoints.clear()  # loaded with the old settings: the next job loads them again
                if "vaes" in self.__dict__:
                    dropped += self.vaes.clear()
                log.info("Load-time settings changed (FP8 weight %r, %s, model precision %s): %d loaded model(s) will "
                         "load again", self.options.fp8_storage, self._speedups(), self.options.model_dtype, dropped)
            self.checkpoints.one_on_device = self.options.sd_checkpoints_keep_in_cpu
            self.checkpoints.set_limit(self.options.sd_checkpoints_limit)

    # -- resolving -------------------------------------------------------------------------------------------

    def resolve_checkpoint(self, name: str | None = None, options: ModelOptions | None = None) -> CheckpointRecord:
        """The record a job uses: `name` when given (must exist), else the `sd_model_checkpoint` setting.

        Like A1111's `select_checkpoint`, a setting that names a missing checkpoint falls back to `--ckpt` or the
        first checkpoint with a warning; with no checkpoints at all ModelNotFound explains where to put them.
        """
        if name:
            return self.catalog.find(self._substitutes.get(name, name))
        options = options or self.options
        setting = options.sd_model_checkpoint
        record = self.catalog.match(setting) if setting else None
        if record is not None:
            return record
        fallback = self._fallback_checkpoint()
        if setting:
            log.warning("Checkpoint %r from settings not found; using %s", setting, fallback.title)
        return fallback

    def _fallback_checkpoint(self) -> CheckpointRecord:
        ckpt = self.catalog.roots.ckpt_file
        from_flag = self.catalog.find_path(ckpt) if ckpt is not None else None
        if from_flag is not None:
            return from_flag
        records = self.catalog.checkpoints()
        if not records:
            raise ModelNotFound(self.catalog.available_summary())
        return records[0]

    def resolve_vae(self, checkpoint: CheckpointRecord, vae: str | None = None,
                    options: ModelOptions | None = None) -> VaeRecord | None:
        """The override VAE for `checkpoint` (None = its own VAE), from `vae` or the `sd_vae` setting.

        "Automatic": a VAE named after the checkpoint (`<stem>.vae.pt`, ...; `ModelCatalog.vae_near`), else its own;
        "None": its own; a file name from models/VAE: that VAE. `--vae-path` overrides all of these.
        """
        if self.forced_vae is not None:
            return self.forced_vae
        choice = vae if vae is not None else (options or self.options).sd_vae
        if not choice or choice == VAE_NONE:
            return None
        if choice == VAE_AUTOMATIC:
            return self.catalog.vae_near(checkpoint)
        return self.catalog.find_vae(choice)

    def select(self, checkpoint: str | None = None, vae: str | None = None,
               options: ModelOptions | None = None) -> Selection:
        record = self.resolve_checkpoint(checkpoint, options)
        return Selection(record, self.resolve_vae(record, vae, options))

    # -- loading ---------------------------------------------------------------------------------------------

    @contextmanager
    def get(self, checkpoint: str | CheckpointRecord | None = None, vae: str | None = None, *,
            options: ModelOptions | None = None) -> Iterator[ComponentSet]:
        """Components of a checkpoint (loaded on demand), with the chosen VAE swapped in; see the module doc."""
        if isinstance(checkpoint, CheckpointRecord):
            selection = Selection(checkpoint, self.resolve_vae(checkpoint, vae, options))
        else:
            selection = self.select(checkpoint, vae, options)
        with self.use(selection) as components:
            yield components

    @contextmanager
    def use(self, selection: Selection) -> Iterator[ComponentSet]:
        """Like `get`, for a selection already resolved (the core resolves first to write the infotext)."""
        record = selection.checkpoint
        with self.checkpoints.use(record, lambda: self._load(record)) as components:
            if selection.vae is None:
                yield components
                return
            vae_record = selection.vae
            key = (vae_record, components.identity.config_name)
            base_config = dict(components.vae.config)
            with self.vaes.use(key, lambda: self._load_vae(vae_record, base_config)) as vae_model:
                yield dataclasses.replace(components, vae=vae_model, vae_dtype=self.plan.vae_dtype)

    def _load(self, record: CheckpointRecord) -> ComponentSet:
        if not self.no_hashing:
            record.calculate_sha256()
        started = time.perf_counter()
        warn_if_emulated(self.plan)
        components = self._load_fn(record, self.plan)
        from modules.models import speedups
        from modules.models.weight_storage import fp8_applies, store_unet_in_fp8

        chosen = self._speedups()
        speedups.apply_before_storage(components, chosen)
        if fp8_applies(self.options.fp8_storage, components.identity):
            store_unet_in_fp8(components)
        speedups.apply_after_storage(components, chosen)
        log.info("Loaded %s (%s) on %s in %.1fs", record.title, components.identity.describe(), self.plan.describe(),
                 time.perf_counter() - started)
        return components

    def _load_vae(self, record: VaeRecord, base_config: Mapping[str, Any]) -> AutoencoderKL:
        if not self.no_hashing:
            record.calculate_sha256()
        vae = self._vae_load_fn(record, base_config, self.plan)
        from modules.models.speedups import apply_to_vae

        apply_to_vae(vae, self._speedups())
        log.info("Loaded VAE %s", record.name)
        return vae

    def _speedups(self) -> Speedups:
        from modules.models.speedups import Speedups

        return Speedups(self.options.channels_last, self.options.fused_qkv, self.options.torch_compile,
                        self.options.torch_compile_mode)

    @contextmanager
    def hold_upscaler(self, path: Path) -> Iterator[ImageModelDescriptor]:
        """The network of an upscaler model file (loaded on demand, one kept loaded), for a `with` block."""
        stat = Path(path).stat()
        key = (Path(path), stat.st_size, stat.st_mtime_ns)
        with self.upscaler_models.use(key, lambda: self._load_upscaler(Path(path))) as model:
            yield model

    def _load_upscaler(self, path: Path) -> ImageModelDescriptor:
        from modules.upscalers.model_files import load_model  # spandrel loads here, not at start-up

        started = time.perf_counter()
        model = load_model(path, self.launch_plan.device, self.launch_plan.dtype)
        self.upscalers.record_scale(path, model.scale)
        log.info("Loaded upscaler %s (%s, x%d, %s) in %.1fs", path.name, model.architecture.name, model.scale,
                 model.dtype, time.perf_counter() - started)
        return model

    @contextmanager
    def hold_captioner(self, folder: Path) -> Iterator[CaptionModel]:
        """The captioning model of a folder (`modules.interrogate`; loaded on demand, one kept), for a `with`."""
        from modules.interrogate import CaptionModel

        key = (Path(folder), (Path(folder) / "config.json").stat().st_mtime_ns)
        with self.caption_models.use(key, lambda: CaptionModel.load(Path(folder), self.launch_plan.device,
                                                                    self.launch_plan.dtype)) as model:
            yield model

    @contextmanager
    def hold_extension_model(self, key: Hashable, load: Callable[[], Any]) -> Iterator[Any]:
        """An extension's network (`api.UNetCallContext.hold_model`) cached under `key` (loaded with `load()` when
        missing), for a `with` block; the budget evicts the least recently used one."""
        with self.extension_models.use(("extension", key), load) as model:
            yield model

    def unload(self) -> None:
        """Drop every cached model that is not in use (frees RAM and device memory)."""
        dropped = sum(cache.clear() for cache in self._made_caches())
        log.info("Unloaded %d models", dropped)

