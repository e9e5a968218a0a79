"""Skipping the negative prompt's UNet pass on some steps, as A1111's CFG denoiser does (a speed-up).

Two A1111 settings decide it, per model call of a sampling pass (the call counter starts at 0 with each pass):
- "Negative Guidance minimum sigma" (`s_min_uncond`, infotext "NGMS"): on every other call (the odd ones; all of
  them with "Negative Guidance minimum sigma all steps", `s_min_uncond_all`, infotext "NGMS all steps") whose
  sigma is below it. A1111 compares the k-diffusion sigma; for its timestep samplers (DDIM, DDIM CFG++, PLMS,
  UniPC) it compares the model's timestep instead, and so do we.
- "Ignore negative prompt during early sampling" (`skip_early_cond`, infotext "Skip Early CFG"): every call whose
  index divided by the number of calls is at most it (so the first call whenever it is not 0).
A skipped call runs the prompt's rows only and takes the prompt's prediction as the step's (CFG scale 1; with `AND`
parts, each image's first part stands in for the negative prompt, as in A1111). Pure: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class UncondSkip:
    """When a sampling pass skips the negative prompt (the three A1111 settings named in the module doc)."""

    min_sigma: float = 0.0
    all_steps: bool = False
    early: float = 0.0
    by_timestep: bool = False
    """Compare the model's timestep with `min_sigma` (A1111's timestep samplers) instead of the sigma."""

    @property
    def active(self) -> bool:
        return self.min_sigma > 0 or self.early != 0

    def skips(self, call: int, calls: int, sigma: float, timestep: float) -> bool:
        """Whether model call `call` of `calls` (at this sigma and timestep) skips the negative prompt."""
        if self.early != 0 and call / calls <= self.early:
            return True
        level = timestep if self.by_timestep else sigma
        return (call % 2 == 1 or self.all_steps) and self.min_sigma > 0 and level < self.min_sigma

    def infotext(self) -> dict[str, Any]:
        """A1111's keys for the settings in force (written whenever they are set: pasting them back reproduces the
        picture whether or not a call was skipped)."""
        params: dict[str, Any] = {}
        if self.early != 0:
            params["Skip Early CFG"] = self.early
        if self.min_sigma > 0:
            params["NGMS"] = self.min_sigma
            if self.all_steps:
                params["NGMS all steps"] = True
        return params
