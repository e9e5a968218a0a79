"""Job planning: the options the core honours, step planning for img2img, and per-image seeds and prompts.

Everything here is pure (no torch): `plan_job()` turns a validated request into a `JobPlan` whose values are the
ones actually used (resolved seeds, the step plan, sampler labels), which is what the infotext is built from.

Step planning uses `modules.samplers.steps` with A1111's convention: with N steps and denoising strength s,
`t_enc = int(min(s, 0.999) * N)` and the last `t_enc + 1` steps of an N-step schedule run (20 steps at 0.75 run
16; diffusers' `get_timesteps` would run 15). The `img2img_fix_steps` option selects A1111's other convention
(a schedule of `int(N / min(s, 0.999))` steps whose last N run). Strength 0 plans no step: the (processed) init
image is returned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Collection, Mapping

from modules.core.uncond_skip import UncondSkip
from modules.samplers.steps import StepConvention, StepPlan, plan_img2img, txt2img_plan
from modules.samplers.tuning import DEFAULT_TUNING, SamplerSettings, Tuning
from modules.types import GenerationRequest

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class CoreOptions:
    """User settings the core reads, under AUTOMATIC1111's option keys (see modules/options.py for their meaning).

    Build with `CoreOptions.from_mapping(settings)`; a request's `overrides` are applied on top per job by
    `with_overrides()`. Keys the core does not use are ignored.
    """

    img2img_fix_steps: bool = False
    eta_noise_seed_delta: int = 0
    eta_ddim: float = 0.0
    eta_ancestral: float = 1.0
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = 0.0
    s_noise: float = 1.0
    s_min_uncond: float = 0.0
    s_min_uncond_all: bool = False
    skip_early_cond: float = 0.0
    randn_source: str = "CPU"
    initial_noise_multiplier: float = 1.0
    inpainting_mask_weight: float = 1.0
    overlay_inpaint: bool = True
    img2img_background_color: str = "#ffffff"
    sdxl_crop_top: int = 0
    sdxl_crop_left: int = 0
    sdxl_refiner_high_aesthetic_score: float = 6.0
    sdxl_refiner_low_aesthetic_score: float = 2.5
    sdxl_clip_l_skip: bool = False
    emphasis: str = "Original"
    tiling: bool = False
    comma_padding_backtrack: int = 20
    pad_cond_uncond: bool = False
    live_previews_enable: bool = True
    show_progress_every_n_steps: int = 10
    show_progress_type: str = "Approx cheap"
    save_images_before_highres_fix: bool = False
    ESRGAN_tile: int = 192
    ESRGAN_tile_overlap: int = 8
    auto_vae_precision: bool = True
    tiled_vae: bool = False
    token_merging_ratio: float = 0.0
    token_merging_ratio_img2img: float = 0.0
    token_merging_ratio_hr: float = 0.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "CoreOptions":
        """Pick the keys this class knows from a settings mapping, converting each to the field's type."""
        return cls().with_overrides(values)

    def with_overrides(self, values: Mapping[str, Any]) -> "CoreOptions":
        """Copy with the known keys of `values` replaced (A1111 `override_settings` semantics for one job)."""
        changes: dict[str, Any] = {}
        for spec in fields(self):
            if spec.name in values:
                changes[spec.name] = _coerce(type(getattr(self, spec.name)), values[spec.name])
        return replace(self, **changes)

    def sampler_settings(self, eta: float | None) -> SamplerSettings:
        """The sampler settings of a job whose request asks for `eta` (None: the setting of the sampler's kind)."""
        return SamplerSettings(eta=eta, eta_ddim=self.eta_ddim, eta_ancestral=self.eta_ancestral,
                               s_churn=self.s_churn, s_tmin=self.s_tmin, s_tmax=self.s_tmax, s_noise=self.s_noise)

    def uncond_skip(self, on_timesteps: bool = False) -> UncondSkip:
        """When a pass skips the negative prompt (`on_timesteps`: the sampler is one of A1111's timestep ones)."""
        return UncondSkip(self.s_min_uncond, self.s_min_uncond_all, self.skip_early_cond, on_timesteps)

    def token_merging(self, mode: str, overridden: Collection[str] = ()) -> float:
        """The token merging ratio of a job's (first) pass, A1111's rule: txt2img uses `token_merging_ratio`;
        img2img and inpaint `token_merging_ratio_img2img` where it is not 0, unless the job's overrides (the keys
        `overridden`, e.g. from a pasted infotext) set `token_merging_ratio` to a non-zero value."""
        if mode == "txt2img" or ("token_merging_ratio" in overridden and self.token_merging_ratio):
            return self.token_merging_ratio
        return self.token_merging_ratio_img2img or self.token_merging_ratio

    def token_merging_hr(self) -> float:
        """The ratio of hires fix's second pass: `token_merging_ratio_hr` where it is not 0, else the first's."""
        return self.token_merging_ratio_hr or self.token_merging_ratio


def _coerce(kind: type, value: Any) -> Any:
    """Convert a settings value to a field's type ("false" is False for flags, unlike `bool("false")`)."""
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return kind(value)


def plan_steps(steps: int, denoising_strength: float | None, fix_steps: bool = False) -> StepPlan:
    """The step plan of a job: the whole schedule for txt2img (`denoising_strength` None), else A1111's rule."""
    if denoising_strength is None:
        return txt2img_plan(steps)
    convention = StepConvention.A1111_FIX_STEPS if fix_steps else StepConvention.A1111
    return plan_img2img(steps, denoising_strength, convention)


def random_seed() -> int:
    """A1111's choice for seed -1: uniform in [0, 4294967294)."""
    return random.randrange(4294967294)


@dataclass(frozen=True)
class HiresTarget:
    """Where hires fix takes a `width` x `height` first pass (A1111 `calculate_target_resolution`): the upscaler
    resizes to `upscale_to` (w, h); then `truncate` (x, y) latent columns/rows are cropped, half on each side."""

    upscale_to: tuple[int, int]
    truncate: tuple[int, int] = (0, 0)

    def latent_size(self, factor: int) -> tuple[int, int]:
        """(h, w) of the second pass's latents after the crop."""
        width, height = self.upscale_to
        return height // factor - self.truncate[1], width // factor - self.truncate[0]


def hires_target(width: int, height: int, scale: float, resize_x: int, resize_y: int,
                 factor: int = 8) -> HiresTarget:
    """A1111's rules: both resize sides 0 = `scale` times the size; one side = keep the aspect ratio; both = cover
    that size keeping the aspect ratio, then crop to it."""
    if resize_x == 0 and resize_y == 0:
        return HiresTarget((int(width * scale), int(height * scale)))
    if resize_y == 0:
        return HiresTarget((resize_x, resize_x * height // width))
    if resize_x == 0:
        return HiresTarget((resize_y * width // height, resize_y))
    if width / height < resize_x / resize_y:
        upscale_to = (resize_x, resize_x * height // width)
    else:
        upscale_to = (resize_y * width // height, resize_y)
    return HiresTarget(upscale_to, ((upscale_to[0] - resize_x) // factor, (upscale_to[1] - resize_y) // factor))


@dataclass(frozen=True)
class HiresPlan:
    """The second pass of hires fix: target, upscaler name, its img2img step plan over `hr_steps` requested
    steps, sampler labels and one prompt pair per image of the job."""

    target: HiresTarget
    upscaler: str
    steps: StepPlan
    hr_steps: int
    sampler: str
    schedule: str
    tuning: Tuning
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    from_image: bool = False
    """The first pass is a given picture (`firstpass_image`): only the second pass samples."""
    token_merging_ratio: float = 0.0
    """The second pass's token merging ratio (`CoreOptions.token_merging_hr`)."""


@dataclass(frozen=True)
class JobPlan:
    """Resolved values of one job; tuples have one entry per image of the whole job (batch_size * n_iter)."""

    seed: int
    subseed: int
    seeds: tuple[int, ...]
    subseeds: tuple[int, ...]
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...]
    steps: StepPlan
    sampler: str
    schedule: str
    tuning: Tuning
    """The sampler's eta, churn and sigma noise (`modules/samplers/tuning.py`)."""
    batch_size: int
    n_iter: int
    width: int
    height: int
    options: CoreOptions
    hires: HiresPlan | None = None
    token_merging_ratio: float = 0.0
    """The (first) pass's token merging ratio (`CoreOptions.token_merging`); 0 = none."""

    @property
    def pass_count(self) -> int:
        """Sampling passes per batch: 2 with hires fix (A1111 doubles its job count), else 1 (also hires fix from
        a given first-pass picture)."""
        return 1 if self.hires is None or self.hires.from_image else 2

    @property
    def token_merging_infotext(self) -> dict[str, float]:
        """A1111's infotext keys for the token merging ratios the passes used, each written when it is not 0."""
        params: dict[str, float] = {}
        if self.token_merging_ratio:
            params["Token merging ratio"] = self.token_merging_ratio
        if self.hires is not None and self.hires.token_merging_ratio:
            params["Token merging ratio hr"] = self.hires.token_merging_ratio
        return params

    def batch_slice(self, batch_no: int) -> slice:
        return slice(batch_no * self.batch_size, (batch_no + 1) * self.batch_size)


def resolve_seeds(
    seed: int, subseed: int, subseed_strength: float, count: int, seed_resolver: Callable[[], int] = random_seed
) -> tuple[int, int, tuple[int, ...], tuple[int, ...]]:
    """Per-image seeds as A1111 `process_images_inner` assigns them.

    -1 becomes a random seed, drawn once per job. Image i gets `seed + i` and `subseed + i`; but when a variation
    strength is set every image keeps the same main seed (only the variation seed advances), as in A1111.
    """
    seed = seed_resolver() if seed == -1 else seed
    subseed = seed_resolver() if subseed == -1 else subseed
    seeds = tuple(seed + (i if subseed_strength == 0 else 0) for i in range(count))
    subseeds = tuple(subseed + i for i in range(count))
    return seed, subseed, seeds, subseeds


@dataclass(frozen=True)
class SamplerLabels:
    """The labels of a resolved sampler that a plan records, and the eta, churn and noise it runs with."""

    sampler: str
    schedule: str
    tuning: Tuning = DEFAULT_TUNING


def plan_hires(request: GenerationRequest, options: CoreOptions, upscaler: str, labels: SamplerLabels,
               factor: int = 8) -> HiresPlan:
    """The second pass of a validated txt2img request with `enable_hr`."""
    count = request.batch_size * request.n_iter
    hr_steps = request.hr_second_pass_steps or request.steps
    target = hires_target(request.width, request.height, request.hr_scale, request.hr_resize_x,
                          request.hr_resize_y, factor)
    return HiresPlan(
        target=target, upscaler=upscaler,
        steps=plan_steps(hr_steps, request.denoising_strength, options.img2img_fix_steps), hr_steps=hr_steps,
        sampler=labels.sampler, schedule=labels.schedule, tuning=labels.tuning,
        prompts=(request.hr_prompt or request.prompt,) * count,
        negative_prompts=(request.hr_negative_prompt or request.negative_prompt,) * count,
        from_image=request.firstpass_image is not None,
        token_merging_ratio=options.token_merging_hr(),
    )


def plan_job(
    request: GenerationRequest,
    options: CoreOptions,
    sampler_label: str,
    schedule_label: str,
    tuning: Tuning,
    seed_resolver: Callable[[], int] = random_seed,
    hires: HiresPlan | None = None,
) -> JobPlan:
    """Resolve seeds, prompts and the step plan of a validated request (`hires`: its second pass, if any)."""
    count = request.batch_size * request.n_iter
    seed, subseed, seeds, subseeds = resolve_seeds(
        request.seed, request.subseed, request.subseed_strength, count, seed_resolver
    )
    strength = None if request.mode == "txt2img" else request.denoising_strength
    return JobPlan(
        seed=seed,
        subseed=subseed,
        seeds=seeds,
        subseeds=subseeds,
        prompts=(request.prompt,) * count,
        negative_prompts=(request.negative_prompt,) * count,
        steps=plan_steps(request.steps, strength, options.img2img_fix_steps),
        sampler=sampler_label,
        schedule=schedule_label,
        tuning=tuning,
        batch_size=request.batch_size,
        n_iter=request.n_iter,
        width=request.width,
        height=request.height,
        options=options,
        hires=hires,
        token_merging_ratio=options.token_merging(request.mode, request.overrides.keys()),
    )
