"""Device and dtype choice as pure functions of the launch flags and what torch can use.

Rules (A1111 flags, same meaning):
- device: `--device` wins when given ("cpu", "cuda", "cuda:1", "mps"); otherwise CUDA if available, else MPS,
  else CPU.
- weights: fp16 on CUDA and MPS unless `--no-half` or `--precision full`; fp32 on CPU (fp16 kernels are missing or
  very slow there).
- VAE: same as the weights, or fp32 with `--no-half-vae`.
- the "Model precision" setting (`model_dtype`, `with_model_dtype`) may replace that choice with bfloat16 on any
  device: on CPUs with native bf16 (AVX512-BF16, AMX) about twice as fast as fp32; emulated, and slow, on others
  (`cpu_has_native_bf16`).
- autocast: `--precision autocast` (A1111's default) with fp16 weights asks the core to run under torch.autocast.

`memory_stats` reports RAM and CUDA memory in the layout of A1111's `/sdapi/v1/memory`. torch is imported inside the
functions: start-up (the page, the API) does not load it (see docs/performance.md, cold start).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psutil

if TYPE_CHECKING:
    import torch

from modules.errors import UserError

log = logging.getLogger(__name__)

Precision = Literal["full", "half", "autocast"]
PRECISIONS: tuple[str, ...] = ("full", "half", "autocast")

MODEL_DTYPE_AUTOMATIC = "Automatic"
MODEL_DTYPE_BF16 = "bfloat16"
MODEL_DTYPES: tuple[str, ...] = (MODEL_DTYPE_AUTOMATIC, MODEL_DTYPE_BF16)
"""Values of the "Model precision" setting: the launch flags' choice, or bfloat16 weights and compute."""


@dataclass(frozen=True)
class Capabilities:
    """What this torch build can run on (a value, so the choice functions stay pure and testable)."""

    cuda: bool
    mps: bool
    cuda_count: int = 0

    @classmethod
    def detect(cls) -> "Capabilities":
        import torch

        cuda = torch.cuda.is_available()
        mps = torch.backends.mps.is_available()
        return cls(cuda=cuda, mps=mps, cuda_count=torch.cuda.device_count() if cuda else 0)


OFFLOAD_NONE = "none"
OFFLOAD_MODEL = "model"  # --medvram: each component moves to the device for its forward pass, then back
OFFLOAD_SEQUENTIAL = "sequential"  # --lowvram: weights move submodule by submodule


@dataclass(frozen=True)
class DevicePlan:
    """Where models run and in which dtypes."""

    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    autocast: bool = False
    offload: str = OFFLOAD_NONE
    no_half_vae: bool = False
    """`--no-half-vae` was given: the VAE stays fp32 whatever the weights' dtype (`with_model_dtype`)."""
    medvram_sdxl: bool = False
    """A1111's `--medvram-sdxl`: SDXL checkpoints load with "model" offload, others as `offload` says."""

    def offload_for(self, is_sdxl: bool) -> str:
        """The offload a checkpoint of that family loads with."""
        return OFFLOAD_MODEL if is_sdxl and self.medvram_sdxl and self.offload == OFFLOAD_NONE else self.offload

    def describe(self) -> str:
        vae = "" if self.vae_dtype == self.dtype else f", VAE {_dtype_name(self.vae_dtype)}"
        auto = ", autocast" if self.autocast else ""
        offload = "" if self.offload == OFFLOAD_NONE else f", {self.offload} offload"
        sdxl = ", model offload for SDXL" if self.offload_for(True) != self.offload else ""
        return f"{self.device} {_dtype_name(self.dtype)}{vae}{auto}{offload}{sdxl}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def choose_device(override: str | None, caps: Capabilities) -> torch.device:
    """The device models run on: `override` when given and usable, else cuda > mps > cpu."""
    import torch

    if override:
        try:
            device = torch.device(override)
        except RuntimeError as exc:
            raise UserError(f"--device {override!r} is not a device name (use cpu, cuda, cuda:N or mps).") from exc
        if device.type == "cuda" and (not caps.cuda or (device.index or 0) >= max(caps.cuda_count, 1)):
            raise UserError(f"--device {override}: no such CUDA device is available to this torch build.")
        if device.type == "mps" and not caps.mps:
            raise UserError(f"--device {override}: MPS is not available to this torch build.")
        if device.type not in ("cpu", "cuda", "mps"):
            raise UserError(f"--device {override}: only cpu, cuda and mps are supported.")
        return device
    if caps.cuda:
        return torch.device("cuda")
    if caps.mps:
        return torch.device("mps")
    return torch.device("cpu")


def choose_dtypes(device: torch.device, precision: str = "autocast", no_half: bool = False,
                  no_half_vae: bool = False) -> tuple[torch.dtype, torch.dtype]:
    """(weights dtype, VAE dtype) for `device` under the A1111 precision flags."""
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
    if device.type == "cpu" or no_half or precision == "full":
        return torch.float32, torch.float32
    return torch.float16, (torch.float32 if no_half_vae else torch.float16)


def choose_offload(device: torch.device, medvram: bool = False, lowvram: bool = False) -> str:
    """A1111's --medvram (one model on the GPU at a time) and --lowvram (layer by layer); nothing to do on CPU."""
    if device.type == "cpu":
        return OFFLOAD_NONE
    if lowvram:
        return OFFLOAD_SEQUENTIAL
    return OFFLOAD_MODEL if medvram else OFFLOAD_NONE


def plan_devices(device: str | None = None, precision: str = "autocast", no_half: bool = False,
                 no_half_vae: bool = False, caps: Capabilities | None = None, *, medvram: bool = False,
                 lowvram: bool = False, medvram_sdxl: bool = False) -> DevicePlan:
    """Device, dtypes and offload policy from the launch flags; `caps` defaults to what this process detects.
    Offload (`--medvram`, `--lowvram`, `--medvram-sdxl`) means nothing on the CPU."""
    import torch

    caps = caps if caps is not None else Capabilities.detect()
    chosen = choose_device(device, caps)
    dtype, vae_dtype = choose_dtypes(chosen, precision, no_half, no_half_vae)
    plan = DevicePlan(chosen, dtype, vae_dtype, autocast=precision == "autocast" and dtype == torch.float16,
                      offload=choose_offload(chosen, medvram, lowvram), no_half_vae=no_half_vae,
                      medvram_sdxl=medvram_sdxl and chosen.type != "cpu")
    log.info("Models run on %s", plan.describe())
    return plan


def with_model_dtype(plan: DevicePlan, model_dtype: str = MODEL_DTYPE_AUTOMATIC) -> DevicePlan:
    """`plan` under the "Model precision" setting: unchanged for Automatic; for bfloat16, the weights (UNet, text
    encoders, the networks beside the UNet) and the VAE in bf16, without autocast; `--no-half-vae` keeps the VAE in
    fp32."""
    import torch

    if model_dtype == MODEL_DTYPE_AUTOMATIC:
        return plan
    if model_dtype != MODEL_DTYPE_BF16:
        raise UserError(f"Model precision {model_dtype!r} is not one of {', '.join(MODEL_DTYPES)}.")
    return dataclasses.replace(plan, dtype=torch.bfloat16,
                               vae_dtype=torch.float32 if plan.no_half_vae else torch.bfloat16, autocast=False)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX); elsewhere torch emulates
    it, several times slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def warn_if_emulated(plan: DevicePlan) -> None:
    """Log a warning when `plan` computes in bfloat16 on a CPU that emulates it."""
    import torch

    if plan.device.type == "cpu" and plan.dtype == torch.bfloat16 and not cpu_has_native_bf16():
        log.warning("Model precision bfloat16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so it is "
                    "emulated and slower than float32; set Model precision to Automatic")


def empty_cache(device: torch.device) -> None:
    """Give cached allocator blocks back to the driver after models were freed."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def memory_stats(device: torch.device) -> dict[str, Any]:
    """RAM and (when `device` is CUDA) allocator statistics, as A1111's `/sdapi/v1/memory` returns them."""
    import torch

    vm = psutil.virtual_memory()
    rss = psutil.Process().memory_info().rss
    stats: dict[str, Any] = {"ram": {"free": vm.available, "used": rss, "total": vm.total}}
    if device.type != "cuda" or not torch.cuda.is_available():
        stats["cuda"] = {"error": f"unavailable on {device.type}"}
        return stats
    free, total = torch.cuda.mem_get_info(device)
    raw = torch.cuda.memory_stats(device)

    def pair(name: str) -> dict[str, int]:
        return {"current": raw.get(f"{name}.all.current", 0), "peak": raw.get(f"{name}.all.peak", 0)}

    stats["cuda"] = {
        "system": {"free": free, "used": total - free, "total": total},
        "active": pair("active_bytes"),
        "allocated": pair("allocated_bytes"),
        "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": raw.get("num_alloc_retries", 0), "oom": raw.get("num_ooms", 0)},
    }
    return stats


def execution_device(module: torch.nn.Module) -> torch.device:
    """Where `module` computes: the device of its weights, or, when accelerate offload hooks manage it (--lowvram
    keeps weights on the meta device between calls), the hooks' execution device."""
    device = _hook_device(module)  # --medvram: cpu_offload_with_hook sits on the module itself
    if device is not None:
        return device
    weights = next(module.parameters()).device
    if weights.type != "meta":  # (searching every submodule for a hook takes ~1 ms on a UNet: only when needed)
        return weights
    for part in module.modules():  # --lowvram: cpu_offload's hooks sit on the submodules
        device = _hook_device(part)
        if device is not None:
            return device
    return weights


def _hook_device(module: torch.nn.Module) -> torch.device | None:
    import torch

    hook = getattr(module, "_hf_hook", None)  # set by accelerate.cpu_offload / cpu_offload_with_hook
    device = getattr(hook, "execution_device", None)
    return None if device is None else torch.device(device)
