"""SigmaScheduler inside the generation core: img2img tails, inpainting, the adaptive sampler's growing plan, errors."""

from __future__ import annotations

import pytest
import torch

from modules.core.generate import generate
from modules.errors import InvalidRequest
from modules.models.tiny import BASE_SCHEDULER_CONFIG
from modules.samplers.registry import default_registry
from modules.samplers.sigma_scheduler import SigmaScheduler
from modules.types import GenerationRequest
from tests.core.helpers import SD1, LatentCapture, block_mask, sample_image, tiny

REGISTRY = default_registry()
NEW = ["DPM++ 2S a", "DPM fast", "DPM adaptive", "Restart"]


def _build(name: str, steps: int) -> SigmaScheduler:
    scheduler = REGISTRY.resolve(name).build(BASE_SCHEDULER_CONFIG, steps, "cpu")
    assert isinstance(scheduler, SigmaScheduler)
    return scheduler


def test_img2img_runs_the_tail_of_the_sigma_list_as_a1111_slices_it() -> None:
    scheduler = _build("DPM++ 2S a", 10)
    full = scheduler.sigmas.clone()
    timesteps = scheduler.begin_at(4)
    assert torch.equal(scheduler.sigmas, full[4:])
    assert scheduler.init_noise_sigma == pytest.approx(float(full[4]))
    assert len(timesteps) == 2 * 6 - 1  # two evaluations per step, one for the last step into sigma 0
    torch.testing.assert_close(scheduler.sigma_of(timesteps[:1]), full[4])
    noised = scheduler.add_noise(torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2), timesteps[:1])
    torch.testing.assert_close(noised, torch.full((1, 4, 2, 2), float(full[4])))


def test_second_order_samplers_count_two_model_calls_per_step_for_prompt_schedules() -> None:
    assert _build("DPM++ 2S a", 4).order == 2 and _build("Restart", 4).order == 2
    assert _build("DPM fast", 4).order == 1 and _build("DPM adaptive", 4).order == 1


@pytest.mark.parametrize("name", ["DPM fast", "DPM adaptive"])
def test_one_step_of_dpm_fast_or_adaptive_is_a_clear_error(name: str) -> None:
    with pytest.raises(InvalidRequest, match="cannot run these steps: .*at least 2 steps"):
        _build(name, 1)


def _request(name: str, **fields: object) -> GenerationRequest:
    values: dict[str, object] = {"prompt": "a red cube", "seed": 3, "steps": 6, "width": 64, "height": 64,
                                 "cfg_scale": 5.0, "sampler": name, **fields}
    return GenerationRequest(**values)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_img2img_and_inpaint_run_with_every_new_sampler(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    capture = LatentCapture(monkeypatch)
    result = generate(_request(name, mode="img2img", denoising_strength=0.5, init_image=sample_image()), tiny(SD1),
                      REGISTRY.resolve(name))
    assert len(result.images) == 1 and torch.isfinite(capture.last).all()
    inpainted = generate(_request(name, mode="inpaint", denoising_strength=0.75, init_image=sample_image(),
                                  mask=block_mask(), mask_blur=0), tiny(SD1), REGISTRY.resolve(name))
    assert torch.isfinite(capture.last).all()
    pixels = inpainted.images[0].load()
    source = sample_image().load()
    assert pixels[2, 2] == source[2, 2]  # outside the mask the picture is kept (overlay)


@pytest.mark.slow
def test_dpm_adaptive_reports_progress_as_its_plan_grows() -> None:
    totals: list[tuple[int, int]] = []
    generate(_request("DPM adaptive"), tiny(SD1), REGISTRY.resolve("DPM adaptive"),
             on_progress=lambda event: totals.append((event.step, event.total_steps)))
    steps = [step for step, _ in totals]
    assert steps == list(range(1, len(totals) + 1)) and len(totals) > 6
    assert totals[-1][0] == totals[-1][1]  # the last event is complete
