"""Optional speed-ups applied to a checkpoint when it loads (the "Optimizations" settings `channels_last`,
`fused_qkv`, `torch_compile` and `torch_compile_mode`); the model manager reloads its checkpoints when one changes.

- Channels-last: the UNet's and the VAE's 4-D weights are stored NHWC; convolutions then return NHWC activations
  by themselves, so the latents are passed as they are. Pictures change by float rounding only.
- Fused QKV: diffusers' `fuse_qkv_projections` adds one `to_qkv` (self-attention) or `to_kv` (cross-attention)
  projection per attention module, built from `to_q`/`to_k`/`to_v`, which stay and are what LoRAs merge into;
  `refresh_fused` rebuilds the fused weights from them after a merge and after the restore.
- torch.compile: the UNet's forward goes through `torch.compile` (static shapes: each new latent size or batch
  recompiles once, up to dynamo's recompile limit, then runs eagerly). The compiled function lives on the loaded
  UNet, so it is made once per loaded model and kept across jobs. When compilation fails (no C++ compiler, an
  unsupported operation) a warning is logged and that model runs eagerly from then on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from modules.models.components import ComponentSet

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

log = logging.getLogger(__name__)

COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
"""Values of `torch_compile_mode` (torch.compile's modes; "default" = no mode argument)."""


@dataclass(frozen=True)
class Speedups:
    """Which load-time speed-ups a checkpoint gets."""

    channels_last: bool = False
    fused_qkv: bool = False
    torch_compile: bool = False
    torch_compile_mode: str = "default"

    @property
    def any(self) -> bool:
        return self.channels_last or self.fused_qkv or self.torch_compile


def fuse_qkv(components: ComponentSet) -> int:
    """Fuse the attention projections of the UNet and the VAE; returns the number of attention modules fused.
    A model diffusers cannot fuse (added KV projections) is left as it is, with a warning."""
    from diffusers.models.attention_processor import Attention

    fused = 0
    for name, model in (("UNet", components.unet), ("VAE", components.vae)):
        try:
            model.fuse_qkv_projections()
        except (ValueError, AttributeError) as exc:
            log.warning("Fused QKV: the %s keeps separate projections (%s)", name, exc)
            continue
        fused += sum(isinstance(module, Attention) and module.fused_projections for module in model.modules())
    log.info("Fused QKV: %d attention modules", fused)
    return fused


def _fused_attention(model: torch.nn.Module) -> Iterable[Any]:
    from diffusers.models.attention_processor import Attention

    return (module for module in model.modules() if isinstance(module, Attention) and module.fused_projections)


@torch.no_grad()
def refresh_fused(model: torch.nn.Module, changed: Callable[[torch.nn.Parameter], bool] | None = None) -> int:
    """Copy `to_q`/`to_k`/`to_v` into the fused projections of `model`'s fused attention modules (those one of
    whose projection weights `changed` names; all when None). Returns the number refreshed."""
    refreshed = 0
    for attention in _fused_attention(model):
        parts = [attention.to_q, attention.to_k, attention.to_v]
        fused = getattr(attention, "to_qkv", None)
        if attention.is_cross_attention:
            parts, fused = parts[1:], getattr(attention, "to_kv", None)
        if fused is None or (changed is not None and not any(changed(part.weight) for part in parts)):
            continue
        fused.weight.copy_(torch.cat([part.weight for part in parts]))
        if fused.bias is not None:
            fused.bias.copy_(torch.cat([part.bias for part in parts]))
        refreshed += 1
    return refreshed


def to_channels_last(components: ComponentSet) -> None:
    """Store the UNet's and the VAE's 4-D tensors channels-last (NHWC)."""
    components.unet.to(memory_format=torch.channels_last)
    components.vae.to(memory_format=torch.channels_last)
    log.info("Channels-last: UNet and VAE weights stored NHWC")


def _compile_errors() -> tuple[type[Exception], ...]:
    from torch._dynamo.exc import TorchDynamoException

    return (TorchDynamoException,)


class CompiledForward:
    """A module's forward through torch.compile; after a compilation failure, its eager forward for good."""

    def __init__(self, module: torch.nn.Module, mode: str = "default", backend: Any = "inductor") -> None:
        if mode not in COMPILE_MODES:
            from modules.errors import UserError

            raise UserError(f"torch.compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}.")
        self.eager: Callable[..., Any] = module.forward
        options: dict[str, Any] = {"backend": backend, "dynamic": False}
        if mode != "default" and backend == "inductor":
            options["mode"] = mode
        self.compiled: Callable[..., Any] = torch.compile(self.eager, **options)
        self.mode = mode
        self.failure: str | None = None
        """Why compilation failed (the model then runs eagerly), None while it has not."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failure is None:
            try:
                return self.compiled(*args, **kwargs)
            except _compile_errors() as exc:
                self.failure = _summary(exc)
                log.warning("torch.compile of the UNet failed, it runs eagerly from now on (%s)", self.failure)
        return self.eager(*args, **kwargs)


def _summary(exc: Exception) -> str:
    """One line on a compilation failure: the backend's own error when dynamo wrapped one."""
    inner = getattr(exc, "inner_exception", None)
    error = inner if isinstance(inner, BaseException) else exc
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def compile_unet(components: ComponentSet, mode: str = "default", backend: Any = "inductor") -> CompiledForward:
    """Route the UNet's forward through torch.compile (compiled at its first call for each input shape)."""
    compiled = CompiledForward(components.unet, mode, backend)
    components.unet.forward = compiled
    log.info("torch.compile: the UNet compiles at its first call for each latent size and batch (mode %s)", mode)
    return compiled


def compiled_forward(unet: torch.nn.Module) -> CompiledForward | None:
    """The UNet's CompiledForward when `compile_unet` routed it, else None."""
    forward = unet.__dict__.get("forward")
    return forward if isinstance(forward, CompiledForward) else None


def apply_to_vae(vae: AutoencoderKL, speedups: Speedups) -> None:
    """The speed-ups of an override VAE (loaded apart from its checkpoint): fused QKV and channels-last."""
    if speedups.fused_qkv:
        vae.fuse_qkv_projections()
    if speedups.channels_last:
        vae.to(memory_format=torch.channels_last)


def apply_before_storage(components: ComponentSet, speedups: Speedups) -> None:
    """The speed-ups that must come before FP8 weight storage (fusing makes new layers that fp8 must cover)."""
    if speedups.fused_qkv:
        fuse_qkv(components)


def apply_after_storage(components: ComponentSet, speedups: Speedups) -> None:
    """The speed-ups that come last: channels-last, then torch.compile of the finished UNet."""
    if speedups.channels_last:
        to_channels_last(components)
    if speedups.torch_compile:
        compile_unet(components, speedups.torch_compile_mode)
