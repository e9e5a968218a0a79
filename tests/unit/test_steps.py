"""img2img step planning: the three conventions, edge strengths and validation."""

from __future__ import annotations

import pytest

from modules.errors import InvalidRequest
from modules.samplers.steps import (
    StepConvention,
    StepPlan,
    a1111_fix_steps_plan,
    a1111_plan,
    diffusers_plan,
    plan_img2img,
    txt2img_plan,
)


def test_design_example_20_steps_at_075() -> None:
    assert a1111_plan(20, 0.75) == StepPlan(schedule_steps=20, start_index=4, run_steps=16)
    assert a1111_fix_steps_plan(20, 0.75) == StepPlan(schedule_steps=26, start_index=6, run_steps=20)
    assert diffusers_plan(20, 0.75) == StepPlan(schedule_steps=20, start_index=5, run_steps=15)


@pytest.mark.parametrize(("steps", "strength", "expected"), [
    (20, 1.0, (20, 0, 20)),     # 0.999 cap: t_enc = 19, the whole schedule runs
    (20, 0.5, (20, 9, 11)),
    (10, 0.05, (10, 9, 1)),     # t_enc = 0 still runs one step
    (100, 0.29, (100, 71, 29)),  # int(28.999999999999996) = 28, as in A1111
    (1, 0.5, (1, 0, 1)),
])
def test_a1111_default(steps: int, strength: float, expected: tuple[int, int, int]) -> None:
    assert a1111_plan(steps, strength) == StepPlan(*expected)


@pytest.mark.parametrize(("steps", "strength", "expected"), [
    (20, 1.0, (20, 0, 20)),     # int(20 / 0.999) = 20
    (20, 0.5, (40, 20, 20)),
    (10, 0.3, (33, 23, 10)),
    (1, 0.1, (10, 9, 1)),
])
def test_a1111_fix_steps(steps: int, strength: float, expected: tuple[int, int, int]) -> None:
    assert a1111_fix_steps_plan(steps, strength) == StepPlan(*expected)


@pytest.mark.parametrize(("steps", "strength", "expected"), [
    (20, 1.0, (20, 0, 20)),
    (20, 0.5, (20, 10, 10)),
    (10, 0.05, (10, 10, 0)),    # rounds to nothing: no-op plan
    (50, 0.3, (50, 35, 15)),
])
def test_diffusers(steps: int, strength: float, expected: tuple[int, int, int]) -> None:
    assert diffusers_plan(steps, strength) == StepPlan(*expected)


@pytest.mark.parametrize("convention", list(StepConvention))
def test_strength_zero_runs_nothing(convention: StepConvention) -> None:
    plan = plan_img2img(20, 0.0, convention)
    assert plan.is_noop and plan.run_steps == 0 and plan.start_index == plan.schedule_steps


@pytest.mark.parametrize("convention", list(StepConvention))
@pytest.mark.parametrize("steps", [1, 7, 20, 33])
@pytest.mark.parametrize("strength", [0.01, 0.2, 0.5, 0.75, 0.999, 1.0])
def test_plans_are_consistent(convention: StepConvention, steps: int, strength: float) -> None:
    plan = plan_img2img(steps, strength, convention)
    assert 0 <= plan.start_index <= plan.schedule_steps
    assert plan.run_steps == plan.schedule_steps - plan.start_index
    assert plan.run_steps <= (steps if convention is not StepConvention.A1111_FIX_STEPS else plan.schedule_steps)
    if convention is StepConvention.A1111_FIX_STEPS:
        assert plan.run_steps == steps


def test_plan_dispatch_accepts_strings_and_defaults_to_a1111() -> None:
    assert plan_img2img(20, 0.75) == a1111_plan(20, 0.75)
    assert plan_img2img(20, 0.75, "diffusers") == diffusers_plan(20, 0.75)  # type: ignore[arg-type]


def test_txt2img_runs_everything() -> None:
    assert txt2img_plan(12) == StepPlan(12, 0, 12)


@pytest.mark.parametrize(("steps", "strength"), [(0, 0.5), (-3, 0.5), (20, -0.1), (20, 1.5)])
def test_invalid_input_is_a_user_error(steps: int, strength: float) -> None:
    with pytest.raises(InvalidRequest):
        a1111_plan(steps, strength)
    with pytest.raises(InvalidRequest):
        diffusers_plan(steps, strength)
