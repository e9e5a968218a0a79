"""`SigmaScheduler`: runs a sampler of `sigma_samplers.py` inside the shared denoising loop as a diffusers scheduler.

The loop asks a scheduler for its `timesteps`, scales the latents with `scale_model_input`, calls the UNet and hands
its output to `step`, which returns the next latents to evaluate. Here each "timestep" is one model evaluation the
sampler asked for (second-order samplers ask twice per step, as diffusers' Heun does): its fractional training
timestep from the model's sigma table, which the UNet takes as A1111's k-diffusion wrapper passes it. `step` turns
the UNet output into the denoised latents (eps or v prediction, k-diffusion's scalings) and sends them to the
sampler, whose next request becomes `prev_sample`.

Evaluations are known up front (from a dry run) for every sampler except DPM adaptive, whose error control decides
as it goes: then `extends_timesteps` is True and `timesteps` grows by one after each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from diffusers import SchedulerMixin
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput

from modules.core.philox import PhiloxGenerator
from modules.errors import InvalidRequest
from modules.samplers.sigma_samplers import BrownianNoise, NoiseFn, SamplerRun, evaluation_sigmas
from modules.samplers.sigma_schedules import ModelSigmas

RunFactory = Callable[[torch.Tensor, torch.Tensor, Any], SamplerRun]
"""(initial latents, descending sigma list ending with 0, noise) -> a sampler run; the noise is a `NoiseFn`, or a
`BrownianNoise` for the SDE samplers."""


@dataclass
class SigmaStepOutput(BaseOutput):
    """What `SigmaScheduler.step` returns: the next latents to evaluate (or the result) and the denoised estimate."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


StepGenerator = torch.Generator | PhiloxGenerator
"""A per-image noise stream our schedulers draw from: a torch generator, or a Philox stream (the NV source)."""


def _row_noise(generator: StepGenerator, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(generator, PhiloxGenerator):
        return generator.randn(shape)
    return torch.randn(shape, generator=generator, device=generator.device)


def generator_noise(generator: StepGenerator | Sequence[StepGenerator] | None) -> NoiseFn:
    """Noise drawn as diffusers' `randn_tensor` draws it: one draw per image from its own generator, or one draw of
    the whole batch from a single generator (the global RNG without one)."""
    def noise(x: torch.Tensor) -> torch.Tensor:
        if generator is None:
            return torch.randn_like(x)
        if isinstance(generator, (torch.Generator, PhiloxGenerator)):
            return _row_noise(generator, tuple(x.shape)).to(x.device)
        return torch.cat([_row_noise(g, (1, *x.shape[1:])).to(x.device) for g in generator])
    return noise


class SigmaScheduler(SchedulerMixin):
    """A diffusers-shaped scheduler around one sampler run (build a new one per job)."""

    accepts_philox = True
    """`step` takes Philox streams as generators (the NV source's per-step noise)."""

    def __init__(self, factory: RunFactory, alphas_cumprod: torch.Tensor, sigmas: torch.Tensor, *,
                 prediction_type: str = "epsilon", order: int = 1, adaptive: bool = False,
                 brownian_seeds: Sequence[int] | None = None, device: torch.device | str = "cpu") -> None:
        """`brownian_seeds` (one per image, or one for the batch): the noise comes from Brownian trees seeded with
        them (`BrownianNoise`, called with the step's sigmas) instead of the step generators."""
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction type {prediction_type!r}")
        self.config = FrozenDict({"num_train_timesteps": len(alphas_cumprod), "prediction_type": prediction_type})
        self.order = order
        """A1111's step multiplier: model calls per step for prompt schedules (2 for second-order samplers)."""
        self.extends_timesteps = adaptive
        self.alphas_cumprod = alphas_cumprod
        self.model = ModelSigmas.from_alphas(alphas_cumprod)
        self.prediction_type = prediction_type
        self.device = torch.device(device)
        self._factory = factory
        self._brownian_seeds = None if brownian_seeds is None else list(brownian_seeds)
        self._schedule = sigmas.float().cpu()
        self.begin_at(0)

    # -- the evaluation plan --------------------------------------------------------------------------------------

    def begin_at(self, start_index: int, from_image: bool = False) -> torch.Tensor:
        """Run from sigma `start_index` of the schedule (img2img runs the tail, as A1111 slices its sigma list, and
        txt2img the whole list: `from_image` changes nothing here) and return the evaluation timesteps."""
        self.sigmas = self._schedule[start_index:]
        self._run: SamplerRun | None = None
        self._result: torch.Tensor | None = None
        try:
            if self.extends_timesteps:  # the first evaluation is the top of the list; check the run can start
                next(self._factory(torch.zeros(1, 1, 1, 1), self.sigmas, torch.zeros_like))
                planned: Sequence[float] = [float(self.sigmas[0])]
            else:
                planned = evaluation_sigmas(lambda x, noise: self._factory(x, self.sigmas, noise))
        except ValueError as exc:
            raise InvalidRequest(f"This sampler cannot run these steps: {exc}.") from exc
        self._set_plan(torch.tensor(planned, dtype=torch.float32))
        self._current = self._eval_sigmas[0]
        return self.timesteps

    def _set_plan(self, eval_sigmas: torch.Tensor) -> None:
        self._eval_sigmas = eval_sigmas
        self.timesteps = self.model.sigma_to_t(eval_sigmas).to(self.device)

    @property
    def init_noise_sigma(self) -> float:
        """Noise scale of txt2img's initial latents: the top of the run's list (a sampler with sigma churn raises
        the level further before its first evaluation)."""
        return float(self.sigmas[0])

    def sigma_of(self, timestep: torch.Tensor) -> torch.Tensor:
        """The sigma of a planned evaluation timestep (exactly the sampler's, not a round trip through t)."""
        t = timestep.reshape(-1)[:1].to(self.timesteps.device, torch.float32)
        match = (self.timesteps == t).nonzero()
        if len(match):
            return self._eval_sigmas[int(match[0, 0])]
        return self.model.t_to_sigma(t.cpu())[0]

    # -- the diffusers scheduler interface -----------------------------------------------------------------------

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        """k-diffusion's c_in: x / sqrt(sigma^2 + 1) at the sigma about to be evaluated."""
        return sample / (self._current**2 + 1) ** 0.5

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """x + sigma * noise (img2img's start, the inpaint blend): variance-exploding noise, as k-diffusion adds.
        At the first timestep sigma is the top of the run's list, as A1111 noises its init latents (sigma churn
        raises the level after that)."""
        first = timesteps.reshape(-1)[:1].to(self.timesteps.device, torch.float32) == self.timesteps[:1]
        sigma = self.sigmas[0] if bool(first) else self.sigma_of(timesteps)
        return original_samples + noise * sigma.to(noise.device)

    def _denoised(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        sigma = self._current.to(sample.device)
        if self.prediction_type == "epsilon":
            return sample - sigma * model_output
        # v prediction (sigma_data 1): c_skip x + c_out v
        return sample / (sigma**2 + 1) - model_output * sigma / (sigma**2 + 1) ** 0.5

    def start(self, sample: torch.Tensor,
              generator: StepGenerator | Sequence[StepGenerator] | None = None) -> torch.Tensor:
        """Begin the run on the initial latents and return the latents of its first evaluation: the same ones,
        except with sigma churn, which adds noise before the first model call (the loop calls this capability
        before its first step; `step` starts the run itself when nobody did)."""
        sigmas = self.sigmas.to(sample.device)
        noise: Any = generator_noise(generator)
        if self._brownian_seeds is not None:
            noise = BrownianNoise(sample, sigmas[sigmas > 0].min(), sigmas.max(), self._brownian_seeds)
        self._run = self._factory(sample, sigmas, noise)
        first, sigma = next(self._run)
        self._current = sigma.float().cpu()
        return first

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor,
             generator: StepGenerator | Sequence[StepGenerator] | None = None,
             return_dict: bool = True) -> SigmaStepOutput | tuple[torch.Tensor, torch.Tensor]:
        """Send the denoised latents of the pending evaluation to the sampler; return its next request."""
        if self._result is not None:
            raise RuntimeError("the sampler has finished; build a new scheduler for another run")
        if self._run is None:  # driven without `start` (the sampler's first request is the given latents)
            self.start(sample, generator)
        denoised = self._denoised(model_output.float(), sample)
        assert self._run is not None
        try:
            following, sigma = self._run.send((denoised, sample))
            self._current = sigma.float().cpu()
            if self.extends_timesteps:
                self._set_plan(torch.cat([self._eval_sigmas, self._current.reshape(1)]))
        except StopIteration as stop:
            following = self._result = stop.value
        if not return_dict:
            return following, denoised
        return SigmaStepOutput(prev_sample=following, pred_original_sample=denoised)

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)
