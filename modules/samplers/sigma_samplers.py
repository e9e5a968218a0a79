"""Samplers that diffusers has no scheduler for, written as small functions over a sigma schedule.

Each sampler is a generator ("coroutine") in the k-diffusion formulation of Karras et al. (2022): the state is
`x` at noise level sigma, the model is a denoiser `D(x, sigma)` that predicts the clean latents. The sampler never
calls the model itself: it yields an `Evaluation` (the latents and sigma it needs denoised) and receives the
denoised latents back, together with the latents that were actually evaluated (the loop may have changed them,
e.g. the inpaint blend), and finally returns the sampled latents. That keeps each algorithm a short transcription
of its paper, runs them inside the shared denoising loop (CFG, hooks, progress, stop) through
`sigma_scheduler.SigmaScheduler`, and lets tests drive them with any denoiser (`drive`).

Noise for ancestral steps comes from `noise(x)`, called exactly where A1111's k-diffusion samplers draw
`randn_like(x)` (so the per-image generators are consumed in the same order). Algorithms:
- `euler`, `heun`, `dpm_2`: Karras et al. (2022)'s Algorithm 2 with Euler, Heun or DPM-Solver-2 steps, with its
  optional stochastic "churn" (`Churn`, A1111's sigma churn / tmin / tmax / noise settings).
- `dpm_2_ancestral`: DPM-Solver-2 steps toward the ancestral sigma_down, then fresh noise.
- `dpmpp_2m`: DPM-Solver++(2M), the deterministic two-step multistep method (first order on the first and last step).
- `dpmpp_sde`: DPM-Solver++ stochastic single-step second order (midpoint in log sigma), Brownian-tree noise.
- `euler_ancestral`: Euler steps with ancestral noise (Karras et al. 2022's Euler, k-diffusion's "Euler a").
- `dpmpp_2s_ancestral`: DPM-Solver++(2S) single-step second order with ancestral noise (Lu et al. 2022).
- `dpm_fast`: DPM-Solver-fast, orders 3,3,..,(2,1) on a uniform log-sigma grid with exactly `nfe` evaluations.
- `dpm_adaptive`: DPM-Solver-23 with a PI step-size controller (error control picks the number of evaluations).
- `restart`: Restart sampling (Xu et al. 2023) as A1111 configures it: Heun steps on a Karras schedule with
  restart segments that re-noise to sigma 2 and come back down.
- `dpmpp_sde`, `dpmpp_2m_sde`, `dpmpp_3m_sde`: the DPM-Solver++ SDE samplers, whose noise comes from a Brownian
  tree per image (`BrownianNoise`, A1111's choice for them) through `noise_at(sigma, sigma_next)` instead of
  `noise(x)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Generator, Sequence

import torch

Evaluation = tuple[torch.Tensor, torch.Tensor]
"""(latents to denoise, their sigma as a 0-d tensor)."""
Reply = tuple[torch.Tensor, torch.Tensor]
"""(denoised latents, the latents that were actually evaluated)."""
SamplerRun = Generator[Evaluation, Reply, torch.Tensor]
NoiseFn = Callable[[torch.Tensor], torch.Tensor]
"""Standard normal noise shaped like its argument (one draw from each image's generator)."""
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_down, sigma_up) of an ancestral step: denoise to sigma_down, then add sigma_up of fresh noise, so the
    total variance at the end is sigma_next**2. eta 0 is the deterministic step."""
    if not eta:
        return sigma_next, torch.zeros_like(sigma_next)
    up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    return (sigma_next**2 - up**2) ** 0.5, up


def derivative(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dsigma of the probability-flow ODE, (x - D(x)) / sigma."""
    return (x - denoised) / sigma


def _log_t(sigma: torch.Tensor) -> torch.Tensor:
    """DPM-Solver's time variable, lambda = -log(sigma) (the log signal-to-noise ratio)."""
    return -sigma.log()


def _sigma_of(t: torch.Tensor) -> torch.Tensor:
    return (-t).exp()


@dataclass(frozen=True)
class Churn:
    """Karras et al. (2022)'s stochastic churn, A1111's "sigma churn", "sigma tmin", "sigma tmax", "sigma noise":
    before a step from sigma in [tmin, tmax], noise raises the level to sigma_hat = sigma (1 + gamma), gamma =
    min(churn / steps, sqrt(2) - 1), and the step starts there. churn 0 (the default) is the deterministic sampler."""

    churn: float = 0.0
    tmin: float = 0.0
    tmax: float = math.inf
    noise: float = 1.0

    def raise_level(self, x: torch.Tensor, sigma: torch.Tensor, steps: int,
                    noise: NoiseFn) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, sigma_hat) of one step. With churn on, one noise draw per step, as k-diffusion draws it (also where
        gamma is 0), so the generators advance as in A1111."""
        if not self.churn:
            return x, sigma
        gamma = min(self.churn / steps, 2**0.5 - 1) if self.tmin <= sigma <= self.tmax else 0.0
        eps = noise(x) * self.noise
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat**2 - sigma**2) ** 0.5
        return x, sigma_hat


NO_CHURN = Churn()


def euler(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, churn: Churn = NO_CHURN) -> SamplerRun:
    """Euler steps of the probability-flow ODE (with optional churn)."""
    for i in range(len(sigmas) - 1):
        x, sigma = churn.raise_level(x, sigmas[i], len(sigmas) - 1, noise)
        denoised, x = yield x, sigma
        x = x + derivative(x, sigma, denoised) * (sigmas[i + 1] - sigma)
    return x


def heun_step(x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> SamplerRun:
    """One Heun step from sigma to sigma_next (the trapezoid of the derivative at both ends; an Euler step into
    sigma 0, where the second evaluation would divide by zero)."""
    denoised, x = yield x, sigma
    d = derivative(x, sigma, denoised)
    dt = sigma_next - sigma
    if sigma_next == 0:
        return x + d * dt
    x_2 = x + d * dt
    denoised_2, _ = yield x_2, sigma_next
    return x + (d + derivative(x_2, sigma_next, denoised_2)) / 2 * dt


def heun(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, churn: Churn = NO_CHURN) -> SamplerRun:
    """Heun steps over the list (with optional churn)."""
    for i in range(len(sigmas) - 1):
        x, sigma = churn.raise_level(x, sigmas[i], len(sigmas) - 1, noise)
        x = yield from heun_step(x, sigma, sigmas[i + 1])
    return x


def _log_midpoint(sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """The geometric mean of two noise levels (the midpoint in log sigma)."""
    return sigma.log().lerp(sigma_next.log(), 0.5).exp()


def dpm_2(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, churn: Churn = NO_CHURN) -> SamplerRun:
    """DPM-Solver-2 in sigma: the derivative at the log-sigma midpoint carries the whole step (with optional churn);
    an Euler step into sigma 0."""
    for i in range(len(sigmas) - 1):
        x, sigma = churn.raise_level(x, sigmas[i], len(sigmas) - 1, noise)
        sigma_next = sigmas[i + 1]
        denoised, x = yield x, sigma
        d = derivative(x, sigma, denoised)
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            mid = _log_midpoint(sigma, sigma_next)
            x_2 = x + d * (mid - sigma)
            denoised_2, _ = yield x_2, mid
            x = x + derivative(x_2, mid, denoised_2) * (sigma_next - sigma)
    return x


def dpm_2_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, eta: float = 1.0,
                    s_noise: float = 1.0) -> SamplerRun:
    """DPM-Solver-2 steps to the ancestral sigma_down, then sigma_up of fresh noise; an Euler step where
    sigma_down is 0."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        down, up = ancestral_step(sigma, sigma_next, eta)
        d = derivative(x, sigma, denoised)
        if down == 0:
            x = x + d * (down - sigma)
        else:
            mid = _log_midpoint(sigma, down)
            x_2 = x + d * (mid - sigma)
            denoised_2, _ = yield x_2, mid
            x = x + derivative(x_2, mid, denoised_2) * (down - sigma)
            x = x + noise(x) * s_noise * up
    return x


def dpmpp_2m(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn | None = None) -> SamplerRun:
    """DPM-Solver++(2M): the exponential-integrator step on a denoised estimate extrapolated from the last two
    (weights from the ratio of the last two log-sigma steps); first order on the first step and into sigma 0."""
    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        h = _log_t(sigma_next) - _log_t(sigma)
        estimate = denoised
        if old_denoised is not None and sigma_next != 0:
            r = (_log_t(sigma) - _log_t(sigmas[i - 1])) / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        old_denoised = denoised
    return x


def euler_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, eta: float = 1.0,
                    s_noise: float = 1.0) -> SamplerRun:
    """Euler steps to the ancestral sigma_down, then sigma_up of fresh noise (none after the last step)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        down, up = ancestral_step(sigma, sigma_next, eta)
        x = x + derivative(x, sigma, denoised) * (down - sigma)
        if sigma_next > 0:
            x = x + noise(x) * s_noise * up
    return x


def dpmpp_2s_ancestral(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, eta: float = 1.0,
                       s_noise: float = 1.0) -> SamplerRun:
    """DPM-Solver++(2S) with ancestral noise: a midpoint evaluation in log-sigma toward sigma_down, then the
    second-order update; the last step (to sigma 0) is an Euler step. Two evaluations per step but the last."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        down, up = ancestral_step(sigma, sigma_next, eta)
        if down == 0:
            x = x + derivative(x, sigma, denoised) * (down - sigma)
        else:
            t, t_next = _log_t(sigma), _log_t(down)
            h = t_next - t
            mid = _sigma_of(t + h / 2)
            x_mid = (mid / sigma) * x - torch.expm1(-h / 2) * denoised
            denoised_mid, _ = yield x_mid, mid
            x = (down / sigma) * x - torch.expm1(-h) * denoised_mid
        if sigma_next > 0:
            x = x + noise(x) * s_noise * up
    return x


class _DpmSolver:
    """The DPM-Solver (Lu et al. 2022) first-, second- and third-order single steps in lambda = -log(sigma), with
    eps = (x - D(x, sigma)) / sigma; `eps` asks for one evaluation (the caller reuses what it already has)."""

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> Generator[Evaluation, Reply, torch.Tensor]:
        sigma = _sigma_of(t)
        denoised, x_used = yield x, sigma
        return (x_used - denoised) / sigma

    def order1(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return x - _sigma_of(t_next) * torch.expm1(t_next - t) * eps

    def order2(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: torch.Tensor,
               r1: float = 0.5) -> Generator[Evaluation, Reply, tuple[torch.Tensor, torch.Tensor]]:
        """(x at t_next, eps at t + r1 h): the second-order step with its intermediate evaluation."""
        h = t_next - t
        s1 = t + r1 * h
        u1 = x - _sigma_of(s1) * torch.expm1(r1 * h) * eps
        eps_1 = yield from self.eps(u1, s1)
        sigma_next = _sigma_of(t_next)
        return x - sigma_next * torch.expm1(h) * eps - sigma_next / (2 * r1) * torch.expm1(h) * (eps_1 - eps), eps_1

    def order3(self, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, eps: torch.Tensor,
               eps_1: torch.Tensor | None = None) -> Generator[Evaluation, Reply, torch.Tensor]:
        """The third-order step (evaluations at t + h/3 and t + 2h/3); `eps_1` reuses a known eps at t + h/3."""
        r1, r2 = 1 / 3, 2 / 3
        h = t_next - t
        s1, s2 = t + r1 * h, t + r2 * h
        if eps_1 is None:
            u1 = x - _sigma_of(s1) * torch.expm1(r1 * h) * eps
            eps_1 = yield from self.eps(u1, s1)
        u2 = (x - _sigma_of(s2) * torch.expm1(r2 * h) * eps
              - _sigma_of(s2) * (r2 / r1) * (torch.expm1(r2 * h) / (r2 * h) - 1) * (eps_1 - eps))
        eps_2 = yield from self.eps(u2, s2)
        sigma_next = _sigma_of(t_next)
        return x - sigma_next * torch.expm1(h) * eps - sigma_next / r2 * (torch.expm1(h) / h - 1) * (eps_2 - eps)

    def step(self, order: int, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor,
             eps: torch.Tensor) -> Generator[Evaluation, Reply, torch.Tensor]:
        if order == 1:
            return self.order1(x, t, t_next, eps)
        if order == 2:
            return (yield from self.order2(x, t, t_next, eps))[0]
        return (yield from self.order3(x, t, t_next, eps))


def _ancestral_target(t: torch.Tensor, t_next: torch.Tensor, t_end: torch.Tensor,
                      eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(time to solve to, noise to add) of an ancestral DPM-Solver step from t to t_next (eta 0: t_next, 0)."""
    if not eta:
        return t_next, torch.zeros_like(t_next)
    down, _ = ancestral_step(_sigma_of(t), _sigma_of(t_next), eta)
    target = torch.minimum(t_end, _log_t(down))
    return target, (_sigma_of(t_next) ** 2 - _sigma_of(target) ** 2) ** 0.5


def dpm_fast_orders(nfe: int) -> list[int]:
    """Orders of DPM-Solver-fast's steps for `nfe` evaluations: third order, ending with (2, 1) or nfe % 3."""
    steps = nfe // 3 + 1
    if nfe % 3 == 0:
        return [3] * (steps - 2) + [2, 1]
    return [3] * (steps - 1) + [nfe % 3]


def dpm_fast(x: torch.Tensor, sigma_min: float, sigma_max: float, nfe: int, noise: NoiseFn, *, eta: float = 0.0,
             s_noise: float = 1.0) -> SamplerRun:
    """DPM-Solver-fast from sigma_max to sigma_min in exactly `nfe` evaluations (uniform steps in log sigma).
    With eta > 0 every step solves to the ancestral sigma_down and adds noise (A1111 runs it with eta 1)."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError("DPM fast needs two different noise levels above 0 (at least 2 steps)")
    solver = _DpmSolver()
    t_start, t_end = _log_t(torch.tensor(sigma_max)), _log_t(torch.tensor(sigma_min))
    orders = dpm_fast_orders(nfe)
    ts = torch.linspace(float(t_start), float(t_end), nfe // 3 + 2, device=x.device)
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        target, up = _ancestral_target(t, t_next, t_end.to(x.device), eta)
        eps = yield from solver.eps(x, t)
        x = yield from solver.step(order, x, t, target, eps)
        x = x + up * s_noise * noise(x)
    return x


@dataclass
class StepSizeController:
    """PI(D) step-size control for an adaptive ODE solver (the integral-only default of DPM-Solver's code):
    proposes the next step from the last errors; a step is accepted when the proposed growth factor is at least
    `accept_safety`."""

    h: float
    pcoeff: float
    icoeff: float
    dcoeff: float
    order: float
    accept_safety: float = 0.81
    eps: float = 1e-8

    def __post_init__(self) -> None:
        self.b1 = (self.pcoeff + self.icoeff + self.dcoeff) / self.order
        self.b2 = -(self.pcoeff + 2 * self.dcoeff) / self.order
        self.b3 = self.dcoeff / self.order
        self.errs: list[float] = []

    def propose(self, error: float) -> bool:
        inv = 1 / (error + self.eps)
        if not self.errs:
            self.errs = [inv, inv, inv]
        self.errs[0] = inv
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


def dpm_adaptive(x: torch.Tensor, sigma_min: float, sigma_max: float, noise: NoiseFn, *, order: int = 3,
                 rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05, pcoeff: float = 0.0,
                 icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81, eta: float = 0.0,
                 s_noise: float = 1.0) -> SamplerRun:
    """DPM-Solver-12/23 with adaptive step size: each step solves with orders (order - 1, order), estimates the
    error from their difference and lets the controller accept or shrink the step. The number of evaluations is
    not known in advance (the caller sees them one by one)."""
    if not 0 < sigma_min < sigma_max:
        raise ValueError("DPM adaptive needs two different noise levels above 0 (at least 2 steps)")
    if order not in (2, 3):
        raise ValueError("DPM adaptive's order must be 2 or 3")
    solver = _DpmSolver()
    t_start, t_end = _log_t(torch.tensor(sigma_max)), _log_t(torch.tensor(sigma_min))
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    control = StepSizeController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    s, x_prev = t_start, x
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + control.h)
        target, up = _ancestral_target(s, t, t_end, eta)
        eps = yield from solver.eps(x, s)
        if order == 2:
            x_low = solver.order1(x, s, target, eps)
            x_high, _ = yield from solver.order2(x, s, target, eps)
        else:
            x_low, eps_1 = yield from solver.order2(x, s, target, eps, r1=1 / 3)
            x_high = yield from solver.order3(x, s, target, eps, eps_1)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        if control.propose(float(error)):
            x_prev = x_low
            x = x_high + up * s_noise * noise(x)
            s = t
    return x


BrownianFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Noise of the step from sigma to sigma_next, scaled to unit variance (a Brownian increment / sqrt(|dt|))."""


class BrownianNoise:
    """One Brownian tree (torchsde) per image over [sigma_min, sigma_max], seeded with the image's seed: the SDE
    samplers' noise, which then depends on the seed and the noise levels only, not on the batch or the steps. A
    single seed for a whole batch gives one tree over the batch (k-diffusion's unbatched form)."""

    def __init__(self, x: torch.Tensor, sigma_min: torch.Tensor, sigma_max: torch.Tensor,
                 seeds: Sequence[int]) -> None:
        import torchsde  # a runtime dependency; loaded with the first SDE run

        low, high = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.flip = low > high
        if self.flip:
            low, high = high, low
        self.batched = len(seeds) == x.shape[0]
        if not self.batched and len(seeds) != 1:
            raise ValueError(f"one seed per image, or one for the batch: {len(seeds)} seeds for {x.shape[0]} images")
        start = torch.zeros_like(x[0] if self.batched else x)
        self.trees = [torchsde.BrownianTree(low, start, high, entropy=int(seed)) for seed in seeds]

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        reverse = t0 > t1
        if reverse:
            t0, t1 = t1, t0
        sign = -1 if bool(reverse) != bool(self.flip) else 1
        increments = torch.stack([tree(t0, t1) for tree in self.trees]) if self.batched else self.trees[0](t0, t1)
        return increments * sign / (t1 - t0).abs().sqrt()


def dpmpp_sde(x: torch.Tensor, sigmas: torch.Tensor, noise_at: BrownianFn, *, eta: float = 1.0,
              s_noise: float = 1.0, r: float = 0.5) -> SamplerRun:
    """DPM-Solver++ (stochastic): per step an ancestral first-order step to t + r h in log sigma with Brownian
    noise, an evaluation there, then the step to the next level from the blend of both denoised estimates, again
    ancestral. Two evaluations per step; an Euler step into sigma 0."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        if sigma_next == 0:
            x = x + derivative(x, sigma, denoised) * (sigma_next - sigma)
            continue
        # every level goes through lambda and back, as k-diffusion's does: the Brownian tree is queried at exactly
        # those floats (the round trip can leave the top level a hair above the tree's range)
        t, t_next = _log_t(sigma), _log_t(sigma_next)
        h = t_next - t
        start, mid, end = _sigma_of(t), _sigma_of(t + h * r), _sigma_of(t_next)
        down, up = ancestral_step(start, mid, eta)
        x_2 = (_sigma_of(_log_t(down)) / start) * x - torch.expm1(t - _log_t(down)) * denoised
        x_2 = x_2 + noise_at(start, mid) * s_noise * up
        denoised_2, _ = yield x_2, mid
        down, up = ancestral_step(start, end, eta)
        weight = 1 / (2 * r)
        blend = (1 - weight) * denoised + weight * denoised_2
        x = (_sigma_of(_log_t(down)) / start) * x - torch.expm1(t - _log_t(down)) * blend
        x = x + noise_at(start, end) * s_noise * up
    return x


def dpmpp_2m_sde(x: torch.Tensor, sigmas: torch.Tensor, noise_at: BrownianFn, *, eta: float = 1.0,
                 s_noise: float = 1.0, solver: str = "midpoint") -> SamplerRun:
    """DPM-Solver++(2M) SDE: the exponential-integrator step with eta-scaled noise and a second-order correction
    from the previous denoised estimate ("midpoint" or "heun" weighting); the last step to sigma 0 returns the
    denoised latents."""
    if solver not in ("midpoint", "heun"):
        raise ValueError("solver must be 'midpoint' or 'heun'")
    old_denoised: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        if sigma_next == 0:
            x = denoised
        else:
            h = _log_t(sigma_next) - _log_t(sigma)
            eta_h = eta * h
            decay = torch.expm1(-h - eta_h).neg()
            x = sigma_next / sigma * (-eta_h).exp() * x + decay * denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                if solver == "heun":
                    x = x + (decay / (-h - eta_h) + 1) * (1 / r) * (denoised - old_denoised)
                else:
                    x = x + 0.5 * decay * (1 / r) * (denoised - old_denoised)
            if eta:
                x = x + noise_at(sigma, sigma_next) * sigma_next * torch.expm1(-2 * eta_h).neg().sqrt() * s_noise
        old_denoised, h_last = denoised, h
    return x


def dpmpp_3m_sde(x: torch.Tensor, sigmas: torch.Tensor, noise_at: BrownianFn, *, eta: float = 1.0,
                 s_noise: float = 1.0) -> SamplerRun:
    """DPM-Solver++(3M) SDE: as 2M SDE with a third-order correction from the last two denoised estimates."""
    denoised_1: torch.Tensor | None = None
    denoised_2: torch.Tensor | None = None
    h: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, x = yield x, sigma
        if sigma_next == 0:
            x = denoised
        else:
            h = _log_t(sigma_next) - _log_t(sigma)
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + torch.expm1(-h_eta).neg() * denoised
            phi_2 = torch.expm1(-h_eta) / h_eta + 1
            if h_2 is not None and h_1 is not None and denoised_1 is not None and denoised_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None and denoised_1 is not None:
                x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
            if eta:
                x = x + noise_at(sigma, sigma_next) * sigma_next * torch.expm1(-2 * h * eta).neg().sqrt() * s_noise
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) schedule: n sigmas evenly spaced in sigma**(1/rho), then 0 (float32)."""
    ramp = torch.linspace(0, 1, n)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(high + ramp * (low - high)) ** rho, torch.zeros(1)])


def restart_segments(sigmas: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A1111's Restart step list for a schedule of n = len(sigmas) - 1 steps.

    Under 20 steps it is the schedule's own steps (plain Heun). From 20 steps, n - k*m steps of a Karras schedule
    over the same range run, and when they reach sigma 0.1 the segment from sigma 2 down to there (k + 1 Karras
    levels) is repeated m times: k = 9 restart steps once, or k = n // 4 steps twice from 36 steps on."""
    steps = len(sigmas) - 1
    restarts: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        k, m = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = karras_sigmas(steps - k * m, float(sigmas[-2]), float(sigmas[0]))
        restarts = {int(torch.argmin((sigmas - 0.1).abs())): (k + 1, m, 2.0)}
    segments: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        segments.append((sigmas[i], sigmas[i + 1]))
        if i + 1 not in restarts:
            continue
        levels, times, restart_max = restarts[i + 1]
        top = int(torch.argmin((sigmas - restart_max).abs()))
        if top < i + 1:
            ladder = karras_sigmas(levels, float(sigmas[i + 1]), float(sigmas[top]))[:-1]
            segments.extend(list(zip(ladder[:-1], ladder[1:])) * times)
    return segments


def restart(x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseFn, *, s_noise: float = 1.0) -> SamplerRun:
    """Restart sampling: Heun steps over `restart_segments(sigmas)` (Euler into sigma 0); where a segment starts
    above the previous end, fresh noise takes x back up to the segment's start first."""
    last: torch.Tensor | None = None
    for sigma, sigma_next in restart_segments(sigmas):
        if last is not None and last < sigma:
            x = x + noise(x) * s_noise * (sigma**2 - last**2) ** 0.5
        x = yield from heun_step(x, sigma, sigma_next)
        last = sigma_next
    return x


def drive(run: SamplerRun, denoiser: Denoiser) -> tuple[torch.Tensor, list[float]]:
    """Run a sampler with a plain denoiser (tests, benchmarks): (final latents, sigma of every evaluation)."""
    sigmas: list[float] = []
    try:
        x, sigma = next(run)
        while True:
            sigmas.append(float(sigma))
            x, sigma = run.send((denoiser(x, sigma), x))
    except StopIteration as stop:
        return stop.value, sigmas


def evaluation_sigmas(make_run: Callable[[torch.Tensor, Callable[..., torch.Tensor]], SamplerRun]) -> Sequence[float]:
    """The sigmas a fixed-length sampler evaluates at, from a dry run on a 1-element tensor with zero noise (of
    either kind) and a zero denoiser (they do not depend on the values for every sampler here but `dpm_adaptive`)."""
    x = torch.zeros(1, 1, 1, 1)
    _, sigmas = drive(make_run(x, lambda *_: torch.zeros(())), lambda latents, sigma: torch.zeros_like(latents))
    return sigmas
