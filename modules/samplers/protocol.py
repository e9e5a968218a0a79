"""The contract between the sampler registry and the generation core.

The core never names a scheduler class: it asks the registry to `resolve(sampler, schedule)` and gets a
`SamplingMethod`, which builds a fresh, configured diffusers scheduler for each job (schedulers keep per-run
state such as `_step_index`, so instances are never shared between jobs).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

import torch
from diffusers import SchedulerMixin

from modules.samplers.tuning import DEFAULT_TUNING, SamplerSettings, Tuning


class SamplingMethod(Protocol):
    """A resolved (sampler, schedule) pair."""

    @property
    def label(self) -> str:
        """A1111 sampler name for the infotext, e.g. 'DPM++ 2M'."""

    @property
    def schedule_label(self) -> str:
        """A1111 schedule type for the infotext, e.g. 'Karras' ('Automatic' is already resolved)."""

    @property
    def on_timesteps(self) -> bool:
        """True for A1111's timestep samplers (DDIM, DDIM CFG++, PLMS, UniPC): A1111's CFG settings that compare a
        sigma compare the model's timestep for them."""

    @property
    def needs_uncond(self) -> bool:
        """True when the sampler steps along the unconditional prediction (CFG++): it is computed at every step,
        also at CFG scale 1."""

    def tune(self, settings: SamplerSettings) -> Tuning:
        """The eta, sigma churn and sigma noise the sampler runs with under these settings (only those A1111 hands
        this sampler; `tuning.eta` is None when it takes no eta) and the infotext keys that record them."""

    def build(self, base_config: Mapping[str, Any], steps: int, device: torch.device | str, *,
              noise_seeds: Sequence[int] | None = None, sdxl: bool = False,
              tuning: Tuning = DEFAULT_TUNING) -> SchedulerMixin:
        """New scheduler from the checkpoint's base config, with `set_timesteps` already called for `steps`.

        `noise_seeds` (one per image) seed noise that a scheduler draws internally rather than from the step
        generator (the SDE samplers' Brownian trees), so that it follows the image seeds as in A1111. `tuning`
        (from `tune`) sets eta, churn and sigma noise of the samplers that take them."""

    def step_kwargs(self, eta: float | None, generator: Any) -> dict[str, Any]:
        """Extra keyword arguments for `scheduler.step()` (eta, generator), only those the scheduler accepts.
        `generator`: a torch generator or one per image (our own schedulers also take Philox streams)."""


class SamplerResolver(Protocol):
    """What the core needs from the registry."""

    def resolve(self, sampler: str, schedule: str = "Automatic") -> SamplingMethod:
        """Parse any known spelling (A1111, legacy combined, k_ aliases, ComfyUI); raise UnknownSampler otherwise."""
