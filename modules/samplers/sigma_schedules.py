"""A1111's sigma lists per schedule type, for the samplers in `sigma_samplers.py` (which take a sigma list directly).

The model's noise levels are k-diffusion's discrete schedule: sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for
the 1000 training timesteps, in float32 as A1111 holds them, with `sigma_to_t` / `t_to_sigma` interpolating
log-sigma linearly between neighbouring timesteps. Every list runs from high to low noise and ends with 0 (but KL
Optimal's, as in A1111).
(The diffusers rows reach the same lists through scheduler config flags instead: `schedules.py`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from modules.samplers.schedules import align_your_steps_sigmas
from modules.samplers.sigma_samplers import karras_sigmas


@dataclass(frozen=True)
class ModelSigmas:
    """The noise levels of a model's training timesteps (ascending: index = timestep) and the conversions."""

    sigmas: torch.Tensor

    @classmethod
    def from_alphas(cls, alphas_cumprod: torch.Tensor) -> "ModelSigmas":
        alphas = alphas_cumprod.float().cpu()
        return cls(((1 - alphas) / alphas) ** 0.5)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each sigma (log-sigma interpolation, clamped to the training range)."""
        log_sigmas = self.sigmas.log()
        log_sigma = sigma.float().cpu().log()
        low = (log_sigma[None] - log_sigmas[:, None]).ge(0).cumsum(0).argmax(0).clamp(max=len(log_sigmas) - 2)
        w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])).clamp(0, 1)
        return ((1 - w) * low + w * (low + 1)).view(sigma.shape)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        log_sigmas = self.sigmas.log()
        w = t.frac()
        return ((1 - w) * log_sigmas[t.floor().long()] + w * log_sigmas[t.ceil().long()]).exp()


def _zero(values: torch.Tensor) -> torch.Tensor:
    return torch.cat([values.float(), torch.zeros(1)])


def _uniform(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """Uniform (and Normal): n timesteps evenly spaced from 999 to 0."""
    return _zero(model.t_to_sigma(torch.linspace(len(model.sigmas) - 1, 0, n)))


def _sgm_uniform(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """SGM Uniform: n + 1 evenly spaced timesteps from 999 to 0 without the last."""
    ends = model.sigma_to_t(torch.tensor([model.sigma_max, model.sigma_min]))
    return _zero(model.t_to_sigma(torch.linspace(float(ends[0]), float(ends[1]), n + 1)[:-1]))


def _karras(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    return karras_sigmas(n, model.sigma_min, model.sigma_max)


def _exponential(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    return _zero(torch.linspace(math.log(model.sigma_max), math.log(model.sigma_min), n).exp())


def _polyexponential(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """Polyexponential with A1111's rho 1 (which equals Exponential up to rounding)."""
    ramp = torch.linspace(1, 0, n)
    low, high = math.log(model.sigma_min), math.log(model.sigma_max)
    return _zero(torch.exp(ramp * (high - low) + low))


def _kl_optimal(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """KL Optimal: n + 1 sigmas evenly spaced in arctan(sigma) from sigma_max down to sigma_min. A1111's list has
    no trailing 0, so the last step ends at sigma_min (kept: it is what A1111 runs)."""
    frac = torch.arange(n + 1, dtype=torch.float32) / n
    return (frac * math.atan(model.sigma_min) + (1 - frac) * math.atan(model.sigma_max)).tan()


def _align_your_steps(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    return torch.tensor(align_your_steps_sigmas(torch.empty(0), n, sdxl), dtype=torch.float32)


def _simple(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """Simple: every (1000 / n)-th training sigma from the top."""
    stride = len(model.sigmas) / n
    return _zero(torch.stack([model.sigmas[-(1 + int(i * stride))] for i in range(n)]))


def _ddim(model: ModelSigmas, n: int, sdxl: bool) -> torch.Tensor:
    """DDIM: training timesteps 1, 1 + 1000 // n, ... (A1111 keeps every one below 1000, so some step counts get
    one step more than asked, as in A1111)."""
    stride = max(len(model.sigmas) // n, 1)
    return _zero(model.sigmas[1::stride].flip(0))


SIGMA_SCHEDULES: dict[str, Callable[[ModelSigmas, int, bool], torch.Tensor]] = {
    "uniform": _uniform,
    "karras": _karras,
    "exponential": _exponential,
    "polyexponential": _polyexponential,
    "sgm_uniform": _sgm_uniform,
    "kl_optimal": _kl_optimal,
    "align_your_steps": _align_your_steps,
    "simple": _simple,
    "normal": _uniform,
    "ddim": _ddim,
}
"""Schedule name -> (model sigmas, steps, is SDXL) -> descending sigma list ending with 0. Beta is not here: A1111
computes it with scipy's beta quantiles, which is not a runtime dependency."""


def schedule_sigmas(name: str, alphas_cumprod: torch.Tensor, steps: int, sdxl: bool = False) -> torch.Tensor:
    """The A1111 sigma list of schedule `name` for a model with these alphas."""
    return SIGMA_SCHEDULES[name](ModelSigmas.from_alphas(alphas_cumprod), steps, sdxl)
