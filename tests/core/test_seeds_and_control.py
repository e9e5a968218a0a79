"""Seeds (A1111 semantics), CFG hooks, interrupt/skip, progress previews, validation and out-of-memory errors."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

import modules.core.batch as batch_module
import modules.core.generate as generate_module
from modules.cancel import CancelToken
from modules.core.generate import generate
from modules.core.latents import NoiseSpec, batch_noise, image_noise, slerp
from modules.core.plan import resolve_seeds
from modules.errors import InvalidRequest, OutOfMemory
from modules.samplers.registry import default_registry
from modules.types import GenerationRequest
from tests.core.helpers import SD1, SDXL, block_mask, sample_image, tiny

REGISTRY = default_registry()
EULER = REGISTRY.resolve("Euler")
EULER_A = REGISTRY.resolve("Euler a")


def _request(**fields) -> GenerationRequest:
    values = {"prompt": "a cube", "negative_prompt": "blurry", "seed": 40, "steps": 3, "width": 64, "height": 64,
              **fields}
    return GenerationRequest(**values)


def test_seeds_follow_a1111():
    assert resolve_seeds(10, 20, 0.0, 3) == (10, 20, (10, 11, 12), (20, 21, 22))
    # with a variation strength every image keeps the main seed; only the variation seed advances
    assert resolve_seeds(10, 20, 0.5, 3) == (10, 20, (10, 10, 10), (20, 21, 22))
    draws = iter([7, 99])
    assert resolve_seeds(-1, -1, 0.0, 2, lambda: next(draws)) == (7, 99, (7, 8), (99, 100))


def test_noise_of_an_image_does_not_depend_on_its_batch():
    spec = NoiseSpec(shape=(4, 8, 8))
    alone, _ = image_noise(41, 0, spec)
    batch, generators = batch_noise((40, 41), (0, 1), spec)
    assert torch.equal(batch[1], alone)
    assert torch.equal(alone, torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(41)))
    # the generators continue the same stream for per-step noise
    assert torch.equal(torch.randn((4, 8, 8), generator=generators[1]),
                       torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(41))[1])


def test_slerp_matches_a1111_cases():
    low = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(1))
    high = torch.randn((4, 8, 8), generator=torch.Generator().manual_seed(2))
    assert torch.equal(slerp(0.0, low, high), low)
    torch.testing.assert_close(slerp(1.0, low, high), high)
    assert torch.equal(slerp(0.3, low, low), low * 0.3 + low * 0.7)  # near-parallel: A1111's linear branch
    mid = slerp(0.5, low, high)
    assert abs(mid.norm() - low.norm()) / low.norm() < 0.1  # spherical: keeps the noise magnitude


def test_variation_strength_zero_is_no_variation_and_nonzero_changes_noise():
    plain, _ = image_noise(5, 0, NoiseSpec(shape=(4, 8, 8)))
    assert torch.equal(image_noise(5, 77, NoiseSpec(shape=(4, 8, 8), subseed_strength=0.0))[0], plain)
    assert not torch.equal(image_noise(5, 77, NoiseSpec(shape=(4, 8, 8), subseed_strength=0.2))[0], plain)


def test_seed_resize_keeps_the_centre_of_the_smaller_noise():
    small, _ = image_noise(5, 0, NoiseSpec(shape=(4, 4, 4)))
    resized, _ = image_noise(5, 0, NoiseSpec(shape=(4, 8, 8), seed_resize_from=(32, 32)))
    assert torch.equal(resized[:, 2:6, 2:6], small)


def test_same_seed_gives_the_same_image_alone_and_in_a_batch():
    alone = generate(_request(seed=41), tiny(SD1), EULER_A)
    batch = generate(_request(seed=40, batch_size=2), tiny(SD1), EULER_A)
    assert batch.seeds == (40, 41)
    difference = np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(batch.images[1], dtype=int))
    assert difference.max() <= 1  # the UNet batch may change the last float bits, never the picture


def test_eta_noise_seed_delta_changes_ancestral_noise_only():
    base = generate(_request(), tiny(SD1), EULER_A).images[0]
    delta = generate(_request(overrides={"eta_noise_seed_delta": 31337}), tiny(SD1), EULER_A).images[0]
    assert not np.array_equal(np.asarray(base), np.asarray(delta))


def test_hook_sees_the_cfg_formula_and_can_replace_the_prediction():
    seen = []

    def check(ctx):
        expected = ctx.noise_pred_uncond + ctx.cfg_scale * (ctx.noise_pred_cond - ctx.noise_pred_uncond)
        seen.append((ctx.step, ctx.total, torch.equal(ctx.noise_pred, expected), ctx.sigma > 0))

    plain = generate(_request(cfg_scale=5.0), tiny(SD1), EULER, hooks=[check])
    assert seen == [(0, 3, True, True), (1, 3, True, True), (2, 3, True, True)]

    def zero(ctx):
        ctx.noise_pred = torch.zeros_like(ctx.noise_pred)

    changed = generate(_request(cfg_scale=5.0), tiny(SD1), EULER, hooks=[zero])
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(changed.images[0]))


def test_cfg_scale_one_has_no_uncond_prediction():
    seen = []
    generate(_request(cfg_scale=1.0, steps=1), tiny(SD1), EULER,
             hooks=[lambda ctx: seen.append(ctx.noise_pred_uncond is None and ctx.noise_pred is ctx.noise_pred_cond)])
    assert seen == [True]


def test_interrupt_keeps_finished_batches_and_the_current_one():
    cancel = CancelToken()
    events = []

    def progress(event):
        events.append((event.job_no, event.step))
        if event.job_no == 1 and event.step == 1:
            cancel.interrupt()

    output = generate(_request(n_iter=3), tiny(SD1), EULER, cancel=cancel, on_progress=progress)
    assert output.interrupted
    assert output.seeds == (40, 41)  # batch 0 complete, batch 1 decoded from its latest estimate, batch 2 never ran
    assert output.incomplete == (1,)  # saved only with save_incomplete_images (A1111)
    assert events == [(0, 1), (0, 2), (0, 3), (1, 1)]


def test_skip_ends_only_the_current_batch():
    cancel = CancelToken()
    events = []

    def progress(event):
        events.append((event.job_no, event.step))
        if event.job_no == 0 and event.step == 1:
            cancel.skip()

    output = generate(_request(n_iter=2), tiny(SD1), EULER, cancel=cancel, on_progress=progress)
    assert not output.interrupted
    assert output.seeds == (40, 41) and output.incomplete == (0,)
    assert events == [(0, 1), (1, 1), (1, 2), (1, 3)]


def test_progress_reports_every_step_with_previews_every_n():
    events = []
    generate(_request(steps=4, overrides={"show_progress_every_n_steps": 2}), tiny(SDXL), EULER,
             on_progress=events.append)
    assert [(e.step, e.total_steps, e.preview is not None) for e in events] == [
        (1, 4, False), (2, 4, True), (3, 4, False), (4, 4, True)]
    assert events[1].preview.size == (8, 8)


def test_full_previews_decode_the_estimate_with_the_vae():
    """A1111's "Full" live preview: full size, and at Euler's last step the estimate is the final picture."""
    events = []
    output = generate(_request(steps=4, overrides={"show_progress_every_n_steps": 2, "show_progress_type": "Full"}),
                      tiny(SD1), EULER, on_progress=events.append)
    previews = [e.preview for e in events if e.preview is not None]
    assert [preview.size for preview in previews] == [(64, 64), (64, 64)]
    assert np.array_equal(np.asarray(previews[-1]), np.asarray(output.images[0]))
    assert not np.array_equal(np.asarray(previews[0]), np.asarray(previews[-1]))


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"steps": 0}, "steps"),
        ({"width": 60}, "width"),
        ({"height": 0}, "height"),
        ({"width": 8192}, "width"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_iter": 0}, "n_iter"),
        ({"cfg_scale": -1.0}, "cfg_scale"),
        ({"subseed_strength": 1.5}, "subseed_strength"),
        ({"seed": -2}, "seed"),
        ({"clip_skip": 0}, "clip_skip"),
        ({"clip_skip": 4}, "clip_skip"),
        ({"mode": "img2img"}, "init_image"),
        ({"mode": "inpaint", "init_image": sample_image()}, "mask"),
        ({"mode": "inpaint", "init_image": sample_image(), "mask": block_mask(32, 32)}, "mask size"),
        ({"mode": "img2img", "init_image": sample_image(), "denoising_strength": 1.5}, "denoising_strength"),
    ],
)
def test_invalid_requests_name_the_field(fields, field_name):
    with pytest.raises(InvalidRequest, match=field_name):
        generate(_request(**fields), tiny(SD1), EULER)


def test_out_of_memory_becomes_a_user_error(monkeypatch):
    def fail(loop):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(batch_module, "run_denoise", fail)
    with pytest.raises(OutOfMemory, match="64x64"):
        generate(_request(), tiny(SD1), EULER)


def test_an_out_of_memory_job_frees_its_tensors_and_the_next_job_runs(monkeypatch):
    """An OOM anywhere in the loop: the tensors the failed job held are freed (the error keeps no traceback into
    the loop), the allocator cache is emptied, and the same models generate the next job."""
    held: list[weakref.ref] = []
    emptied: list[object] = []

    def fail(loop):
        scratch = torch.ones(1024, 1024)
        held.append(weakref.ref(scratch))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(generate_module, "empty_cache", emptied.append)
    with monkeypatch.context() as patch:
        patch.setattr(batch_module, "run_denoise", fail)
        with pytest.raises(OutOfMemory) as error:
            generate(_request(), tiny(SD1), EULER)
    assert error.value.__cause__ is None and held[0]() is None
    assert emptied == [tiny(SD1).device]
    assert generate(_request(), tiny(SD1), EULER).images[0].size == (64, 64)


def test_gpu_rng_source_without_cuda_draws_on_the_cpu_and_says_so():
    sampler = default_registry().resolve("Euler a")
    request = GenerationRequest(prompt="a cube", seed=5, steps=3, width=64, height=64)
    on_cpu = generate(request, tiny(SD1), sampler)
    asked_gpu = generate(request.with_changes(overrides={"randn_source": "GPU"}), tiny(SD1), sampler)
    assert np.array_equal(np.asarray(asked_gpu.images[0]), np.asarray(on_cpu.images[0]))
    assert asked_gpu.noise_source == on_cpu.noise_source == "CPU" and not on_cpu.notes
    assert asked_gpu.notes == ("Random number generator source GPU: no CUDA device here (cpu), so the noise was "
                               "drawn on the CPU (RNG: CPU).",)
