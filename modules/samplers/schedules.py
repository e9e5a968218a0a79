"""Schedule types (A1111's "Schedule type" dropdown) as data rows, and how each becomes a diffusers config.

A1111 builds a k-diffusion sigma list per schedule; diffusers schedulers choose their timesteps from config flags,
so each row names the flags that reproduce A1111's list (t = 999 is the noisiest of 1000 training steps):
Uniform and Normal = `timestep_spacing="linspace"` (the checkpoints' usual "leading" would never reach sigma_max);
Karras, Exponential, Polyexponential (A1111's rho 1) and Beta = their sigma flag plus "linspace" for the full
sigma range; SGM Uniform and Simple = "trailing"; DDIM = "leading" with `steps_offset` 1; KL Optimal = a custom
sigma list (`kl_optimal_sigmas`), and Align Your Steps NVIDIA's table for the model's family resampled to the step
count (`align_your_steps_sigmas`); only EulerDiscreteScheduler takes a custom list.

Whether a class honours a row is decided per sampler in `registry.py` (diffusers silently ignores config keys a
class does not know, so every claim there is checked against the class signature and by tests). Where these are
close rather than exact equivalents of A1111's lists: docs/compat.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

if TYPE_CHECKING:  # the functions take the scheduler's tensor; torch itself loads with the first job
    import torch

SigmaFn = Callable[["torch.Tensor", int, bool], list[float]]
"""(alphas_cumprod of the scheduler, steps, whether the model is SDXL) -> descending sigma list of steps + 1
values."""

AUTOMATIC = "automatic"
AUTOMATIC_LABEL = "Automatic"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule type.

    name: A1111's internal name ("karras"); label: what the UI and infotext show ("Karras").
    aliases: other accepted spellings (ComfyUI scheduler names, A1111 aliases). Matching is case-insensitive.
    config: scheduler config keys that select this schedule (only offered for classes that accept all of them).
    sigmas: custom sigma list for `set_timesteps(sigmas=...)`, for schedules no config flag can express.
    unsupported: when set, the schedule is known but never honoured; the text says why.
    """

    name: str
    label: str
    aliases: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    sigmas: SigmaFn | None = None
    unsupported: str = ""

    def spellings(self) -> tuple[str, ...]:
        return (self.name, self.label, *self.aliases)


def model_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """Sigma of every training timestep, ascending (index = timestep), as k-diffusion's CompVisDenoiser has them."""
    ac = alphas_cumprod.double().cpu().numpy()
    return np.sqrt((1.0 - ac) / ac)


def kl_optimal_sigmas(alphas_cumprod: torch.Tensor, steps: int, sdxl: bool = False) -> list[float]:
    """A1111/ComfyUI "KL Optimal": steps + 1 sigmas from sigma_max down to sigma_min (no trailing zero)."""
    sigmas = model_sigmas(alphas_cumprod)
    atan_min, atan_max = np.arctan(sigmas[0]), np.arctan(sigmas[-1])
    frac = np.arange(steps + 1, dtype=np.float64) / steps
    return np.tan(frac * atan_min + (1.0 - frac) * atan_max).tolist()


AYS_SD1 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
AYS_SDXL = (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029)
"""NVIDIA's published 10-step "Align Your Steps" sigma tables (research.nvidia.com/labs/toronto-ai/AlignYourSteps),
the ones A1111 uses: SDXL's for SDXL models, SD 1.5's for every other family."""


def align_your_steps_sigmas(alphas_cumprod: torch.Tensor, steps: int, sdxl: bool = False) -> list[float]:
    """A1111's "Align Your Steps": the family's table resampled to `steps` sigmas by linear interpolation of the
    log-sigmas over evenly spaced positions (NVIDIA's recipe for other step counts), then a final 0."""
    table = np.log(np.array(AYS_SDXL if sdxl else AYS_SD1, dtype=np.float64))
    positions = np.linspace(0.0, 1.0, len(table))
    resampled = np.exp(np.interp(np.linspace(0.0, 1.0, steps), positions, table))
    return [*resampled.tolist(), 0.0]


# Full-range spacing, see the module docstring: Euler-family classes then span t = 999 .. 0.
_FULL_RANGE = {"timestep_spacing": "linspace"}

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("uniform", "Uniform", config=_FULL_RANGE),
    ScheduleSpec("karras", "Karras", config={"use_karras_sigmas": True, **_FULL_RANGE}),
    ScheduleSpec("exponential", "Exponential", config={"use_exponential_sigmas": True, **_FULL_RANGE}),
    ScheduleSpec("polyexponential", "Polyexponential", config={"use_exponential_sigmas": True, **_FULL_RANGE}),
    ScheduleSpec("sgm_uniform", "SGM Uniform", aliases=("SGMUniform",), config={"timestep_spacing": "trailing"}),
    ScheduleSpec("kl_optimal", "KL Optimal", config=_FULL_RANGE, sigmas=kl_optimal_sigmas),
    ScheduleSpec("align_your_steps", "Align Your Steps", aliases=("ays",), config=_FULL_RANGE,
                 sigmas=align_your_steps_sigmas),
    ScheduleSpec("simple", "Simple", config={"timestep_spacing": "trailing"}),
    ScheduleSpec("normal", "Normal", config=_FULL_RANGE),
    ScheduleSpec("ddim", "DDIM", aliases=("ddim_uniform",), config={"timestep_spacing": "leading", "steps_offset": 1}),
    ScheduleSpec("beta", "Beta", config={"use_beta_sigmas": True, **_FULL_RANGE}),
    ScheduleSpec(
        "linear_quadratic", "Linear Quadratic",
        unsupported="it is a ComfyUI schedule with no A1111 equivalent and no diffusers implementation",
    ),
)
"""A1111's order (the UI dropdown order), then ComfyUI-only names."""

SIGMA_LIST_SCHEDULES = ("uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "kl_optimal",
                        "align_your_steps", "simple", "normal", "ddim")
"""The schedules with A1111's own sigma list in `sigma_schedules.py` (every A1111 schedule but Beta, which A1111
computes with scipy): the schedules of our sigma-list samplers."""

# Schedule tables per scheduler family: which schedule names each class honours (checked in tests by building).
EULER_FAMILY = (
    "uniform", "karras", "exponential", "polyexponential", "sgm_uniform", "simple", "normal", "ddim", "beta",
)
"""Euler, LMS, Heun, DPM2, DPM2 a, DPM++ SDE: spacing flags and the karras/exponential/beta sigma flags."""
EULER_CUSTOM_SIGMAS = (*EULER_FAMILY, "kl_optimal", "align_your_steps")
"""EulerDiscreteScheduler also accepts a custom sigma list."""
MULTISTEP_FAMILY = ("karras", "exponential", "polyexponential", "sgm_uniform", "simple", "beta")
"""DPMSolverMultistep / UniPC: their "linspace" spacing drops t=0 (it is SGM Uniform, not A1111's Uniform), and
their "leading" uses 1000 // (n + 1) steps, not A1111's DDIM list, so Uniform, Normal and DDIM are not offered."""

CONFIG_RESETS: Mapping[str, Any] = {
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "interpolation_type": "linear",
    "final_sigmas_type": "zero",
    "timestep_type": "discrete",
}
"""Schedule-related keys a checkpoint's scheduler config may carry (some SDXL configs set use_karras_sigmas).
They are reset before the chosen schedule is applied, so the schedule the user picked is the one that runs; only
keys the target class accepts are passed. A1111's k-diffusion lists always end at sigma 0 ("zero")."""
