"""A1111's sampler settings (eta, sigma churn/tmin/tmax/noise), applied to each sampler as A1111 applies them.

A1111 hands a k-diffusion sampler only the parameters its function takes, and writes a setting into the infotext
only when it differs from that sampler's default:
- eta: the request's `eta` when given, else the setting of the sampler's kind: "Eta for DDIM" (`eta_ddim`, default 0,
  infotext "Eta DDIM") for the timestep DDIM samplers, "Eta for k-diffusion samplers" (`eta_ancestral`, default 1,
  infotext "Eta") for the ancestral and SDE samplers.
- sigma churn, tmin, tmax (0 means no upper bound) and noise: Karras et al.'s stochastic churn, for Euler, Heun and
  DPM2 (infotext "Sigma churn", "Sigma tmin", "Sigma tmax", "Sigma noise").
- sigma noise alone: the scale of the fresh noise of the ancestral and SDE samplers that take it.

Pure data (no torch), so plans can carry a `Tuning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

ETA = "eta"
"""Takes eta (the k-diffusion kind: `eta_ancestral`)."""
ETA_DDIM = "eta_ddim"
"""Takes eta (the timestep DDIM kind: `eta_ddim`)."""
CHURN = "churn"
"""Takes sigma churn, tmin, tmax and noise."""
S_NOISE = "s_noise"
"""Takes sigma noise."""


@dataclass(frozen=True)
class SamplerSettings:
    """The request's eta and the sampler settings in force for a job (modules/options.py keys and defaults)."""

    eta: float | None = None
    """The request's eta; None: the setting of the sampler's kind."""
    eta_ddim: float = 0.0
    eta_ancestral: float = 1.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0
    """0 means no upper bound (A1111's "0 = inf")."""
    s_noise: float = 1.0


@dataclass(frozen=True)
class Tuning:
    """What one sampler runs with; `infotext` holds A1111's keys for the values that differ from its defaults."""

    eta: float | None = None
    """None: the sampler takes no eta."""
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    infotext: Mapping[str, Any] = field(default_factory=dict)


DEFAULT_TUNING = Tuning()


def tune(takes: frozenset[str], settings: SamplerSettings) -> Tuning:
    """The values a sampler taking `takes` (ETA, ETA_DDIM, CHURN, S_NOISE) runs with, and their infotext."""
    infotext: dict[str, Any] = {}
    eta: float | None = None
    if ETA_DDIM in takes:
        eta = settings.eta_ddim if settings.eta is None else settings.eta
        if eta != 0.0:
            infotext["Eta DDIM"] = eta
    elif ETA in takes:
        eta = settings.eta_ancestral if settings.eta is None else settings.eta
        if eta != 1.0:
            infotext["Eta"] = eta
    churn, tmin, tmax = 0.0, 0.0, math.inf
    if CHURN in takes:
        churn, tmin, tmax = settings.s_churn, settings.s_tmin, settings.s_tmax or math.inf
        for key, value, default in (("Sigma churn", churn, 0.0), ("Sigma tmin", tmin, 0.0),
                                    ("Sigma tmax", tmax, math.inf)):
            if value != default:
                infotext[key] = value
    s_noise = settings.s_noise if (CHURN in takes or S_NOISE in takes) else 1.0
    if s_noise != 1.0:
        infotext["Sigma noise"] = s_noise
    return Tuning(eta=eta, s_churn=churn, s_tmin=tmin, s_tmax=tmax, s_noise=s_noise, infotext=infotext)
