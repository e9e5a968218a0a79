"""A1111's "timesteps" samplers DDIM, DDIM CFG++ and PLMS as diffusers-shaped schedulers.

A1111 runs DDIM in the model's own (variance-preserving) space over a grid of training timesteps
`1, 1 + 1000 // n, 1 + 2 (1000 // n), ...` (below 1000). From the top of the grid it evaluates every grid point
but the lowest and steps each time to the next lower one, so the result sits at timestep 1 (alpha_bar of t=1), and
n steps make n - 1 model calls. img2img with t_enc = the A1111 step rule noises the init latents to grid point
t_enc and evaluates from grid point t_enc - 1 down.

Per evaluation at t with previous grid point t' (a = alpha_bar_t, a' = alpha_bar_t'):
    x0 = (x - sqrt(1 - a) eps) / sqrt(a)
    s  = eta sqrt((1 - a') / (1 - a) (1 - a / a'))
    x' = sqrt(a') x0 + sqrt(1 - a' - s^2) e + s noise
where e is the guided prediction eps for DDIM and the *unconditional* one for CFG++ (Chung et al. 2024), whose
guidance scale A1111 divides by 12.5 (`cfg_scale_multiplier`). A1111 draws the noise at every step and multiplies
it by 0 at eta 0; here it is drawn only when s > 0 (the same result: the per-image streams are not used after the
sampler). v-prediction models' output is turned into eps first.

PLMS (`TimestepPlmsScheduler`) walks the same grid with the same update (eta 0) but a multistep eps: the first step
evaluates twice (pseudo improved Euler: eps at t and at the point below, averaged), later ones combine the last
eps values with Adams-Bashforth weights of order 2, 3 and 4, as A1111's `plms` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import SchedulerMixin
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput

from modules.errors import InvalidRequest
from modules.samplers.sigma_scheduler import StepGenerator, generator_noise

CFGPP_SCALE_DIVISOR = 12.5
"""A1111 maps CFG scales 0..12.5 onto CFG++'s 0..1."""


@dataclass
class DdimStepOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def ddim_grid(steps: int, train_steps: int = 1000) -> torch.Tensor:
    """A1111's DDIM timestep grid, ascending: 1, 1 + stride, ... below `train_steps` (stride = 1000 // steps)."""
    stride = max(train_steps // steps, 1)
    return torch.clip(torch.arange(0, train_steps, stride) + 1, 0, train_steps - 1)


class _TimestepGrid(SchedulerMixin):
    """What A1111's timestep samplers share: the grid, where a run starts, img2img noise, the DDIM update."""

    order = 1
    accepts_philox = True
    """`step` takes Philox streams as generators (the NV source's per-step noise)."""
    needs_uncond = False
    """The loop passes the unconditional prediction to `step` (CFG++ steps along it)."""
    cfg_scale_multiplier = 1.0
    """Applied to the CFG scale by the loop."""
    label = "DDIM"

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int, *, prediction_type: str = "epsilon",
                 device: torch.device | str = "cpu") -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction type {prediction_type!r}")
        self.config = FrozenDict({"num_train_timesteps": len(alphas_cumprod), "prediction_type": prediction_type})
        self.alphas_cumprod = alphas_cumprod.float().cpu()
        self.prediction_type = prediction_type
        self.device = torch.device(device)
        self.steps = steps
        self.grid = ddim_grid(steps, len(alphas_cumprod))
        if len(self.grid) < 2:
            raise InvalidRequest(f"{self.label} needs at least 2 steps: it makes one model call fewer than its steps, "
                                 f"as in A1111 (got {steps}).")
        self.init_noise_sigma = 1.0
        self.begin_at(0)

    def begin_at(self, start_index: int, from_image: bool = False) -> torch.Tensor:
        """Evaluation timesteps, highest first. txt2img: from the top grid point down to grid point 1. img2img
        (`from_image`, A1111's t_enc = steps - 1 - start_index): the init is noised to grid point t_enc and grid
        points t_enc - 1 .. 1 run."""
        if from_image:
            self._noise_index = self.steps - 1 - start_index
            first = self._noise_index - 1
        else:
            self._noise_index = first = len(self.grid) - 1
        self._indices = list(range(first, 0, -1))
        self._calls = 0
        self.timesteps = self._plan().to(self.device)
        return self.timesteps

    def _plan(self) -> torch.Tensor:
        """The timestep of every model call."""
        return self.grid[self._indices] if self._indices else self.grid[:0]

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        return sample

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """img2img's start (at grid point t_enc, A1111) or the inpaint blend (at the given timestep)."""
        start = self._calls == 0 and len(self._indices) and bool((timesteps == self.timesteps[0]).all())
        t = int(self.grid[self._noise_index]) if start else int(timesteps.reshape(-1)[0])
        alpha = self.alphas_cumprod[t].to(noise.device)
        return original_samples * alpha.sqrt() + noise * (1 - alpha).sqrt()

    def _eps(self, output: torch.Tensor, sample: torch.Tensor, t: int) -> torch.Tensor:
        """The model output of an evaluation at timestep t as eps (v prediction: sqrt(a) v + sqrt(1 - a) x)."""
        if self.prediction_type == "epsilon":
            return output.float()
        alpha = self.alphas_cumprod[t]
        return alpha.sqrt().item() * output.float() + (1 - alpha).sqrt().item() * sample

    def _update(self, x: torch.Tensor, eps: torch.Tensor, index: int, direction: torch.Tensor | None = None,
                eta: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(x at grid point index - 1, pred_x0, noise scale s) from x at grid point `index`, with A1111's
        coefficients (alpha_prev and s in float64, used as float32 scalars)."""
        alpha = self.alphas_cumprod[int(self.grid[index])]
        alpha_prev = self.alphas_cumprod[int(self.grid[index - 1])].double()
        sigma = eta * ((1 - alpha_prev) / (1 - alpha.double()) * (1 - alpha.double() / alpha_prev)).sqrt()
        a_prev = torch.tensor(alpha_prev.float().item(), dtype=torch.float32)
        s_t = sigma.float().item()
        pred_x0 = (x - (1 - alpha).sqrt().item() * eps) / alpha.sqrt().item()
        scale = (1.0 - a_prev - torch.tensor(s_t, dtype=torch.float32) ** 2).sqrt().item()
        prev = a_prev.sqrt().item() * pred_x0 + scale * (eps if direction is None else direction)
        return prev, pred_x0, s_t

    def _pending_index(self) -> int:
        if self._calls >= len(self.timesteps):
            raise RuntimeError("the sampler has finished; build a new scheduler for another run")
        return self._indices[min(self._calls, len(self._indices) - 1)]

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)


class TimestepDdimScheduler(_TimestepGrid):
    """DDIM (`cfgpp=False`) or DDIM CFG++ over A1111's timestep grid (build a new one per job)."""

    def __init__(self, alphas_cumprod: torch.Tensor, steps: int, *, prediction_type: str = "epsilon",
                 cfgpp: bool = False, device: torch.device | str = "cpu") -> None:
        self.cfgpp = cfgpp
        self.needs_uncond = cfgpp
        self.cfg_scale_multiplier = 1 / CFGPP_SCALE_DIVISOR if cfgpp else 1.0
        self.label = "DDIM CFG++" if cfgpp else "DDIM"
        super().__init__(alphas_cumprod, steps, prediction_type=prediction_type, device=device)

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, eta: float = 0.0,
             generator: StepGenerator | Sequence[StepGenerator] | None = None,
             noise_pred_uncond: torch.Tensor | None = None,
             return_dict: bool = True) -> DdimStepOutput | tuple[torch.Tensor, torch.Tensor]:
        """One DDIM (CFG++) update from the pending grid point to the one below."""
        index = self._pending_index()
        self._calls += 1
        t = int(self.grid[index])
        eps = self._eps(model_output, sample, t)
        direction = None
        if self.cfgpp:
            if noise_pred_uncond is None:
                raise ValueError("DDIM CFG++ needs the unconditional prediction")
            direction = self._eps(noise_pred_uncond, sample, t)
        prev, pred_x0, s_t = self._update(sample, eps, index, direction, eta)
        if s_t:  # A1111 adds s_t * noise at every step; at eta 0 that is exactly 0, so no noise is drawn then
            prev = prev + s_t * generator_noise(generator)(sample)
        if not return_dict:
            return prev, pred_x0
        return DdimStepOutput(prev_sample=prev, pred_original_sample=pred_x0)


class TimestepPlmsScheduler(_TimestepGrid):
    """A1111's PLMS over its timestep grid (build a new one per job): one model call more than DDIM."""

    label = "PLMS"

    def _plan(self) -> torch.Tensor:
        """The first step evaluates at its grid point and at the one below; then one call per grid point."""
        if not self._indices:
            return self.grid[:0]
        first = self._indices[0]
        return torch.cat([self.grid[[first, first - 1]], self.grid[self._indices[1:]]])

    def begin_at(self, start_index: int, from_image: bool = False) -> torch.Tensor:
        self._old_eps: list[torch.Tensor] = []
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None
        return super().begin_at(start_index, from_image)

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor,
             return_dict: bool = True) -> DdimStepOutput | tuple[torch.Tensor, torch.Tensor]:
        """The next PLMS call: the first step's two evaluations, then Adams-Bashforth steps (no noise)."""
        if self._calls >= len(self.timesteps):
            raise RuntimeError("the sampler has finished; build a new scheduler for another run")
        call = self._calls
        self._calls += 1
        if call == 0:  # pseudo improved Euler, first half: a DDIM step to the point below, evaluated next
            index = self._indices[0]
            eps = self._eps(model_output, sample, int(self.grid[index]))
            self._first = (sample, eps)
            prev, pred_x0, _ = self._update(sample, eps, index)
            return self._output(prev, pred_x0, return_dict)
        if call == 1:  # second half: the average of both evaluations, from the step's start
            assert self._first is not None
            index = self._indices[0]
            start, first_eps = self._first
            eps_next = self._eps(model_output, sample, int(self.grid[index - 1]))
            prev, pred_x0, _ = self._update(start, (first_eps + eps_next) / 2, index)
            self._old_eps = [first_eps]
            return self._output(prev, pred_x0, return_dict)
        index = self._indices[call - 1]
        eps = self._eps(model_output, sample, int(self.grid[index]))
        old = self._old_eps
        if len(old) == 1:
            combined = (3 * eps - old[-1]) / 2
        elif len(old) == 2:
            combined = (23 * eps - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            combined = (55 * eps - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        prev, pred_x0, _ = self._update(sample, combined, index)
        self._old_eps = [*old, eps][-3:]
        return self._output(prev, pred_x0, return_dict)

    @staticmethod
    def _output(prev: torch.Tensor, pred_x0: torch.Tensor,
                return_dict: bool) -> DdimStepOutput | tuple[torch.Tensor, torch.Tensor]:
        return DdimStepOutput(prev_sample=prev, pred_original_sample=pred_x0) if return_dict else (prev, pred_x0)
