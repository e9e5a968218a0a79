"""A1111's timestep DDIM and DDIM CFG++ (`TimestepDdimScheduler`) against A1111's algorithm written out here.

The reference follows A1111 1.10's `sd_samplers_timesteps` (read, not imported: A1111 is no package): the grid
`range(0, 1000, 1000 // n) + 1`, `len(grid) - 1` evaluations from the top, each stepping to the grid point below
with alpha_prev in float64, the per-step noise drawn at every step, img2img noising to grid point t_enc and
evaluating from t_enc - 1; CFG++ divides the CFG scale by 12.5 and steps along the unconditional eps.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from modules.core.generate import generate
from modules.models.tiny import BASE_SCHEDULER_CONFIG
from modules.samplers.registry import default_registry
from modules.samplers.timestep_samplers import TimestepDdimScheduler
from modules.samplers.tuning import SamplerSettings
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SD2_V, LatentCapture, tiny

REGISTRY = default_registry()
ALPHAS = DDPMScheduler.from_config(BASE_SCHEDULER_CONFIG).alphas_cumprod
SHAPE = (2, 4, 8, 8)
EpsFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
"""(x, t) -> (guided eps, unconditional eps)."""


def _a1111(eps: EpsFn, x: torch.Tensor, steps: int, *, eta: float, cfgpp: bool, noise: Callable[[], torch.Tensor],
           t_enc: int | None = None) -> torch.Tensor:
    grid = torch.clip(torch.tensor(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)
    if t_enc is not None:
        grid = grid[:t_enc]
    alphas = ALPHAS.float()[grid]
    alphas_prev = ALPHAS.float()[torch.nn.functional.pad(grid[:-1], pad=(1, 0))].to(torch.float64)
    sigmas = eta * np.sqrt((1 - alphas_prev.numpy()) / (1 - alphas.double().numpy())
                           * (1 - alphas.double().numpy() / alphas_prev.numpy()))
    for i in range(len(grid) - 1):
        index = len(grid) - 1 - i
        e_t, e_uncond = eps(x, int(grid[index]))
        a_t = torch.tensor(alphas[index].item(), dtype=torch.float32)
        a_prev = torch.tensor(alphas_prev[index].item(), dtype=torch.float32)
        sigma_t = torch.tensor(float(sigmas[index]), dtype=torch.float32)
        pred_x0 = (x - (1 - a_t).sqrt() * e_t) / a_t.sqrt()
        x = a_prev.sqrt() * pred_x0 + (1.0 - a_prev - sigma_t**2).sqrt() * (e_uncond if cfgpp else e_t) \
            + sigma_t * noise()
    return x


def _fake_eps(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    uncond = 0.3 * torch.tanh(x) + 0.001 * t
    return uncond + 0.5 * torch.sin(x), uncond


def _ours(scheduler: TimestepDdimScheduler, x: torch.Tensor, eta: float, generator: torch.Generator) -> torch.Tensor:
    for t in scheduler.timesteps:
        guided, uncond = _fake_eps(x, int(t))
        x = scheduler.step(guided, t, x, eta=eta, generator=generator, noise_pred_uncond=uncond).prev_sample
    return x


@pytest.mark.parametrize("cfgpp", [False, True])
@pytest.mark.parametrize(("steps", "eta"), [(20, 0.0), (20, 0.7), (30, 0.0), (7, 1.0)])
def test_txt2img_equals_a1111(steps: int, eta: float, cfgpp: bool) -> None:
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    reference_noise = torch.Generator().manual_seed(4)
    reference = _a1111(_fake_eps, x0, steps, eta=eta, cfgpp=cfgpp,
                       noise=lambda: torch.randn(SHAPE, generator=reference_noise))
    scheduler = TimestepDdimScheduler(ALPHAS, steps, cfgpp=cfgpp)
    assert len(scheduler.timesteps) == len(range(0, 1000, 1000 // steps)) - 1  # n - 1 model calls when n | 1000
    result = _ours(scheduler, x0 * scheduler.init_noise_sigma, eta, torch.Generator().manual_seed(4))
    torch.testing.assert_close(result, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("steps", "strength"), [(20, 0.75), (20, 0.3), (30, 0.5)])
def test_img2img_noises_to_t_enc_and_runs_from_the_grid_point_below(steps: int, strength: float) -> None:
    init = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    t_enc = int(min(strength, 0.999) * steps)
    grid = torch.clip(torch.tensor(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)
    alpha = ALPHAS.float()[grid[t_enc]]
    xi = init * alpha.sqrt() + noise * (1 - alpha).sqrt()
    reference = _a1111(_fake_eps, xi, steps, eta=0.0, cfgpp=False, noise=lambda: torch.zeros(SHAPE), t_enc=t_enc)
    scheduler = TimestepDdimScheduler(ALPHAS, steps)
    timesteps = scheduler.begin_at(steps - t_enc - 1, from_image=True)  # the A1111 step rule's start index
    assert timesteps.tolist() == grid[1:t_enc].flip(0).tolist()
    start = scheduler.add_noise(init, noise, timesteps[:1])
    torch.testing.assert_close(start, xi)
    torch.testing.assert_close(_ours(scheduler, start, 0.0, torch.Generator()), reference, atol=1e-5, rtol=1e-5)


def test_ddim_cfgpp_is_listed_and_takes_only_its_grid() -> None:
    method = REGISTRY.resolve("DDIM CFG++")
    assert method.needs_uncond and method.tune(SamplerSettings()).eta == 0.0 and method.schedule_label == "DDIM"
    assert REGISTRY.schedules_for("ddim_cfgpp") == ["Automatic", "DDIM"]
    assert not REGISTRY.resolve("DDIM").needs_uncond


# -- end to end ---------------------------------------------------------------------------------------------------

PROMPT, NEGATIVE = "a red cube on a table", "blurry"


def _unet_eps(identity: Any, cfg: float) -> EpsFn:
    """A1111's CFG denoiser for timestep samplers: eps of uncond and cond (v turned into eps per row first), the
    guided eps with the scale as given, and the unconditional eps."""
    from tests.core.helpers import sd_pipeline

    components = tiny(identity)
    pipeline = sd_pipeline(components, DDPMScheduler.from_config(components.scheduler_config))
    cond, uncond = pipeline.encode_prompt(PROMPT, "cpu", 1, True, NEGATIVE)
    alphas = DDPMScheduler.from_config(components.scheduler_config).alphas_cumprod.float()
    v_model = components.scheduler_config.get("prediction_type") == "v_prediction"

    def eps(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = x.shape[0]
        states = torch.cat([uncond.expand(rows, -1, -1), cond.expand(rows, -1, -1)])
        x_in = torch.cat([x, x])
        out = components.unet(x_in, torch.full((2 * rows,), t), encoder_hidden_states=states, return_dict=False)[0]
        if v_model:
            out = alphas[t].sqrt() * out + (1 - alphas[t]).sqrt() * x_in
        e_uncond, e_cond = out.chunk(2)
        return e_uncond + (e_cond - e_uncond) * cfg, e_uncond

    return eps


@pytest.mark.slow
@pytest.mark.parametrize(("identity", "name", "cfg", "eta"), [
    (SD1, "DDIM CFG++", 7.0, 0.0), (SD1, "DDIM CFG++", 1.0, 0.0), (SD1, "DDIM", 6.0, 0.5), (SD2_V, "DDIM", 6.0, 0.0),
    (SD2_V, "DDIM CFG++", 6.0, 0.3)])
def test_generate_equals_a1111(monkeypatch: pytest.MonkeyPatch, identity: Any, name: str, cfg: float,
                               eta: float) -> None:
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=5, width=64, height=64,
                                cfg_scale=cfg, batch_size=2, sampler=name, eta=eta)
    result = generate(request, tiny(identity), REGISTRY.resolve(name))
    cfgpp = name == "DDIM CFG++"
    eps = _unet_eps(identity, cfg / 12.5 if cfgpp else cfg)
    generators = [torch.Generator().manual_seed(seed) for seed in (11, 12)]
    x = torch.stack([torch.randn((4, 8, 8), generator=g) for g in generators])
    with torch.no_grad():
        reference = _a1111(eps, x, 5, eta=eta, cfgpp=cfgpp,
                           noise=lambda: torch.stack([torch.randn((4, 8, 8), generator=g) for g in generators]))
    scale = float(reference.abs().max())
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * scale, rtol=0)
    assert result.plan.sampler == name and result.plan.tuning.eta == eta


def test_one_step_of_ddim_is_a_clear_error() -> None:
    from modules.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="DDIM needs at least 2 steps"):
        REGISTRY.resolve("DDIM").build(BASE_SCHEDULER_CONFIG, 1, "cpu")


# -- PLMS -----------------------------------------------------------------------------------------------------------


def _a1111_plms(eps: EpsFn, x: torch.Tensor, steps: int, t_enc: int | None = None) -> torch.Tensor:
    grid = torch.clip(torch.tensor(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)
    if t_enc is not None:
        grid = grid[:t_enc]
    alphas = ALPHAS.float()[grid]
    alphas_prev = ALPHAS.float()[torch.nn.functional.pad(grid[:-1], pad=(1, 0))].to(torch.float64)
    old: list[torch.Tensor] = []

    def update(e: torch.Tensor, index: int) -> torch.Tensor:
        a_t = torch.tensor(alphas[index].item(), dtype=torch.float32)
        a_prev = torch.tensor(alphas_prev[index].item(), dtype=torch.float32)
        pred_x0 = (x - (1 - a_t).sqrt() * e) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e

    for i in range(len(grid) - 1):
        index = len(grid) - 1 - i
        e_t = eps(x, int(grid[index]))[0]
        if not old:
            e_next = eps(update(e_t, index), int(grid[max(index - 1, 0)]))[0]
            e_prime = (e_t + e_next) / 2
        elif len(old) == 1:
            e_prime = (3 * e_t - old[-1]) / 2
        elif len(old) == 2:
            e_prime = (23 * e_t - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = update(e_prime, index)
        old = [*old, e_t][-3:]
    return x


def _ours_plms(scheduler: Any, x: torch.Tensor) -> torch.Tensor:
    for t in scheduler.timesteps:
        x = scheduler.step(_fake_eps(x, int(t))[0], t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [2, 3, 6, 20, 30])
def test_plms_txt2img_equals_a1111(steps: int) -> None:
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    scheduler = REGISTRY.resolve("PLMS").build(BASE_SCHEDULER_CONFIG, steps, "cpu")
    assert len(scheduler.timesteps) == len(range(0, 1000, 1000 // steps))  # one call more than DDIM
    torch.testing.assert_close(_ours_plms(scheduler, x0), _a1111_plms(_fake_eps, x0, steps), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("steps", "strength"), [(20, 0.75), (10, 0.35)])
def test_plms_img2img_equals_a1111(steps: int, strength: float) -> None:
    xi = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    t_enc = int(min(strength, 0.999) * steps)
    scheduler = REGISTRY.resolve("PLMS").build(BASE_SCHEDULER_CONFIG, steps, "cpu")
    scheduler.begin_at(steps - t_enc - 1, from_image=True)
    torch.testing.assert_close(_ours_plms(scheduler, xi), _a1111_plms(_fake_eps, xi, steps, t_enc=t_enc),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("identity", [SD1, SD2_V], ids=["sd1", "sd2v"])
def test_generate_with_plms_equals_a1111(monkeypatch: pytest.MonkeyPatch, identity: Any) -> None:
    capture = LatentCapture(monkeypatch)
    request = GenerationRequest(prompt=PROMPT, negative_prompt=NEGATIVE, seed=11, steps=6, width=64, height=64,
                                cfg_scale=6.0, batch_size=2, sampler="PLMS")
    generate(request, tiny(identity), REGISTRY.resolve("PLMS"))
    eps = _unet_eps(identity, 6.0)
    x = torch.stack([torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(seed)) for seed in (11, 12)])
    with torch.no_grad():
        reference = _a1111_plms(eps, x, 6)
    torch.testing.assert_close(capture.last, reference, atol=2e-5 * float(reference.abs().max()), rtol=0)
