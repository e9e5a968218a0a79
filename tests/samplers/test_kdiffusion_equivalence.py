"""Our sigma-list samplers equal k-diffusion's (A1111's sampler library), row by row.

1. Algorithm level, every sampler x schedule row: the same denoiser, sigmas, initial latents and noise stream give
   the same latents to 1e-5 (the denoiser is a smooth nonlinear function of x and sigma, so every evaluation point
   matters). Restart is A1111's own sampler (not in k-diffusion): its reference is k-diffusion's Heun step run over
   A1111's restart step list.
2. End to end on a tiny SD1 model: `generate()` with the sampler equals a reference that drives k-diffusion the way
   A1111's processing does (per-image seeded noise, x = noise * sigma_0, a CFG denoiser over CompVisDenoiser with
   fractional timesteps, per-image noise for the ancestral draws).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from diffusers import DDPMScheduler

from modules.core.generate import generate
from modules.core.latents import draw
from modules.core.philox import PhiloxGenerator
from modules.models.tiny import BASE_SCHEDULER_CONFIG
from modules.samplers import sigma_samplers as ours
from modules.samplers.registry import default_registry
from modules.samplers.sigma_schedules import SIGMA_SCHEDULES, schedule_sigmas
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SD2_V, LatentCapture, tiny
from tests.samplers import kdiffusion

K = kdiffusion.sampling()
REGISTRY = default_registry()
ALPHAS = DDPMScheduler.from_config(BASE_SCHEDULER_CONFIG).alphas_cumprod
SHAPE = (2, 4, 8, 8)


def _denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A smooth stand-in for D(x, sigma), shrinking x more at high noise."""
    s = sigma.reshape(-1)[0]
    return torch.tanh(x) / (1 + s) + 0.1 * torch.sin(3 * x)


def _k_model(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
    return _denoiser(x, sigma)


def _streams(seed: int) -> tuple[Callable[[Any, Any], torch.Tensor], ours.NoiseFn]:
    """Two identical noise streams: k-diffusion's noise_sampler(sigma, sigma_next) and our noise(x)."""
    theirs, mine = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    return (lambda s, sn: torch.randn(SHAPE, generator=theirs)), (lambda x: torch.randn(x.shape, generator=mine))


def _x0(sigma: float) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)) * sigma


def _close(mine: torch.Tensor, reference: torch.Tensor) -> None:
    assert torch.isfinite(reference).all()
    torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 6, 13])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_euler_ancestral_equals_k_diffusion(schedule: str, steps: int, eta: float) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    theirs, mine = _streams(6)
    reference = K.sample_euler_ancestral(_k_model, _x0(float(sigmas[0])), sigmas, disable=True, eta=eta,
                                         noise_sampler=theirs)
    result, evaluations = ours.drive(ours.euler_ancestral(_x0(float(sigmas[0])), sigmas, mine, eta=eta), _denoiser)
    _close(result, reference)
    assert len(evaluations) == len(sigmas) - 1


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 6, 13])
def test_dpmpp_2s_ancestral_equals_k_diffusion(schedule: str, steps: int) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    theirs, mine = _streams(5)
    reference = K.sample_dpmpp_2s_ancestral(_k_model, _x0(float(sigmas[0])), sigmas, disable=True,
                                            noise_sampler=theirs)
    result, evaluations = ours.drive(ours.dpmpp_2s_ancestral(_x0(float(sigmas[0])), sigmas, mine), _denoiser)
    _close(result, reference)
    assert len(evaluations) == 2 * (len(sigmas) - 1) - (1 if sigmas[-1] == 0 else 0)


CHURNS = [ours.NO_CHURN, ours.Churn(churn=3.0), ours.Churn(churn=40.0, tmin=0.5, tmax=5.0, noise=1.003)]


def _churn_kwargs(churn: ours.Churn) -> dict[str, float]:
    return {"s_churn": churn.churn, "s_tmin": churn.tmin, "s_tmax": churn.tmax, "s_noise": churn.noise}


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 6, 13])
@pytest.mark.parametrize(("name", "kind"), [("euler", 1), ("heun", 2), ("dpm_2", 2)])
def test_churn_samplers_equal_k_diffusion(schedule: str, steps: int, name: str, kind: int) -> None:
    """Euler, Heun and DPM2 with and without churn; k-diffusion's randn_like is the same stream as our noise(x)."""
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    for churn in CHURNS:
        generator = torch.Generator().manual_seed(4)
        theirs = torch.Generator().manual_seed(4)
        original = K.torch.randn_like
        K.torch.randn_like = lambda x: torch.randn(x.shape, generator=theirs)  # A1111's hijack of randn_like
        try:
            reference = getattr(K, f"sample_{name}")(_k_model, _x0(float(sigmas[0])), sigmas, disable=True,
                                                     **_churn_kwargs(churn))
        finally:
            K.torch.randn_like = original
        run = getattr(ours, name)(_x0(float(sigmas[0])), sigmas,
                                  lambda x: torch.randn(x.shape, generator=generator), churn=churn)
        result, evaluations = ours.drive(run, _denoiser)
        _close(result, reference)
        assert len(evaluations) == kind * (len(sigmas) - 1) - (kind - 1) * (1 if sigmas[-1] == 0 else 0)


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 6, 13])
@pytest.mark.parametrize("eta", [1.0, 0.4])
def test_dpm_2_ancestral_equals_k_diffusion(schedule: str, steps: int, eta: float) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    theirs, mine = _streams(8)
    reference = K.sample_dpm_2_ancestral(_k_model, _x0(float(sigmas[0])), sigmas, disable=True, eta=eta,
                                         s_noise=0.98, noise_sampler=theirs)
    run = ours.dpm_2_ancestral(_x0(float(sigmas[0])), sigmas, mine, eta=eta, s_noise=0.98)
    result, _ = ours.drive(run, _denoiser)
    _close(result, reference)


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 6, 13])
def test_dpmpp_2m_equals_k_diffusion(schedule: str, steps: int) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    reference = K.sample_dpmpp_2m(_k_model, _x0(float(sigmas[0])), sigmas, disable=True)
    result, evaluations = ours.drive(ours.dpmpp_2m(_x0(float(sigmas[0])), sigmas), _denoiser)
    _close(result, reference)
    assert len(evaluations) == len(sigmas) - 1


@pytest.mark.parametrize("schedule", ["karras", "exponential", "uniform", "sgm_uniform", "align_your_steps"])
@pytest.mark.parametrize("steps", [1, 4, 9])
@pytest.mark.parametrize("eta", [1.0, 0.3])
def test_dpmpp_sde_equals_k_diffusion(schedule: str, steps: int, eta: float) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    x0 = _x0(float(sigmas[0]))
    theirs, mine = _brownian_pair(x0, sigmas, [3, 4])
    reference = K.sample_dpmpp_sde(_k_model, x0, sigmas, disable=True, eta=eta, s_noise=1.01, noise_sampler=theirs)
    result, evaluations = ours.drive(ours.dpmpp_sde(x0, sigmas, mine, eta=eta, s_noise=1.01), _denoiser)
    _close(result, reference)
    assert len(evaluations) == 2 * (len(sigmas) - 1) - 1


@pytest.mark.parametrize("nfe", [2, 3, 7, 9, 10, 20])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpm_fast_equals_k_diffusion(nfe: int, eta: float) -> None:
    sigmas = schedule_sigmas("uniform", ALPHAS, nfe)
    low, high = float(sigmas[-2]), float(sigmas[0])
    theirs, mine = _streams(3)
    reference = K.sample_dpm_fast(_k_model, _x0(high), low, high, nfe, disable=True, eta=eta, noise_sampler=theirs)
    result, evaluations = ours.drive(ours.dpm_fast(_x0(high), low, high, nfe, mine, eta=eta), _denoiser)
    _close(result, reference)
    assert len(evaluations) == nfe


@pytest.mark.parametrize(("order", "eta", "rtol"), [(3, 1.0, 0.05), (3, 0.0, 0.05), (2, 0.0, 0.05), (3, 1.0, 0.01)])
def test_dpm_adaptive_equals_k_diffusion(order: int, eta: float, rtol: float) -> None:
    low, high = 0.0292, 14.6146
    theirs, mine = _streams(9)
    reference, info = K.sample_dpm_adaptive(_k_model, _x0(high), low, high, disable=True, order=order, rtol=rtol,
                                            eta=eta, noise_sampler=theirs, return_info=True)
    result, evaluations = ours.drive(ours.dpm_adaptive(_x0(high), low, high, mine, order=order, rtol=rtol, eta=eta),
                                     _denoiser)
    _close(result, reference)
    assert len(evaluations) == info["nfe"]


def _restart_reference(x: torch.Tensor, sigmas: torch.Tensor,
                       noise: Callable[[Any, Any], torch.Tensor]) -> torch.Tensor:
    """A1111's Restart: under 20 steps plain Heun; from 20, a Karras schedule of n - k*m steps with the ladder from
    sigma 2 down to the level nearest 0.1 (k + 1 Karras levels) run m more times, re-noising up to its top."""
    steps = len(sigmas) - 1
    pairs = list(zip(sigmas[:-1], sigmas[1:]))
    if steps >= 20:
        k, m = (steps // 4, 2) if steps >= 36 else (9, 1)
        main = K.get_sigmas_karras(steps - k * m, sigmas[-2].item(), sigmas[0].item())
        low = int(torch.argmin((main - 0.1).abs()))
        top = int(torch.argmin((main - 2.0).abs()))
        ladder = K.get_sigmas_karras(k + 1, main[low].item(), main[top].item())[:-1]
        pairs = list(zip(main[:-1], main[1:]))
        pairs = pairs[:low] + list(zip(ladder[:-1], ladder[1:])) * m + pairs[low:]
    last = None
    for sigma, sigma_next in pairs:
        if last is not None and last < sigma:
            x = x + noise(last, sigma) * (sigma**2 - last**2) ** 0.5
        x = K.sample_heun(_k_model, x, torch.stack([sigma, sigma_next]), disable=True)
        last = sigma_next
    return x


@pytest.mark.parametrize("schedule", sorted(SIGMA_SCHEDULES))
@pytest.mark.parametrize("steps", [5, 20, 36])
def test_restart_equals_heun_over_a1111_restart_segments(schedule: str, steps: int) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    theirs, mine = _streams(2)
    reference = _restart_reference(_x0(float(sigmas[0])), sigmas, theirs)
    result, _ = ours.drive(ours.restart(_x0(float(sigmas[0])), sigmas, mine), _denoiser)
    _close(result, reference)


def test_restart_under_20_steps_is_k_diffusion_heun() -> None:
    sigmas = schedule_sigmas("karras", ALPHAS, 12)
    reference = K.sample_heun(_k_model, _x0(float(sigmas[0])), sigmas, disable=True)
    result, evaluations = ours.drive(ours.restart(_x0(float(sigmas[0])), sigmas, torch.randn_like), _denoiser)
    _close(result, reference)
    assert len(evaluations) == 2 * 12 - 1


@pytest.mark.parametrize("schedule", ["karras", "exponential", "polyexponential", "uniform"])
def test_schedules_equal_k_diffusion_lists(schedule: str) -> None:
    model = _k_model_sigmas()
    expected = {
        "karras": lambda: K.get_sigmas_karras(11, model.sigma_min.item(), model.sigma_max.item()),
        "exponential": lambda: K.get_sigmas_exponential(11, model.sigma_min.item(), model.sigma_max.item()),
        "polyexponential": lambda: K.get_sigmas_polyexponential(11, model.sigma_min.item(), model.sigma_max.item()),
        "uniform": lambda: model.get_sigmas(11),
    }[schedule]()
    torch.testing.assert_close(schedule_sigmas(schedule, ALPHAS, 11), expected, atol=1e-5, rtol=1e-5)


def _k_model_sigmas() -> Any:
    """k-diffusion's discrete schedule of the test model (A1111's `model_wrap`)."""
    return kdiffusion.external().DiscreteSchedule(((1 - ALPHAS) / ALPHAS) ** 0.5, quantize=False)


# -- end to end: generate() against k-diffusion driven as A1111 drives it -----------------------------------------


def _alphas(components: Any) -> torch.Tensor:
    return DDPMScheduler.from_config(components.scheduler_config).alphas_cumprod


class _CompVisModel(torch.nn.Module):
    """What k-diffusion's CompVis wrappers expect: `alphas_cumprod` and `apply_model(x, t, cond)`."""

    def __init__(self, components: Any) -> None:
        super().__init__()
        self.unet = components.unet
        self.alphas_cumprod = _alphas(components)

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0]


def _a1111_reference(identity: Any, name: str, seeds: list[int], steps: int, cfg: float,
                     nv: bool = False, settings: dict[str, float] | None = None) -> torch.Tensor:
    """`settings`: A1111's eta / sigma churn settings, handed to the k-diffusion function as A1111 hands them."""
    from tests.core.helpers import sd_pipeline

    components = tiny(identity)
    pipeline = sd_pipeline(components, DDPMScheduler.from_config(components.scheduler_config))
    cond, uncond = pipeline.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    external = kdiffusion.external()
    wrapper = (external.CompVisVDenoiser if identity.prediction.value == "v_prediction" else external.CompVisDenoiser)(
        _CompVisModel(components), quantize=False)

    def cfg_denoiser(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        rows = x.shape[0]
        out = wrapper(torch.cat([x, x]), torch.cat([sigma, sigma]),
                      cond=torch.cat([uncond.expand(rows, -1, -1), cond.expand(rows, -1, -1)]))
        unconditional, conditional = out.chunk(2)
        return unconditional + (conditional - unconditional) * cfg

    generators: list[Any] = [PhiloxGenerator(seed) if nv else torch.Generator().manual_seed(seed) for seed in seeds]

    def per_image(*_: Any) -> torch.Tensor:
        return torch.stack([draw(g, (4, 8, 8)) for g in generators])

    noise = per_image()
    kw: dict[str, Any] = dict(settings or {})

    method = REGISTRY.resolve(name)
    if name in ("DPM++ 3M SDE", "DPM2", "DPM2 a"):  # A1111's "discard next to last sigma": steps + 1, penultimate out
        sigmas = schedule_sigmas(method.schedule.name, _alphas(components), steps + 1)
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    else:
        sigmas = schedule_sigmas(method.schedule.name, _alphas(components), steps)
    with torch.no_grad():
        if name in ("DPM fast", "DPM adaptive"):  # between the model's end sigmas, on their own grid
            low, high = wrapper.sigma_min.item(), wrapper.sigma_max.item()
            if name == "DPM fast":
                return K.sample_dpm_fast(cfg_denoiser, noise * high, low, high, steps, disable=True, eta=1.0,
                                         noise_sampler=per_image)
            return K.sample_dpm_adaptive(cfg_denoiser, noise * high, low, high, disable=True, eta=1.0,
                                         noise_sampler=per_image)
        function, noise_kind, fixed = K_SAMPLERS[name]
        x = noise * sigmas[0]
        kw.update(fixed)
        if noise_kind == "brownian":  # A1111's SDE samplers: a Brownian tree per image seed
            kw["noise_sampler"] = K.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(),
                                                             seed=list(seeds))
        elif noise_kind == "per_image":
            kw["noise_sampler"] = per_image
        original = K.torch.randn_like
        K.torch.randn_like = lambda _: per_image()  # A1111 routes k-diffusion's randn_like to the images' generators
        try:
            return getattr(K, function)(cfg_denoiser, x, sigmas, disable=True, **kw)
        finally:
            K.torch.randn_like = original


K_SAMPLERS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "DPM++ SDE": ("sample_dpmpp_sde", "brownian", {}),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", "brownian", {}),
    "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", "brownian", {"solver_type": "heun"}),
    "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", "brownian", {}),
    "Euler a": ("sample_euler_ancestral", "per_image", {}),
    "DPM2 a": ("sample_dpm_2_ancestral", "per_image", {}),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", "per_image", {}),
    "DPM++ 2M": ("sample_dpmpp_2m", None, {}),
    "Euler": ("sample_euler", None, {}),
    "Heun": ("sample_heun", None, {}),
    "DPM2": ("sample_dpm_2", None, {}),
    "Restart": ("sample_heun", None, {}),  # under 20 steps A1111's Restart is k-diffusion's Heun
}
"""A1111 sampler -> (k-diffusion function, its noise sampler, fixed arguments A1111 passes)."""


PROMPT, NEGATIVE = "a red cube on a table", "blurry"


@pytest.mark.slow
@pytest.mark.parametrize(("identity", "name"), [(SD1, "Euler a"), (SD1, "DPM++ 2S a"), (SD1, "DPM fast"),
                                                (SD1, "DPM adaptive"), (SD1, "Restart"), (SD2_V, "DPM++ 2S a"),
                                                (SD2_V, "Euler a"), (SD1, "DPM++ 2M SDE"), (SD1, "DPM++ 2M SDE Heun"),
                                                (SD1, "DPM++ 3M SDE"), (SD2_V, "DPM++ 2M SDE"), (SD1, "DPM2"),
                                                (SD1, "DPM2 a"), (SD1, "DPM++ 2M"), (SD1, "DPM++ SDE"),
                                                (SD2_V, "DPM2 a")])
def test_generate_equals_k_diffusion_driven_like_a1111(monkeypatch: pytest.MonkeyPatch, identity: Any,
                                                        name: str) -> None:
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=5, width=64, height=64,
                                cfg_scale=6.0, batch_size=2, sampler=name)
    generate(request, tiny(identity), REGISTRY.resolve(name))
    reference = _a1111_reference(identity, name, [11, 12], 5, 6.0)
    # float32 rounding of a different operation order (CFG in eps vs denoised space), relative to the latents' scale
    # (random tiny weights give latents up to ~75)
    scale = float(reference.abs().max())
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * scale, rtol=0)


# A1111's settings for the samplers that take them: eta (eta_ancestral), sigma churn/tmin/tmax/noise
TUNED = [
    ("Euler", {"s_churn": 2.5}, {"s_churn": 2.5}, {"Sigma churn": 2.5}),
    ("Heun", {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 6.0, "s_noise": 1.002},
     {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 6.0, "s_noise": 1.002},
     {"Sigma churn": 1.0, "Sigma tmin": 0.5, "Sigma tmax": 6.0, "Sigma noise": 1.002}),
    ("DPM2", {"s_churn": 4.0, "s_noise": 0.99}, {"s_churn": 4.0, "s_noise": 0.99},
     {"Sigma churn": 4.0, "Sigma noise": 0.99}),
    ("Euler a", {"eta_ancestral": 0.6, "s_noise": 0.9}, {"eta": 0.6}, {"Eta": 0.6}),  # A1111 1.10: no s_noise here
    ("DPM2 a", {"eta_ancestral": 0.7, "s_noise": 0.95}, {"eta": 0.7, "s_noise": 0.95},
     {"Eta": 0.7, "Sigma noise": 0.95}),
    ("DPM++ SDE", {"eta_ancestral": 0.5}, {"eta": 0.5}, {"Eta": 0.5}),
    ("DPM++ 2M", {"eta_ancestral": 0.5, "s_churn": 3.0, "s_noise": 0.9}, {}, {}),  # takes neither
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "overrides", "handed", "written"), TUNED)
def test_sampler_settings_are_handed_as_a1111_hands_them(monkeypatch: pytest.MonkeyPatch, name: str,
                                                         overrides: dict[str, float], handed: dict[str, float],
                                                         written: dict[str, float]) -> None:
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=5, width=64, height=64,
                                cfg_scale=6.0, batch_size=2, sampler=name, overrides=overrides)
    output = generate(request, tiny(SD1), REGISTRY.resolve(name))
    reference = _a1111_reference(SD1, name, [11, 12], 5, 6.0, settings=handed)
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * float(reference.abs().max()), rtol=0)
    assert dict(output.plan.tuning.infotext) == written


@pytest.mark.slow
def test_request_eta_wins_over_the_eta_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=5, width=64, height=64,
                                cfg_scale=6.0, batch_size=2, sampler="Euler a", eta=0.3,
                                overrides={"eta_ancestral": 0.8})
    output = generate(request, tiny(SD1), REGISTRY.resolve("Euler a"))
    reference = _a1111_reference(SD1, "Euler a", [11, 12], 5, 6.0, settings={"eta": 0.3})
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * float(reference.abs().max()), rtol=0)
    assert dict(output.plan.tuning.infotext) == {"Eta": 0.3}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2S a", "DPM2 a"])
def test_nv_source_draws_every_noise_from_philox_streams(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A1111's NV source: initial and per-step noise of each image from its Philox stream (CUDA's numbers)."""
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=5, width=64, height=64,
                                cfg_scale=6.0, batch_size=2, sampler=name, overrides={"randn_source": "NV"})
    output = generate(request, tiny(SD1), REGISTRY.resolve(name))
    reference = _a1111_reference(SD1, name, [11, 12], 5, 6.0, nv=True)
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * float(reference.abs().max()), rtol=0)
    assert output.noise_source == "NV"


def _brownian_pair(x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]) -> tuple[Any, Any]:
    """k-diffusion's Brownian-tree noise sampler and ours, over the same range and seeds."""
    low, high = sigmas[sigmas > 0].min(), sigmas.max()
    return K.BrownianTreeNoiseSampler(x, low, high, seed=seeds), ours.BrownianNoise(x, low, high, seeds)


@pytest.mark.parametrize("schedule", ["exponential", "karras", "uniform", "kl_optimal"])
@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("solver", ["midpoint", "heun"])
def test_dpmpp_2m_sde_equals_k_diffusion(schedule: str, steps: int, solver: str) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    x0 = _x0(float(sigmas[0]))
    theirs, mine = _brownian_pair(x0, sigmas, [3, 4])
    if len(sigmas) == 2 and sigmas[-1] == 0:  # k-diffusion fails on one step to 0 (h read before set); ours: D(x)
        result, _ = ours.drive(ours.dpmpp_2m_sde(x0, sigmas, mine, solver=solver), _denoiser)
        _close(result, _denoiser(x0, sigmas[0]))
        return
    reference = K.sample_dpmpp_2m_sde(_k_model, x0, sigmas, disable=True, noise_sampler=theirs, solver_type=solver)
    result, evaluations = ours.drive(ours.dpmpp_2m_sde(x0, sigmas, mine, solver=solver), _denoiser)
    _close(result, reference)
    assert len(evaluations) == steps


@pytest.mark.parametrize("schedule", ["exponential", "karras", "uniform"])
@pytest.mark.parametrize("steps", [1, 2, 3, 8])
def test_dpmpp_3m_sde_equals_k_diffusion(schedule: str, steps: int) -> None:
    sigmas = schedule_sigmas(schedule, ALPHAS, steps)
    x0 = _x0(float(sigmas[0]))
    theirs, mine = _brownian_pair(x0, sigmas, [3, 4])
    if len(sigmas) == 2 and sigmas[-1] == 0:  # k-diffusion fails on one step to 0 (h read before set); ours: D(x)
        result, _ = ours.drive(ours.dpmpp_3m_sde(x0, sigmas, mine), _denoiser)
        _close(result, _denoiser(x0, sigmas[0]))
        return
    reference = K.sample_dpmpp_3m_sde(_k_model, x0, sigmas, disable=True, noise_sampler=theirs)
    result, _ = ours.drive(ours.dpmpp_3m_sde(x0, sigmas, mine), _denoiser)
    _close(result, reference)


def test_brownian_noise_follows_the_image_seed_not_the_batch() -> None:
    sigmas = schedule_sigmas("karras", ALPHAS, 6)
    x = torch.zeros(2, 4, 8, 8)
    pair = ours.BrownianNoise(x, sigmas[sigmas > 0].min(), sigmas.max(), [5, 9])
    alone = ours.BrownianNoise(x[:1], sigmas[sigmas > 0].min(), sigmas.max(), [9])
    torch.testing.assert_close(pair(sigmas[1], sigmas[2])[1], alone(sigmas[1], sigmas[2])[0])
    with pytest.raises(ValueError, match="one seed per image, or one for the batch"):
        ours.BrownianNoise(x, sigmas[-2], sigmas[0], [1, 2, 3])
    theirs = K.BrownianTreeNoiseSampler(x, sigmas[-2], sigmas[0], seed=7)  # one seed for the batch: one tree
    torch.testing.assert_close(ours.BrownianNoise(x, sigmas[-2], sigmas[0], [7])(sigmas[1], sigmas[2]),
                               theirs(sigmas[1], sigmas[2]))
