"""Sampler registry: name parsing, rejections, every claimed (sampler, schedule) pair built and stepped, and the
timesteps of each schedule compared with A1111's own formulas (re-implemented here from sd_schedulers.py)."""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import numpy as np
import pytest
import scipy.stats
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

from modules.errors import InvalidRequest, UnknownSampler
from modules.models.tiny import BASE_SCHEDULER_CONFIG
from modules.samplers.protocol import SamplerResolver, SamplingMethod
from modules.samplers.registry import A1111_SAMPLERS, SamplerRegistry, SamplerSpec, default_registry
from modules.samplers.schedules import SCHEDULES, ScheduleSpec
from modules.samplers.sigma_scheduler import SigmaScheduler
from modules.samplers.timestep_samplers import TimestepDdimScheduler
from modules.samplers.tuning import SamplerSettings

A1111_ORDER = [
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "DDIM CFG++", "PLMS", "UniPC",
    "LCM",
]
REJECTED: set[str] = set()  # every A1111 1.10 sampler runs
ALL_SCHEDULES = ["Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                 "Align Your Steps", "Simple", "Normal", "DDIM", "Beta"]
A1111_AUTOMATIC = {  # sd_samplers_kdiffusion.py 'scheduler' options; timesteps samplers use the DDIM list
    "DPM++ 2M": "Karras", "DPM++ SDE": "Karras", "DPM++ 2M SDE": "Exponential", "DPM++ 2M SDE Heun": "Exponential",
    "DPM++ 3M SDE": "Exponential", "Euler a": "Uniform", "Euler": "Uniform", "LMS": "Uniform", "Heun": "Uniform",
    "DPM2": "Karras", "DPM2 a": "Karras", "DDIM": "DDIM", "PLMS": "DDIM", "UniPC": "SGM Uniform",
    "LCM": "SGM Uniform",
}

AYS_SD15 = np.array([14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029])
AYS_SDXL = np.array([14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029])
"""NVIDIA's published Align Your Steps tables (research.nvidia.com/labs/toronto-ai/AlignYourSteps)."""

REGISTRY = default_registry()
PAIRS = [(s, sch) for s in REGISTRY.visible() for sch in REGISTRY.schedules_for(s) if sch != "Automatic"]
REJECTED_PAIRS = [(s, sch) for s in REGISTRY.visible() for sch in ALL_SCHEDULES if sch not in REGISTRY.schedules_for(s)]


def _build(sampler: str, schedule: str, steps: int, prediction: str = "epsilon") -> tuple[Any, Any]:
    method = REGISTRY.resolve(sampler, schedule)
    return method, method.build({**BASE_SCHEDULER_CONFIG, "prediction_type": prediction}, steps, "cpu")


def _run(method: Any, scheduler: Any, seed: int = 0) -> torch.Tensor:
    """Run every step with a small fake model output; return the final sample."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 8, 8, generator=gen) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        fake_output = 0.5 * torch.tanh(model_in) + 0.1 * torch.randn(x.shape, generator=gen)
        extra = {"noise_pred_uncond": 0.5 * fake_output} if method.needs_uncond else {}
        x = scheduler.step(fake_output, t, x, **method.step_kwargs(None, gen), **extra).prev_sample
        assert torch.isfinite(x).all(), f"{method.label}/{method.schedule_label}: non-finite sample at t={float(t)}"
    return x


# -- names ------------------------------------------------------------------------------------------------------


def test_lists_follow_a1111_order() -> None:
    assert REGISTRY.all_known() == A1111_ORDER
    assert REGISTRY.visible() == [name for name in A1111_ORDER if name not in REJECTED]


@pytest.mark.parametrize("sampler", sorted(A1111_AUTOMATIC))
def test_automatic_resolves_to_a1111_default(sampler: str) -> None:
    method = REGISTRY.resolve(sampler)
    assert (method.label, method.schedule_label) == (sampler, A1111_AUTOMATIC[sampler])
    assert REGISTRY.resolve(sampler, "").schedule_label == A1111_AUTOMATIC[sampler]


@pytest.mark.parametrize(("name", "schedule", "expected"), [
    ("DPM++ 2M Karras", "Automatic", ("DPM++ 2M", "Karras")),
    ("dpm++ 2m   KARRAS", "automatic", ("DPM++ 2M", "Karras")),
    ("DPM++ 2M Karras", "Exponential", ("DPM++ 2M", "Exponential")),  # explicit schedule wins
    ("LMS Karras", "Automatic", ("LMS", "Karras")),
    ("DPM2 a Karras", "Automatic", ("DPM2 a", "Karras")),
    ("DPM++ 2M SDE Heun Exponential", "Automatic", ("DPM++ 2M SDE Heun", "Exponential")),
    ("DPM++ SDE Karras", "Automatic", ("DPM++ SDE", "Karras")),
    ("Euler SGM Uniform", "Automatic", ("Euler", "SGM Uniform")),
    ("Euler sgm_uniform", "Automatic", ("Euler", "SGM Uniform")),
    ("Euler a", "Automatic", ("Euler a", "Uniform")),
    ("k_euler_a", "Automatic", ("Euler a", "Uniform")),
    ("k_euler_ancestral", "normal", ("Euler a", "Normal")),
    ("k_dpmpp_2m", "Automatic", ("DPM++ 2M", "Karras")),
    ("k_dpmpp_2m_ka", "Automatic", ("DPM++ 2M", "Karras")),
    ("k_lms_ka", "Automatic", ("LMS", "Karras")),
    ("k_dpmpp_2m_sde_ka", "Automatic", ("DPM++ 2M SDE", "Karras")),
    ("k_dpmpp_3m_sde_exp", "Automatic", ("DPM++ 3M SDE", "Exponential")),
    ("euler_ancestral", "ddim_uniform", ("Euler a", "DDIM")),
    ("dpmpp_2m_sde_gpu", "karras", ("DPM++ 2M SDE", "Karras")),
    ("dpmpp_2m", "sgm_uniform", ("DPM++ 2M", "SGM Uniform")),
    ("euler", "kl_optimal", ("Euler", "KL Optimal")),
    ("heun", "beta", ("Heun", "Beta")),
    ("lms", "exponential", ("LMS", "Exponential")),
    ("dpm_2_ancestral", "simple", ("DPM2 a", "Simple")),
    ("uni_pc_bh2", "Automatic", ("UniPC", "SGM Uniform")),
    ("lcm", "Automatic", ("LCM", "SGM Uniform")),
    ("ddim", "Automatic", ("DDIM", "DDIM")),
    ("PLMS DDIM", "Automatic", ("PLMS", "DDIM")),
    ("Euler SGMUniform", "Automatic", ("Euler", "SGM Uniform")),
])
def test_spellings(name: str, schedule: str, expected: tuple[str, str]) -> None:
    method = REGISTRY.resolve(name, schedule)
    assert (method.label, method.schedule_label) == expected


# -- rejections -------------------------------------------------------------------------------------------------


def test_a_sampler_row_that_cannot_run_is_refused_with_its_reason() -> None:
    registry = default_registry()
    registry.add(SamplerSpec("Future Sampler", None, aliases=("future",), unsupported="it needs a newer library"))
    with pytest.raises(UnknownSampler, match="'future' \\(Future Sampler\\) is an A1111 sampler that cannot run "
                                             "here: it needs a newer library; choose one of: DPM\\+\\+ 2M") as info:
        registry.resolve("future")
    assert "Future Sampler" not in registry.visible() and "Future Sampler" in registry.all_known()
    with pytest.raises(UnknownSampler):
        registry.schedules_for("Future Sampler")
    assert str(info.value).endswith("LCM.")


@pytest.mark.parametrize("name", ["", "Euler b", "DPM++ 4M", "k_euler_x", "Karras", "DPM++ 2M Foo", "uni_pc"])
def test_unknown_sampler_lists_valid_names(name: str) -> None:
    with pytest.raises(UnknownSampler, match=r"Unknown sampler .*choose one of: .*Euler a, Euler, LMS"):
        REGISTRY.resolve(name)


def test_unknown_schedule_lists_valid_labels() -> None:
    with pytest.raises(UnknownSampler, match=r"Unknown schedule type 'Cosine'; choose one of: Automatic, Uniform"):
        REGISTRY.resolve("Euler", "Cosine")


@pytest.mark.parametrize(("sampler", "schedule"), REJECTED_PAIRS)
def test_unsupported_combinations_are_rejected(sampler: str, schedule: str) -> None:
    expected = f"Sampler '{sampler}' with schedule type '{schedule}' is not available"
    with pytest.raises(UnknownSampler, match=re.escape(expected)):
        REGISTRY.resolve(sampler, schedule)


def test_rejections_cover_the_known_gaps() -> None:
    rejected = set(REJECTED_PAIRS)
    assert ("Euler a", "Beta") in rejected and ("Euler a", "Karras") not in rejected  # ours: A1111's sigma lists
    assert ("DDIM", "Karras") in rejected and ("PLMS", "Beta") in rejected
    assert ("UniPC", "Uniform") in rejected  # its "linspace" spacing never reaches t=0
    assert ("DPM++ 2M", "Uniform") not in rejected and ("DPM2", "Beta") in rejected  # ours since session 9
    for custom in ("KL Optimal", "Align Your Steps"):  # custom sigma lists: EulerDiscreteScheduler and ours
        assert [s for s in REGISTRY.visible() if custom in REGISTRY.schedules_for(s)] == [
            "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
            "Euler", "DPM2", "DPM2 a", "Restart"]
    assert REGISTRY.resolve("Euler Align Your Steps").schedule_label == "Align Your Steps"
    with pytest.raises(UnknownSampler, match="Align Your Steps"):
        REGISTRY.resolve("LMS", "Align Your Steps")
    with pytest.raises(UnknownSampler, match=r"follow the 'Uniform' schedule\); choose one of: Automatic, Karras"):
        REGISTRY.resolve("UniPC Uniform")
    with pytest.raises(UnknownSampler, match=r"DDIM timestep grid\); choose one of: Automatic, DDIM\.$"):
        REGISTRY.resolve("PLMS Karras")
    with pytest.raises(UnknownSampler, match=r"own log-sigma grid\); choose one of: Automatic, Uniform\.$"):
        REGISTRY.resolve("DPM fast", "Karras")
    with pytest.raises(UnknownSampler, match="computes Beta with scipy"):
        REGISTRY.resolve("Restart", "Beta")


# -- building and stepping --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sampler", REGISTRY.visible())
def test_v_prediction_is_kept_and_steps(sampler: str) -> None:
    method, scheduler = _build(sampler, "Automatic", 4, prediction="v_prediction")
    assert scheduler.config.prediction_type == "v_prediction"
    assert torch.isfinite(_run(method, scheduler)).all()


def test_build_gives_a_new_configured_instance_each_time() -> None:
    method = REGISTRY.resolve("UniPC Karras")
    first, second = method.build(BASE_SCHEDULER_CONFIG, 6, "cpu"), method.build(BASE_SCHEDULER_CONFIG, 6, "cpu")
    assert first is not second and len(first.timesteps) == 6
    assert first.config.solver_order == 3 and first.config.use_karras_sigmas
    assert BASE_SCHEDULER_CONFIG["timestep_spacing"] == "leading"  # base config is not mutated


def test_schedule_flags_in_the_base_config_are_reset() -> None:
    base = {**BASE_SCHEDULER_CONFIG, "use_karras_sigmas": True, "interpolation_type": "log_linear"}
    scheduler = REGISTRY.resolve("Euler", "Uniform").build(base, 10, "cpu")
    assert not scheduler.config.use_karras_sigmas and scheduler.config.interpolation_type == "linear"
    np.testing.assert_allclose(scheduler.timesteps.numpy(), np.linspace(999, 0, 10), atol=1e-3)


def test_ddim_runs_a1111_timestep_grid() -> None:
    scheduler = REGISTRY.resolve("DDIM").build({**BASE_SCHEDULER_CONFIG, "clip_sample": True}, 20, "cpu")
    assert isinstance(scheduler, TimestepDdimScheduler) and not scheduler.cfgpp
    # A1111: grid range(0, 1000, 50) + 1; every point but the lowest is evaluated, stepping to the one below
    assert scheduler.timesteps.tolist() == list(range(951, 1, -50))


def test_bad_step_counts_are_user_errors() -> None:
    with pytest.raises(InvalidRequest):
        REGISTRY.resolve("Euler").build(BASE_SCHEDULER_CONFIG, 0, "cpu")
    with pytest.raises(InvalidRequest, match="Sampler 'LCM' cannot run 60 steps"):
        REGISTRY.resolve("LCM").build(BASE_SCHEDULER_CONFIG, 60, "cpu")


@pytest.mark.slow
def test_dpmpp_sde_noise_is_seeded() -> None:
    """The Brownian trees follow the seeds (0 without any), not the step generators."""
    method = REGISTRY.resolve("DPM++ SDE")
    assert torch.equal(_run(*_build("DPM++ SDE", "Karras", 3)), _run(*_build("DPM++ SDE", "Karras", 3)))
    unseeded = _run(method, method.build(BASE_SCHEDULER_CONFIG, 3, "cpu"))
    assert torch.equal(unseeded, _run(method, method.build(BASE_SCHEDULER_CONFIG, 3, "cpu", noise_seeds=[0])))
    one = _run(method, method.build(BASE_SCHEDULER_CONFIG, 3, "cpu", noise_seeds=[1]))
    other = _run(method, method.build(BASE_SCHEDULER_CONFIG, 3, "cpu", noise_seeds=[2]))
    assert not torch.equal(one, other)


# -- step kwargs ------------------------------------------------------------------------------------------------


def test_step_kwargs_only_pass_what_step_accepts() -> None:
    gen = torch.Generator()
    ddim = REGISTRY.resolve("DDIM")
    assert ddim.step_kwargs(None, gen) == {"eta": 0.0, "generator": gen}
    assert ddim.step_kwargs(0.5, None) == {"eta": 0.5}
    euler_a = REGISTRY.resolve("Euler a")
    assert euler_a.step_kwargs(0.7, gen) == {"generator": gen}  # its eta goes to build() in the tuning
    assert REGISTRY.resolve("Heun").step_kwargs(1.0, gen) == {}
    assert REGISTRY.resolve("PLMS").step_kwargs(None, gen) == {}
    assert REGISTRY.resolve("DPM++ 2M SDE").step_kwargs(None, [gen]) == {"generator": [gen]}


def test_ddim_eta_changes_the_result() -> None:
    method = REGISTRY.resolve("DDIM")
    results = []
    for eta in (0.0, 1.0):
        scheduler = method.build(BASE_SCHEDULER_CONFIG, 4, "cpu")
        gen = torch.Generator().manual_seed(1)
        x = torch.ones(1, 4, 8, 8)
        for t in scheduler.timesteps:
            x = scheduler.step(0.1 * x, t, x, **method.step_kwargs(eta, gen)).prev_sample
        results.append(x)
    assert not torch.allclose(results[0], results[1])


# -- equivalence with A1111's schedule formulas -----------------------------------------------------------------

N = 10


def _model_log_sigmas() -> np.ndarray:
    ac = EulerDiscreteScheduler.from_config(BASE_SCHEDULER_CONFIG).alphas_cumprod.double().numpy()
    return np.log(np.sqrt((1 - ac) / ac))


LOG_SIGMAS = _model_log_sigmas()
SIGMA_MIN, SIGMA_MAX = math.exp(LOG_SIGMAS[0]), math.exp(LOG_SIGMAS[-1])


def _t_to_sigma(t: np.ndarray) -> np.ndarray:
    return np.exp(np.interp(t, np.arange(1000), LOG_SIGMAS))


def _sigma_to_t(sigma: np.ndarray) -> np.ndarray:
    return np.interp(np.log(sigma), LOG_SIGMAS, np.arange(1000))


A1111_SIGMAS: dict[str, Callable[[int], np.ndarray]] = {
    "Uniform": lambda n: _t_to_sigma(np.linspace(999, 0, n)),
    "Normal": lambda n: _t_to_sigma(np.linspace(999, 0, n)),
    "Karras": lambda n: (SIGMA_MAX ** (1 / 7)
                         + np.linspace(0, 1, n) * (SIGMA_MIN ** (1 / 7) - SIGMA_MAX ** (1 / 7))) ** 7,
    "Exponential": lambda n: np.exp(np.linspace(math.log(SIGMA_MAX), math.log(SIGMA_MIN), n)),
    "Polyexponential": lambda n: np.exp(np.linspace(1, 0, n) ** 1.0 * (math.log(SIGMA_MAX) - math.log(SIGMA_MIN))
                                        + math.log(SIGMA_MIN)),
    "SGM Uniform": lambda n: _t_to_sigma(np.linspace(999, 0, n + 1)[:-1]),
    "Simple": lambda n: _t_to_sigma(np.array([999 - int(i * 1000 / n) for i in range(n)], dtype=float)),
    "DDIM": lambda n: _t_to_sigma(np.arange(1, 1000, 1000 // n)[::-1].astype(float)),
    "Beta": lambda n: SIGMA_MIN + scipy.stats.beta.ppf(1 - np.linspace(0, 1, n), 0.6, 0.6) * (SIGMA_MAX - SIGMA_MIN),
    "KL Optimal": lambda n: np.tan(np.arange(n + 1) / n * math.atan(SIGMA_MIN)
                                   + (1 - np.arange(n + 1) / n) * math.atan(SIGMA_MAX))[:-1],
    # A1111's loglinear_interp of NVIDIA's SD 1.5 table: interpolate the ascending log-sigmas, reverse back
    "Align Your Steps": lambda n: np.exp(np.interp(np.linspace(0, 1, n), np.linspace(0, 1, 11),
                                                   np.log(AYS_SD15[::-1])))[::-1],
}


def _evaluated_timesteps(scheduler: object) -> np.ndarray:
    """Distinct timesteps at which the main steps evaluate the model, noisiest first."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None:  # the last sigma is the target of the final step, not an evaluation point
        values = np.unique(sigmas[:-1].double().numpy())
        return _sigma_to_t(values[values > 0][::-1])
    return np.unique(scheduler.timesteps.double().numpy())[::-1]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "schedule"), PAIRS)
def test_every_claimed_pair_matches_a1111_and_steps(sampler: str, schedule: str) -> None:
    """Timesteps agree with A1111's formula for the schedule, and every step gives finite samples."""
    method, scheduler = _build(sampler, schedule, N)
    expected = _sigma_to_t(A1111_SIGMAS[schedule](N))
    if sampler in ("DPM++ 3M SDE", "DPM2", "DPM2 a"):  # A1111 discards the next-to-last sigma of N + 1 steps
        expected = _sigma_to_t(A1111_SIGMAS[schedule](N + 1)[:-1])
    got = _evaluated_timesteps(scheduler)
    tolerance = 10.0 if sampler == "LCM" else 1.0  # LCM rounds to its 50-step grid; others to integers at most
    if sampler in ("DDIM", "DDIM CFG++", "PLMS"):  # A1111's timestep samplers evaluate all grid points but the lowest
        expected = expected[:-1]
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, atol=tolerance)
    assert torch.isfinite(_run(method, scheduler)).all()


def test_align_your_steps_takes_the_table_of_the_model_family() -> None:
    ays = REGISTRY.resolve("Euler", "Align Your Steps")
    sd15 = ays.build(BASE_SCHEDULER_CONFIG, 11, "cpu").sigmas.double().numpy()
    sdxl = ays.build(BASE_SCHEDULER_CONFIG, 11, "cpu", sdxl=True).sigmas.double().numpy()
    np.testing.assert_allclose(sd15, [*AYS_SD15, 0.0], rtol=1e-5)  # 11 steps: NVIDIA's table itself, then 0
    np.testing.assert_allclose(sdxl, [*AYS_SDXL, 0.0], rtol=1e-5)
    assert ays.label == "Euler" and ays.schedule_label == "Align Your Steps"


def test_kl_optimal_ends_at_sigma_min_and_starts_at_full_noise() -> None:
    scheduler = REGISTRY.resolve("Euler", "KL Optimal").build(BASE_SCHEDULER_CONFIG, N, "cpu")
    assert scheduler.sigmas[-1].item() == pytest.approx(SIGMA_MIN, rel=1e-5)
    assert float(scheduler.init_noise_sigma) == pytest.approx(SIGMA_MAX, rel=1e-5)


# -- registration -----------------------------------------------------------------------------------------------


def test_default_registry_is_fresh_each_call() -> None:
    first, second = default_registry(), default_registry()
    first.add(SamplerSpec("Euler (trailing)", EulerDiscreteScheduler, config={"timestep_spacing": "trailing"},
                          aliases=("euler_trailing",), schedules=("uniform",), default_schedule="uniform"))
    assert "Euler (trailing)" in first.visible() and "Euler (trailing)" not in second.visible()


def test_extensions_can_add_samplers_and_schedules() -> None:
    registry = default_registry()
    registry.add_schedule(ScheduleSpec("trailing_only", "Trailing", aliases=("ext_trailing",),
                                       config={"timestep_spacing": "trailing"}))
    registry.add(SamplerSpec("Euler ext", EulerDiscreteScheduler, aliases=("euler_ext",),
                             schedules=("trailing_only", "karras"), default_schedule="trailing_only"))
    assert registry.visible()[-1] == "Euler ext"
    assert registry.schedules_for("euler_ext") == ["Automatic", "Karras", "Trailing"]
    method = registry.resolve("Euler ext Trailing")
    assert method.schedule_label == "Trailing"
    assert method.build(BASE_SCHEDULER_CONFIG, 5, "cpu").timesteps[0].item() == 999


def test_rows_that_would_be_silently_ignored_are_refused() -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match="does not accept"):
        registry.add(SamplerSpec("Euler a K", EulerAncestralDiscreteScheduler, schedules=("karras",),
                                 default_schedule="karras"))
    with pytest.raises(ValueError, match="custom sigma list"):
        registry.add(SamplerSpec("DDIM KL", DDIMScheduler, schedules=("kl_optimal",), default_schedule="kl_optimal"))
    with pytest.raises(ValueError, match="not a usable schedule"):
        registry.add(SamplerSpec("Euler LQ", EulerDiscreteScheduler, schedules=("linear_quadratic",),
                                 default_schedule="linear_quadratic"))
    with pytest.raises(ValueError, match="already belongs to 'Euler'"):
        registry.add(SamplerSpec("Other", EulerDiscreteScheduler, aliases=("k_euler",), schedules=("uniform",)))
    with pytest.raises(ValueError, match="no reason"):
        registry.add(SamplerSpec("Ghost", None))


def test_table_rows_are_a1111_names_with_unique_spellings() -> None:
    registry = SamplerRegistry()
    assert [s.name for s in A1111_SAMPLERS] == A1111_ORDER
    with pytest.raises(ValueError):  # schedules must be registered before samplers that list them
        registry.add(A1111_SAMPLERS[0])


def test_registry_implements_the_core_protocol() -> None:
    resolver: SamplerResolver = REGISTRY
    method: SamplingMethod = resolver.resolve("Euler a", "Automatic")
    assert (method.label, method.schedule_label) == ("Euler a", "Uniform")
    assert method.tune(SamplerSettings()).eta == 1.0
    scheduler = method.build(BASE_SCHEDULER_CONFIG, 5, torch.device("cpu"))
    assert isinstance(scheduler, SigmaScheduler) and len(scheduler.timesteps) == 5


def test_named_diffusers_classes_are_verified_on_demand() -> None:
    """Built-in rows name their diffusers class (start-up does not import diffusers); `verify` checks them all."""
    from modules.samplers.schedules import SIGMA_LIST_SCHEDULES
    from modules.samplers.sigma_schedules import SIGMA_SCHEDULES

    REGISTRY.verify()
    assert tuple(SIGMA_SCHEDULES) == SIGMA_LIST_SCHEDULES
    registry = SamplerRegistry()
    for schedule in SCHEDULES:
        registry.add_schedule(schedule)
    registry.add(SamplerSpec("Bad", "EulerDiscreteScheduler", config={"no_such_key": 1}))  # named: deferred
    with pytest.raises(ValueError, match=r"EulerDiscreteScheduler does not accept \['no_such_key'\]"):
        registry.verify()
