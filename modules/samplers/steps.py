"""img2img step planning: how many schedule steps to build and where denoising starts. Pure functions.

Three conventions, for `steps` and denoising strength s (20 steps at 0.75 in brackets):
- A1111 (the default): t_enc = int(min(s, 0.999) * steps); a `steps`-step schedule is built and its last
  t_enc + 1 steps run (16). Python's int() on floats is kept, artefacts included (100 steps at 0.29: t_enc 28).
- A1111's `img2img_fix_steps`: a schedule of int(steps / min(s, 0.999)) steps, of which the last `steps` run
  (26 built, 20 run).
- diffusers (`get_timesteps`): int(steps * s) of a `steps`-step schedule (15).
Strength 0 plans no steps in every convention (`run_steps == 0`): the caller returns the init image unchanged.

Indices count schedule *steps*. For second-order schedulers (`order == 2`: Heun, DPM2, DPM++ SDE) the timestep
array holds two entries per step, so the first timestep is `scheduler.timesteps[start_index * order]`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from modules.errors import InvalidRequest

A1111_MAX_STRENGTH = 0.999
"""A1111 caps the strength so that even 1.0 keeps the first sigma of the schedule (adds noise to the init)."""


class StepConvention(str, enum.Enum):
    A1111 = "a1111"
    A1111_FIX_STEPS = "a1111_fix_steps"
    DIFFUSERS = "diffusers"


@dataclass(frozen=True)
class StepPlan:
    """schedule_steps: steps to pass to `SamplingMethod.build`; start_index: first schedule step that runs (the
    init latents are noised to that step's sigma/timestep); run_steps: steps that run (= schedule_steps -
    start_index)."""

    schedule_steps: int
    start_index: int
    run_steps: int

    @property
    def is_noop(self) -> bool:
        """True when nothing runs (strength 0): the init image is the result."""
        return self.run_steps == 0


def _check(steps: int, strength: float) -> None:
    if steps < 1:
        raise InvalidRequest(f"Steps must be at least 1, got {steps}.")
    if not 0.0 <= strength <= 1.0:
        raise InvalidRequest(f"Denoising strength must be between 0 and 1, got {strength}.")


def _plan(schedule_steps: int, run_steps: int) -> StepPlan:
    return StepPlan(schedule_steps=schedule_steps, start_index=schedule_steps - run_steps, run_steps=run_steps)


def txt2img_plan(steps: int) -> StepPlan:
    """Every step of a `steps`-step schedule."""
    _check(steps, 1.0)
    return _plan(steps, steps)


def a1111_plan(steps: int, strength: float) -> StepPlan:
    """A1111 default: the last int(min(strength, 0.999) * steps) + 1 steps of a `steps`-step schedule."""
    _check(steps, strength)
    if strength == 0:
        return _plan(steps, 0)
    t_enc = int(min(strength, A1111_MAX_STRENGTH) * steps)
    return _plan(steps, t_enc + 1)


def a1111_fix_steps_plan(steps: int, strength: float) -> StepPlan:
    """A1111 "img2img_fix_steps": the last `steps` steps of an int(steps / min(strength, 0.999))-step schedule."""
    _check(steps, strength)
    if strength == 0:
        return _plan(0, 0)
    schedule_steps = int(steps / min(strength, A1111_MAX_STRENGTH))
    t_enc = steps - 1
    return _plan(schedule_steps, t_enc + 1)


def diffusers_plan(steps: int, strength: float) -> StepPlan:
    """diffusers: the last int(steps * strength) steps of a `steps`-step schedule."""
    _check(steps, strength)
    return _plan(steps, min(int(steps * strength), steps))


def plan_img2img(steps: int, strength: float, convention: StepConvention = StepConvention.A1111) -> StepPlan:
    """Dispatch to the function of `convention`."""
    planners = {
        StepConvention.A1111: a1111_plan,
        StepConvention.A1111_FIX_STEPS: a1111_fix_steps_plan,
        StepConvention.DIFFUSERS: diffusers_plan,
    }
    return planners[StepConvention(convention)](steps, strength)
