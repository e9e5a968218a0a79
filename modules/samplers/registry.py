"""The sampler registry: A1111 sampler names -> configured diffusers schedulers.

Samplers are data: one `SamplerSpec` row per A1111 sampler, naming the diffusers class, its config, every
accepted spelling and the schedule types the class truly honours. Where no diffusers scheduler reproduces A1111's
sampler, the row names a `SigmaAlgorithm` instead: a function of `sigma_samplers.py` run over A1111's sigma list
(`sigma_schedules.py`) by `sigma_scheduler.SigmaScheduler`. A sampler neither can honour is a row too
(`unsupported`, with the reason), so asking for it gives a precise message instead of a silent substitute.

Name parsing follows A1111's `get_sampler_and_scheduler`: a trailing schedule label is stripped from combined
names ("DPM++ 2M Karras" -> "DPM++ 2M" + Karras), except that an explicit non-Automatic schedule argument wins
over the one in the name. Matching is case-insensitive and accepts A1111 labels, A1111 `k_` aliases (`_ka` means
Karras, `_exp` Exponential) and ComfyUI sampler/scheduler names.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from modules.errors import InvalidRequest, UnknownSampler
from modules.samplers.schedules import (
    AUTOMATIC,
    AUTOMATIC_LABEL,
    CONFIG_RESETS,
    EULER_CUSTOM_SIGMAS,
    EULER_FAMILY,
    MULTISTEP_FAMILY,
    SCHEDULES,
    SIGMA_LIST_SCHEDULES,
    ScheduleSpec,
)
from modules.samplers.tuning import CHURN, DEFAULT_TUNING, ETA, ETA_DDIM, S_NOISE, SamplerSettings, Tuning, tune

if TYPE_CHECKING:  # torch, diffusers and the sampler functions load with the first job, not at start-up
    import torch
    from diffusers import SchedulerMixin

    from modules.samplers.sigma_samplers import Churn, SamplerRun
    from modules.samplers.sigma_scheduler import SigmaScheduler

log = logging.getLogger(__name__)

# Legacy alias suffixes (k_dpmpp_2m_ka, k_dpmpp_3m_sde_exp) -> schedule name.
_ALIAS_SUFFIXES = {"_ka": "karras", "_exp": "exponential"}


TunedFactory = Callable[["torch.Tensor", "torch.Tensor", Any, Tuning], "SamplerRun"]
"""(initial latents, sigma list, noise, tuning) -> a sampler run (see `sigma_scheduler.RunFactory`)."""


@dataclass(frozen=True)
class SigmaAlgorithm:
    """A sampler run over a sigma list (`sigma_samplers.py`): `factory(x, sigmas, noise, tuning)` starts it.
    `order` is A1111's step multiplier for prompt schedules (2 for its "second_order" samplers); `adaptive` when
    the number of model calls is decided while sampling (DPM adaptive)."""

    factory: TunedFactory
    order: int = 1
    adaptive: bool = False
    brownian: bool = False
    """Noise from a Brownian tree per image, seeded with the image seeds (A1111's SDE samplers)."""
    discard_penultimate: bool = False
    """A1111's "discard next to last sigma": the list is built for steps + 1 and its next-to-last sigma dropped."""


@dataclass(frozen=True)
class TimestepAlgorithm:
    """One of A1111's timestep-grid samplers (`timestep_samplers.py`): DDIM, DDIM CFG++ (`cfgpp`) or PLMS (`plms`)."""

    cfgpp: bool = False
    plms: bool = False


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler row.

    name: A1111 label ("DPM++ 2M"). scheduler_cls: diffusers class (or its name in `diffusers`, imported with the
    first job; such rows are checked by `SamplerRegistry.verify`); or None with `algorithm` (our own sampler over
    a sigma list), or None with `unsupported` saying why it cannot run. config: class config that makes it this
    sampler. aliases: A1111 `k_` aliases
    and ComfyUI names. default_schedule: what A1111's "Automatic" means for it. schedules: the schedule names the
    class honours. flags: descriptive ("ancestral", "sde", "second_order", "brownian"; "timestep": one of A1111's
    timestep samplers, whose model A1111 calls with timesteps, not sigmas). takes: the A1111 settings
    the sampler takes (`tuning.py`: ETA, ETA_DDIM, CHURN, S_NOISE). churned: for a diffusers row that takes sigma
    churn, our sampler that runs instead while churn is on (diffusers churns after the model call, A1111 before).
    """

    name: str
    scheduler_cls: type[SchedulerMixin] | str | None
    config: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    default_schedule: str = "uniform"
    schedules: tuple[str, ...] = EULER_FAMILY
    flags: frozenset[str] = frozenset()
    unsupported: str = ""
    algorithm: SigmaAlgorithm | TimestepAlgorithm | None = None
    takes: frozenset[str] = frozenset()
    churned: SigmaAlgorithm | None = None

    @property
    def supported(self) -> bool:
        return self.scheduler_cls is not None or self.algorithm is not None

    @property
    def diffusers_class(self) -> type[SchedulerMixin]:
        """The row's diffusers class (a named one is imported now)."""
        if isinstance(self.scheduler_cls, str):
            import diffusers

            cls: type[SchedulerMixin] = getattr(diffusers, self.scheduler_cls)
            return cls
        assert self.scheduler_cls is not None, f"sampler {self.name!r} has no diffusers class"
        return self.scheduler_cls

    @property
    def class_name(self) -> str:
        cls = self.scheduler_cls
        return cls if isinstance(cls, str) else getattr(cls, "__name__", "?")


def _row(name: str, cls: str | None, aliases: tuple[str, ...], **kw: Any) -> SamplerSpec:
    return SamplerSpec(name=name, scheduler_cls=cls, aliases=aliases, **kw)


SIGMA_LISTS = SIGMA_LIST_SCHEDULES
"""Schedules of the sigma-list samplers: every A1111 schedule but Beta."""
ANCESTRAL = frozenset({ETA, S_NOISE})
"""A1111 hands the ancestral and SDE samplers eta and sigma noise."""


def _churn(tuning: Tuning) -> Churn:
    from modules.samplers.sigma_samplers import Churn

    return Churn(tuning.s_churn, tuning.s_tmin, tuning.s_tmax, tuning.s_noise)


def _eta(tuning: Tuning) -> float:
    return 1.0 if tuning.eta is None else tuning.eta


def _algorithm(name: str) -> Callable[..., SamplerRun]:
    """A sampler function of `sigma_samplers.py` by name (imported with the first job, not at start-up)."""
    from modules.samplers import sigma_samplers

    function: Callable[..., SamplerRun] = getattr(sigma_samplers, name)
    return function


def _dpm_fast(x: torch.Tensor, sigmas: torch.Tensor, noise: Any, tuning: Tuning) -> SamplerRun:
    return _algorithm("dpm_fast")(x, float(sigmas[-2]), float(sigmas[0]), len(sigmas) - 1, noise, eta=_eta(tuning),
                                  s_noise=tuning.s_noise)


def _dpm_adaptive(x: torch.Tensor, sigmas: torch.Tensor, noise: Any, tuning: Tuning) -> SamplerRun:
    return _algorithm("dpm_adaptive")(x, float(sigmas[-2]), float(sigmas[0]), noise, eta=_eta(tuning))


def _plain(name: str) -> TunedFactory:
    """A sampler that takes none of A1111's settings."""
    return lambda x, sigmas, noise, tuning: _algorithm(name)(x, sigmas, noise)


def _eta_only(name: str) -> TunedFactory:
    """A sampler that A1111 hands eta alone (Euler a)."""
    return lambda x, sigmas, noise, tuning: _algorithm(name)(x, sigmas, noise, eta=_eta(tuning))


def _ancestral(name: str, **fixed: Any) -> TunedFactory:
    """A sampler that takes eta and sigma noise (A1111's ancestral and SDE samplers)."""
    return lambda x, sigmas, noise, tuning: _algorithm(name)(x, sigmas, noise, eta=_eta(tuning),
                                                             s_noise=tuning.s_noise, **fixed)


def _churned(name: str) -> TunedFactory:
    """A sampler that takes sigma churn, tmin, tmax and noise (Euler, Heun, DPM2)."""
    return lambda x, sigmas, noise, tuning: _algorithm(name)(x, sigmas, noise, churn=_churn(tuning))


A1111_SAMPLERS: tuple[SamplerSpec, ...] = (
    # diffusers' DPMSolverMultistepScheduler differs from A1111's DPM++ 2M (its last steps and its sigma grid):
    # ours, over A1111's sigma lists.
    _row("DPM++ 2M", None, ("k_dpmpp_2m", "dpmpp_2m"), default_schedule="karras", schedules=SIGMA_LISTS,
         algorithm=SigmaAlgorithm(_plain("dpmpp_2m"))),
    # The SDE samplers: ours, with A1111's Brownian-tree noise per image (diffusers' DPMSolverSDEScheduler steps
    # between its own timesteps, and its 2M/3M SDE draw from the step generators, which give other pictures).
    _row("DPM++ SDE", None, ("k_dpmpp_sde", "dpmpp_sde", "dpmpp_sde_gpu"), default_schedule="karras",
         schedules=SIGMA_LISTS, flags=frozenset({"sde", "second_order", "brownian"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpmpp_sde"), order=2, brownian=True)),
    _row("DPM++ 2M SDE", None, ("k_dpmpp_2m_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
         default_schedule="exponential", schedules=SIGMA_LISTS, flags=frozenset({"sde", "brownian"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpmpp_2m_sde"), brownian=True)),
    _row("DPM++ 2M SDE Heun", None, ("k_dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu"),
         default_schedule="exponential", schedules=SIGMA_LISTS, flags=frozenset({"sde", "brownian"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpmpp_2m_sde", solver="heun"), brownian=True)),
    # diffusers has no ancestral single-step DPM++ 2S (DPMSolverSinglestepScheduler is a different, non-ancestral
    # method): ours.
    _row("DPM++ 2S a", None, ("k_dpmpp_2s_a", "dpmpp_2s_ancestral"), default_schedule="karras",
         schedules=SIGMA_LISTS, flags=frozenset({"ancestral", "second_order"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpmpp_2s_ancestral"), order=2)),
    # Third-order multistep SDE DPM-Solver++ with A1111's Brownian-tree noise and its "discard next to last sigma".
    _row("DPM++ 3M SDE", None, ("k_dpmpp_3m_sde", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
         default_schedule="exponential", schedules=SIGMA_LISTS, flags=frozenset({"sde", "brownian"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpmpp_3m_sde"), brownian=True, discard_penultimate=True)),
    # diffusers' EulerAncestralDiscreteScheduler interpolates sigma linearly between timesteps (A1111 in log sigma)
    # and draws its noise from torch generators only: ours, over A1111's sigma lists. A1111 hands it eta only.
    _row("Euler a", None, ("k_euler_a", "k_euler_ancestral", "euler_ancestral"), schedules=SIGMA_LISTS,
         flags=frozenset({"ancestral"}), takes=frozenset({ETA}),
         algorithm=SigmaAlgorithm(_eta_only("euler_ancestral"))),
    # Euler and Heun: diffusers' schedulers equal A1111's to float rounding; with sigma churn on, ours.
    _row("Euler", "EulerDiscreteScheduler", ("k_euler", "euler"), schedules=EULER_CUSTOM_SIGMAS,
         takes=frozenset({CHURN}), churned=SigmaAlgorithm(_churned("euler"))),
    _row("LMS", "LMSDiscreteScheduler", ("k_lms", "lms")),
    _row("Heun", "HeunDiscreteScheduler", ("k_heun", "heun"), flags=frozenset({"second_order"}),
         takes=frozenset({CHURN}), churned=SigmaAlgorithm(_churned("heun"), order=2)),
    # DPM2 and DPM2 a: A1111 discards the next-to-last sigma (diffusers' KDPM2 schedulers do not, and interpolate
    # their midpoints in timesteps): ours.
    _row("DPM2", None, ("k_dpm_2", "dpm_2"), default_schedule="karras", schedules=SIGMA_LISTS,
         flags=frozenset({"second_order"}), takes=frozenset({CHURN}),
         algorithm=SigmaAlgorithm(_churned("dpm_2"), order=2, discard_penultimate=True)),
    _row("DPM2 a", None, ("k_dpm_2_a", "dpm_2_ancestral"), default_schedule="karras", schedules=SIGMA_LISTS,
         flags=frozenset({"ancestral", "second_order"}), takes=ANCESTRAL,
         algorithm=SigmaAlgorithm(_ancestral("dpm_2_ancestral"), order=2, discard_penultimate=True)),
    # DPM fast / adaptive run between the schedule's end sigmas (the model's whole range for txt2img) on their own
    # log-sigma grid, so only the Uniform list is offered; A1111 runs them with eta 1.
    _row("DPM fast", None, ("k_dpm_fast", "dpm_fast"), schedules=("uniform",), flags=frozenset({"ancestral"}),
         takes=ANCESTRAL, algorithm=SigmaAlgorithm(_dpm_fast)),
    _row("DPM adaptive", None, ("k_dpm_ad", "dpm_adaptive"), schedules=("uniform",), flags=frozenset({"ancestral"}),
         takes=frozenset({ETA}), algorithm=SigmaAlgorithm(_dpm_adaptive, adaptive=True)),
    _row("Restart", None, ("restart",), default_schedule="karras", schedules=SIGMA_LISTS,
         flags=frozenset({"second_order"}),
         algorithm=SigmaAlgorithm(_plain("restart"), order=2)),
    # A1111's DDIM/PLMS ignore the schedule dropdown and use every 1000 // n-th timestep from 1: the "DDIM" row.
    # DDIM is A1111's own timestep loop (n - 1 model calls ending at t = 1), which diffusers' DDIMScheduler is not.
    _row("DDIM", None, ("ddim",), default_schedule="ddim", schedules=("ddim",), takes=frozenset({ETA_DDIM}),
         flags=frozenset({"timestep"}), algorithm=TimestepAlgorithm(cfgpp=False)),
    # CFG++ steps along the unconditional prediction, which no diffusers scheduler does: A1111's timestep DDIM.
    _row("DDIM CFG++", None, ("ddim_cfgpp",), default_schedule="ddim", schedules=("ddim",),
         flags=frozenset({"cfgpp", "timestep"}), takes=frozenset({ETA_DDIM}), algorithm=TimestepAlgorithm(cfgpp=True)),
    # A1111's PLMS: the timestep grid, a doubled first step, then Adams-Bashforth (diffusers' PNDM is another PLMS).
    _row("PLMS", None, ("plms",), default_schedule="ddim", schedules=("ddim",), flags=frozenset({"timestep"}),
         algorithm=TimestepAlgorithm(plms=True)),
    # A1111 UniPC: order 3, time-uniform steps (evaluated at t = 999 .. 999/n, i.e. SGM Uniform). A1111's default
    # variant bh1 is not used: diffusers' bh1 divides by an infinite log-SNR step on the final step to sigma 0 and
    # returns NaN, so the variant is bh2 (diffusers' default, also an A1111 option). ComfyUI's "uni_pc" means bh1
    # and is therefore not an alias; its "uni_pc_bh2" is.
    _row("UniPC", "UniPCMultistepScheduler", ("unipc", "uni_pc_bh2"), config={"solver_order": 3, "solver_type": "bh2"},
         default_schedule="sgm_uniform", schedules=MULTISTEP_FAMILY, flags=frozenset({"timestep"})),
    # LCMScheduler has one fixed schedule: trailing over its 50-step distillation grid, i.e. SGM Uniform rounded to
    # multiples of 20 (A1111's LCM defaults to Uniform, which diffusers' LCMScheduler cannot follow).
    _row("LCM", "LCMScheduler", ("k_lcm", "lcm"), default_schedule="sgm_uniform", schedules=("sgm_uniform",)),
)
"""A1111 1.10's sampler list, in its UI order."""


def _norm(name: str) -> str:
    return " ".join(name.split()).lower()


def _init_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls).parameters)


def _call_params(fn: Any) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


@dataclass(frozen=True)
class ResolvedSampler:
    """A (sampler, schedule) pair the registry has checked; implements `protocol.SamplingMethod`."""

    sampler: SamplerSpec
    schedule: ScheduleSpec

    @property
    def label(self) -> str:
        return self.sampler.name

    @property
    def schedule_label(self) -> str:
        return self.schedule.label

    @property
    def on_timesteps(self) -> bool:
        return "timestep" in self.sampler.flags

    @property
    def scheduler_cls(self) -> type[SchedulerMixin]:
        """The class `build` returns: the row's diffusers class, or ours (`SigmaScheduler` for a sigma-list sampler,
        `TimestepDdimScheduler` for A1111's timestep DDIM)."""
        from modules.samplers.sigma_scheduler import SigmaScheduler
        from modules.samplers.timestep_samplers import TimestepDdimScheduler, TimestepPlmsScheduler

        if isinstance(self.sampler.algorithm, TimestepAlgorithm):
            return TimestepPlmsScheduler if self.sampler.algorithm.plms else TimestepDdimScheduler
        if self.sampler.algorithm is not None:
            return SigmaScheduler
        return self.sampler.diffusers_class

    @cached_property
    def step_params(self) -> frozenset[str]:
        """Keyword arguments the class's `step()` accepts (inspected once per resolved pair)."""
        return _call_params(self.scheduler_cls.step)

    @property
    def needs_uncond(self) -> bool:
        algorithm = self.sampler.algorithm
        return isinstance(algorithm, TimestepAlgorithm) and algorithm.cfgpp

    def tune(self, settings: SamplerSettings) -> Tuning:
        """The eta, churn and sigma noise this sampler runs with (only those A1111 hands it) and their infotext."""
        return tune(self.sampler.takes, settings)

    def _algorithm(self, tuning: Tuning) -> SigmaAlgorithm | TimestepAlgorithm | None:
        """The row's own sampler, or its churned one while sigma churn is on."""
        if self.sampler.churned is not None and tuning.s_churn:
            return self.sampler.churned
        return self.sampler.algorithm

    def scheduler_config(self, base_config: Mapping[str, Any]) -> dict[str, Any]:
        """The checkpoint's config (prediction type, betas) with the sampler's and schedule's keys applied."""
        accepted = _init_params(self.scheduler_cls)
        resets = {k: v for k, v in CONFIG_RESETS.items() if k in accepted}
        return {**dict(base_config), **resets, **self.sampler.config, **self.schedule.config}

    def build(
        self, base_config: Mapping[str, Any], steps: int, device: torch.device | str,
        *, noise_seeds: Sequence[int] | None = None, sdxl: bool = False, tuning: Tuning = DEFAULT_TUNING,
    ) -> SchedulerMixin:
        """A new scheduler with `set_timesteps` done for `steps`.

        noise_seeds: seeds of the Brownian trees of the SDE samplers, one per image of the batch (as A1111 seeds
        them from the image seeds) or one for the whole batch; without them the trees are seeded with 0, so runs
        stay reproducible. Other samplers ignore it (their noise comes from the generator in `step_kwargs`).
        sdxl: whether the model is SDXL (schedules whose sigma table depends on the family: Align Your Steps).
        tuning: from `tune` (eta, churn, sigma noise); DDIM's eta goes to `step_kwargs` instead.
        """
        if steps < 1:
            raise InvalidRequest(f"Sampling needs at least 1 step, got {steps}.")
        from modules.samplers.timestep_samplers import TimestepDdimScheduler, TimestepPlmsScheduler

        algorithm = self._algorithm(tuning)
        if isinstance(algorithm, TimestepAlgorithm) and algorithm.plms:
            return TimestepPlmsScheduler(self._alphas(base_config), steps, device=device,
                                         prediction_type=self._prediction(base_config))
        if isinstance(algorithm, TimestepAlgorithm):
            return TimestepDdimScheduler(self._alphas(base_config), steps, cfgpp=algorithm.cfgpp, device=device,
                                         prediction_type=self._prediction(base_config))
        if algorithm is not None:
            return self._build_sigma_scheduler(algorithm, base_config, steps, device, sdxl, noise_seeds, tuning)
        scheduler = self.scheduler_cls.from_config(self.scheduler_config(base_config))
        try:
            if self.schedule.sigmas is not None:
                sigmas = self.schedule.sigmas(scheduler.alphas_cumprod, steps, sdxl)
                scheduler.set_timesteps(sigmas=sigmas, device=device)
            else:
                scheduler.set_timesteps(steps, device=device)
        except ValueError as exc:
            raise InvalidRequest(f"Sampler '{self.label}' cannot run {steps} steps: {exc}") from exc
        return scheduler

    def _build_sigma_scheduler(self, algorithm: SigmaAlgorithm, base_config: Mapping[str, Any], steps: int,
                               device: torch.device | str, sdxl: bool, noise_seeds: Sequence[int] | None,
                               tuning: Tuning) -> SigmaScheduler:
        """Our sampler over A1111's sigma list of the schedule, with the checkpoint's noise levels (betas) and
        prediction type."""
        import torch

        from modules.samplers.sigma_scheduler import SigmaScheduler
        from modules.samplers.sigma_schedules import schedule_sigmas

        if self.schedule.name not in SIGMA_LISTS:  # a diffusers row's churned sampler (Euler/Heun + Beta)
            raise InvalidRequest(f"Sampler '{self.label}' with sigma churn cannot follow the '{self.schedule_label}' "
                                 "schedule; set sigma churn to 0 or choose another schedule type.")
        alphas = self._alphas(base_config)
        if algorithm.discard_penultimate:
            sigmas = schedule_sigmas(self.schedule.name, alphas, steps + 1, sdxl)
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        else:
            sigmas = schedule_sigmas(self.schedule.name, alphas, steps, sdxl)
        seeds = (list(noise_seeds) if noise_seeds else [0]) if algorithm.brownian else None
        factory = algorithm.factory
        return SigmaScheduler(lambda x, s, noise: factory(x, s, noise, tuning), alphas, sigmas,
                              prediction_type=self._prediction(base_config),
                              order=algorithm.order, adaptive=algorithm.adaptive, brownian_seeds=seeds,
                              device=device)

    @staticmethod
    def _alphas(base_config: Mapping[str, Any]) -> torch.Tensor:
        """The checkpoint's alpha_bar per training timestep (from its betas config)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(dict(base_config)).alphas_cumprod

    def _prediction(self, base_config: Mapping[str, Any]) -> str:
        prediction = str(base_config.get("prediction_type", "epsilon"))
        if prediction not in ("epsilon", "v_prediction"):
            raise InvalidRequest(f"Sampler '{self.label}' cannot run a model that predicts {prediction!r}.")
        return prediction

    def step_kwargs(self, eta: float | None, generator: Any) -> dict[str, Any]:
        """eta (default 0.0, A1111's DDIM eta) and generator, each only where `step()` accepts it."""
        params = self.step_params
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = 0.0 if eta is None else float(eta)
        elif eta is not None:
            log.debug("sampler %s has no eta; ignoring eta=%s", self.label, eta)
        if "generator" in params and generator is not None:
            kwargs["generator"] = generator
        return kwargs


class SamplerRegistry:
    """Sampler and schedule rows, name parsing and validation. Build one with `default_registry()`."""

    def __init__(self) -> None:
        self._samplers: dict[str, SamplerSpec] = {}
        self._schedules: dict[str, ScheduleSpec] = {}
        self._sampler_names: dict[str, str] = {}
        self._schedule_names: dict[str, str] = {}

    # -- registration -------------------------------------------------------------------------------------------

    def add_schedule(self, spec: ScheduleSpec) -> None:
        """Register a schedule type; samplers opt in by listing its name in `SamplerSpec.schedules`."""
        self._claim(self._schedule_names, spec.name, spec.spellings(), "schedule")
        self._schedules[spec.name] = spec

    def add(self, spec: SamplerSpec) -> None:
        """Register a sampler (after the schedules it lists). Raises ValueError for rows that cannot work."""
        self._check_sampler(spec)
        self._claim(self._sampler_names, spec.name, (spec.name, *spec.aliases), "sampler")
        self._samplers[spec.name] = spec

    def _claim(self, table: dict[str, str], owner: str, spellings: Sequence[str], kind: str) -> None:
        for spelling in spellings:
            key = _norm(spelling)
            if table.get(key, owner) != owner:
                raise ValueError(f"{kind} spelling {spelling!r} already belongs to {table[key]!r}")
        for spelling in spellings:
            table[_norm(spelling)] = owner

    def _check_sampler(self, spec: SamplerSpec) -> None:
        """Every config key must be one the class accepts: diffusers silently ignores unknown keys."""
        if spec.scheduler_cls is None and spec.algorithm is None:
            if not spec.unsupported:
                raise ValueError(f"sampler {spec.name!r} has no scheduler class and no reason")
            return
        if spec.default_schedule not in spec.schedules:
            raise ValueError(f"sampler {spec.name!r}: default schedule {spec.default_schedule!r} not in its schedules")
        if isinstance(spec.algorithm, TimestepAlgorithm):
            if spec.schedules != ("ddim",):
                raise ValueError(f"sampler {spec.name!r}: A1111's timestep DDIM has only its own grid")
            return
        if spec.scheduler_cls is None:
            missing = [name for name in spec.schedules if name not in SIGMA_LISTS or name not in self._schedules]
            if missing:
                raise ValueError(f"sampler {spec.name!r}: no sigma list for schedules {missing}")
            return
        for name in spec.schedules:
            schedule = self._schedules.get(name)
            if schedule is None or schedule.unsupported:
                raise ValueError(f"sampler {spec.name!r}: schedule {name!r} is not a usable schedule")
        if not isinstance(spec.scheduler_cls, str):  # a named class is checked by `verify` (it imports diffusers)
            self._check_class(spec)

    def _check_class(self, spec: SamplerSpec) -> None:
        cls = spec.diffusers_class
        accepted = _init_params(cls)
        for name in spec.schedules:
            schedule = self._schedules[name]
            unknown = set(spec.config) | set(schedule.config)
            unknown -= accepted
            if unknown:
                raise ValueError(f"{spec.class_name} does not accept {sorted(unknown)} ({name})")
            if schedule.sigmas is not None and "sigmas" not in _call_params(cls.set_timesteps):
                raise ValueError(f"{spec.class_name} cannot take a custom sigma list ({name})")

    def verify(self) -> None:
        """Check every row's diffusers class against its config and schedules now (`add` defers this for classes
        named by a string, so that start-up does not import diffusers). Raises ValueError; the tests call it."""
        for spec in self._samplers.values():
            if spec.scheduler_cls is not None and spec.algorithm is None:
                self._check_class(spec)

    # -- listing ------------------------------------------------------------------------------------------------

    def visible(self) -> list[str]:
        """Sampler names that can run, in registration (A1111 UI) order: for dropdowns."""
        return [s.name for s in self._samplers.values() if s.supported]

    def all_known(self) -> list[str]:
        """Every known sampler name, including those rejected because they cannot run here."""
        return list(self._samplers)

    def schedule_labels(self) -> list[str]:
        """Every known schedule label, "Automatic" first."""
        return [AUTOMATIC_LABEL, *(s.label for s in self._schedules.values())]

    def schedules_for(self, sampler: str) -> list[str]:
        """Schedule labels valid for `sampler` ("Automatic" first, then A1111's order)."""
        spec = self._supported_sampler(self._lookup_sampler(sampler)[0], sampler)
        return [AUTOMATIC_LABEL, *(s.label for s in self._schedules.values() if s.name in spec.schedules)]

    def sampler(self, name: str) -> SamplerSpec:
        """The row for any spelling of a sampler name (supported or not)."""
        return self._lookup_sampler(name)[0]

    # -- resolving ----------------------------------------------------------------------------------------------

    def resolve(self, sampler: str, schedule: str = AUTOMATIC_LABEL) -> ResolvedSampler:
        """Parse any known spelling; raise UnknownSampler for unknown names and combinations diffusers can't run."""
        spec, schedule_in_name = self._lookup_sampler(sampler)
        spec = self._supported_sampler(spec, sampler)
        explicit = self._lookup_schedule(schedule)
        wanted = explicit if explicit != AUTOMATIC else (schedule_in_name or AUTOMATIC)
        if wanted == AUTOMATIC:
            wanted = spec.default_schedule
        sched = self._schedules[wanted]
        if sched.name not in spec.schedules:
            raise UnknownSampler(self._combination_message(spec, sched))
        return ResolvedSampler(spec, sched)

    def _lookup_sampler(self, name: str) -> tuple[SamplerSpec, str | None]:
        """(row, schedule named inside the sampler name or None); UnknownSampler if nothing matches."""
        key = _norm(name or "")
        if key in self._sampler_names:
            return self._samplers[self._sampler_names[key]], None
        for suffix, schedule in _ALIAS_SUFFIXES.items():
            base = key.removesuffix(suffix)
            if base != key and base in self._sampler_names:
                return self._samplers[self._sampler_names[base]], schedule
        for spelling, schedule in self._schedule_names.items():  # "DPM++ 2M Karras", "Euler SGM Uniform"
            base = key.removesuffix(" " + spelling)
            if base != key and base in self._sampler_names:
                return self._samplers[self._sampler_names[base]], schedule
        raise UnknownSampler(f"Unknown sampler '{name}'; choose one of: {', '.join(self.visible())}.")

    def _schedule_key(self, spelling: str) -> str | None:
        return self._schedule_names.get(_norm(spelling))

    def _lookup_schedule(self, name: str | None) -> str:
        key = _norm(name or "")
        if key in ("", AUTOMATIC):
            return AUTOMATIC
        found = self._schedule_key(key)
        if found is None:
            raise UnknownSampler(f"Unknown schedule type '{name}'; choose one of: {', '.join(self.schedule_labels())}.")
        return found

    def _supported_sampler(self, spec: SamplerSpec, asked: str) -> SamplerSpec:
        if spec.supported:
            return spec
        shown = f"'{asked}'" if _norm(asked) == _norm(spec.name) else f"'{asked}' ({spec.name})"
        raise UnknownSampler(
            f"Sampler {shown} is an A1111 sampler that cannot run here: {spec.unsupported}; "
            f"choose one of: {', '.join(self.visible())}."
        )

    def _combination_message(self, spec: SamplerSpec, sched: ScheduleSpec) -> str:
        valid = ", ".join(self.schedules_for(spec.name))
        if sched.unsupported:
            why = f"schedule type '{sched.label}' has no diffusers implementation: {sched.unsupported}"
        else:
            if spec.schedules == ("ddim",):
                why = "it runs on A1111's DDIM timestep grid"
            elif spec.scheduler_cls is None:
                why = ("it steps on its own log-sigma grid" if spec.schedules == ("uniform",)
                       else f"'{sched.label}' has no sigma list here (A1111 computes Beta with scipy)")
            else:
                why = f"diffusers' {spec.class_name} cannot follow the '{sched.label}' schedule"
        return (f"Sampler '{spec.name}' with schedule type '{sched.label}' is not available ({why}); "
                f"choose one of: {valid}.")


def default_registry() -> SamplerRegistry:
    """A fresh registry with every schedule type and A1111 sampler row (no module-level singleton)."""
    registry = SamplerRegistry()
    for schedule in SCHEDULES:
        registry.add_schedule(schedule)
    for sampler in A1111_SAMPLERS:
        registry.add(sampler)
    return registry
