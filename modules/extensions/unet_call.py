"""The UNET_CALL hook: extension callbacks turned into one core `UNetHook` around every UNet call.

Per call, each callback gets a fresh `api.UNetCallContext` holding the inputs as the callbacks before it left them;
what it changed is kept only when it returned normally and the changes fit (shapes); otherwise its changes, wrappers
and forward hooks are dropped, the error is recorded and the callback is skipped for the rest of the generation.
Wrappers run around the UNet call, the first callback's outermost; a wrapper that raises (outside the UNet call it
was given) or returns a tensor of another shape is dropped with its callback's forward hooks, and the call goes on
without it.

A `UserError` raised by a callback (API 1.5; a network file that does not fit the checkpoint) is the exception:
it stops the generation with its message, as a BEFORE_JOB refusal does. `ctx.hold_model` lends networks from the
host's cache (the model manager's, see `HookDispatcher.hold_model`).

Undo is guaranteed: nothing is assigned to the UNet; torch forward hooks registered through the context are removed
when the call returns, also on errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from modules.errors import UserError
from modules.extensions import api
from modules.extensions.loader import RegisteredCallback
from modules.types import GenerationRequest

if TYPE_CHECKING:
    from modules.core.denoise import UNetFunction, UNetHook, UNetInputs, UNetStep

log = logging.getLogger(__name__)

ArgsFor = Callable[[RegisteredCallback], Mapping[str, Any]]


@dataclass
class _Prepared:
    """The inputs after every callback, the wrappers they added, and every context made (for their torch hooks)."""

    inputs: "UNetInputs"
    wrappers: list[tuple[RegisteredCallback, api.UNetCallContext, api.UNetWrapper]] = field(default_factory=list)
    contexts: list[api.UNetCallContext] = field(default_factory=list)

    def remove_hooks(self) -> None:
        for ctx in self.contexts:
            for handle in ctx._handles:
                handle.remove()


def _record(cb: RegisteredCallback, exc: BaseException, failed: set[int]) -> None:
    cb.extension.record_error(f"hook {cb.hook.name}", exc)
    failed.add(cb.seq)
    log.warning("Extension %s: UNET_CALL callback skipped for the rest of this generation", cb.extension.name)


@dataclass(frozen=True)
class _Call:
    """What every context of one UNet call shares."""

    step: "UNetStep"
    rows: tuple[int, ...]
    uncond: tuple[bool, ...]
    request: GenerationRequest
    hold_model: api.HoldModel = api.hold_uncached


def _context(call: _Call, inputs: "UNetInputs", args: Mapping[str, Any]) -> api.UNetCallContext:
    step = call.step
    return api.UNetCallContext(
        step=step.step, total=step.total, timestep=inputs.timestep, sigma=step.sigma,
        rows=call.rows, uncond=call.uncond, sample=inputs.sample,
        encoder_hidden_states=inputs.encoder_hidden_states, added_cond_kwargs=inputs.added_cond_kwargs,
        unet=step.unet, request=call.request, args=args, hold_model=call.hold_model, refiner=step.refiner,
        down_block_additional_residuals=inputs.down_block_additional_residuals,
        mid_block_additional_residual=inputs.mid_block_additional_residual,
        down_intrablock_additional_residuals=inputs.down_intrablock_additional_residuals,
    )


def _tensors(values: Sequence[Any] | None) -> bool:
    return values is None or all(isinstance(value, torch.Tensor) for value in values)


def _problem(ctx: api.UNetCallContext, before: "UNetInputs") -> str | None:
    """Why the context's inputs cannot be used (None when they can)."""
    if not isinstance(ctx.sample, torch.Tensor) or ctx.sample.shape != before.sample.shape:
        return "UNET_CALL changed the shape of sample"
    states = ctx.encoder_hidden_states
    if not isinstance(states, torch.Tensor) or states.shape[0] != before.encoder_hidden_states.shape[0]:
        return "UNET_CALL changed the number of rows of encoder_hidden_states"
    if not isinstance(ctx.timestep, torch.Tensor):
        return "UNET_CALL timestep must stay a tensor"
    mid = ctx.mid_block_additional_residual
    if not (_tensors(ctx.down_block_additional_residuals) and _tensors(ctx.down_intrablock_additional_residuals)
            and (mid is None or isinstance(mid, torch.Tensor))):
        return "UNET_CALL residuals must be tensors"
    return None


def _inputs(ctx: api.UNetCallContext) -> "UNetInputs":
    from modules.core.denoise import UNetInputs

    added = None if ctx.added_cond_kwargs is None else dict(ctx.added_cond_kwargs)
    return UNetInputs(
        ctx.sample, ctx.timestep, ctx.encoder_hidden_states, added,
        None if ctx.down_block_additional_residuals is None else tuple(ctx.down_block_additional_residuals),
        ctx.mid_block_additional_residual,
        None if ctx.down_intrablock_additional_residuals is None else tuple(ctx.down_intrablock_additional_residuals),
    )


def _prepare(callbacks: Sequence[RegisteredCallback], failed: set[int], call: _Call, inputs: "UNetInputs",
             args_for: ArgsFor, prepared: _Prepared) -> None:
    """Run the callbacks in order; each one's changes are kept only when it succeeded (see the module doc)."""
    for cb in callbacks:
        if cb.seq in failed:
            continue
        ctx = _context(call, prepared.inputs, args_for(cb))
        prepared.contexts.append(ctx)
        try:
            cb.fn(ctx)
            problem = _problem(ctx, prepared.inputs)
            if problem is not None:
                raise TypeError(problem)
        except UserError:
            raise  # refuses the generation (the hooks it added are removed by the caller)
        except Exception as exc:  # noqa: BLE001 - isolated per extension
            for handle in ctx._handles:
                handle.remove()
            ctx._wrappers.clear()
            _record(cb, exc, failed)
            continue
        prepared.inputs = _inputs(ctx)
        prepared.wrappers.extend((cb, ctx, wrapper) for wrapper in ctx._wrappers)


class _Inner:
    """The `call` a wrapper gets: runs the inner function, remembering its output or the error it raised."""

    def __init__(self, inner: Callable[[], torch.Tensor]) -> None:
        self._inner = inner
        self.output: torch.Tensor | None = None
        self.error: BaseException | None = None

    def __call__(self) -> torch.Tensor:
        try:
            self.output = self._inner()
        except BaseException as exc:
            self.error = exc
            raise
        return self.output

    def output_or_run(self) -> torch.Tensor:
        return self.output if self.output is not None else self()


def _guarded(cb: RegisteredCallback, ctx: api.UNetCallContext, wrapper: api.UNetWrapper,
             inner: Callable[[], torch.Tensor], shape: tuple[int, ...], failed: set[int]) -> Callable[[], torch.Tensor]:
    """`wrapper` around `inner`; when the wrapper fails (not the UNet inside it), its callback's forward hooks are
    removed and the call goes on without it (with the inner output when the wrapper had got it)."""
    def without_wrapper(exc: BaseException, call: _Inner) -> torch.Tensor:
        for handle in ctx._handles:
            handle.remove()
        _record(cb, exc, failed)
        return call.output_or_run()

    def run() -> torch.Tensor:
        call = _Inner(inner)
        try:
            output = wrapper(call)
        except Exception as exc:
            if call.error is not None and exc is call.error:
                raise  # the UNet (or an inner wrapper's UNet call) failed, not this wrapper
            return without_wrapper(exc, call)
        if isinstance(output, torch.Tensor) and tuple(output.shape) == shape:
            return output
        return without_wrapper(TypeError(f"a UNET_CALL wrapper must return a tensor of shape {shape}"), call)
    return run


def unet_call_hook(callbacks: Sequence[RegisteredCallback], request: GenerationRequest,
                   args_for: ArgsFor, hold_model: api.HoldModel = api.hold_uncached) -> "UNetHook":
    """One core UNetHook running `callbacks` (in dispatch order) for every UNet call of one generation;
    `hold_model` is the contexts' `hold_model`."""
    failed: set[int] = set()

    def hook(step: "UNetStep", inputs: "UNetInputs", call_next: "UNetFunction") -> torch.Tensor:
        rows = tuple(int(row) for row in step.rows.tolist())
        call = _Call(step, rows, tuple(index < step.uncond_rows for index in range(len(rows))), request,
                     hold_model)
        prepared = _Prepared(inputs)
        try:
            _prepare(callbacks, failed, call, inputs, args_for, prepared)
            final = prepared.inputs

            def run_unet() -> torch.Tensor:
                return call_next(final)

            run = run_unet
            shape = (final.sample.shape[0], step.unet.config.out_channels, *final.sample.shape[2:])
            for cb, ctx, wrapper in reversed(prepared.wrappers):
                run = _guarded(cb, ctx, wrapper, run, shape, failed)
            return run()
        finally:
            prepared.remove_hooks()
    return hook
