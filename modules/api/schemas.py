"""Pydantic mirrors of AUTOMATIC1111's `/sdapi/v1` JSON (request bodies and response shapes), plus the job API's.

Field names, types and defaults are A1111 1.10's API models, whose defaults are its processing dataclass
defaults, not its UI's (50 steps, sampler "Euler"). Every generation field is optional (`null` means the default)
and unknown fields are ignored, so requests written for A1111 and its extensions validate. Which fields are
honoured or refused is decided in `modules.api.translate`.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())


class GenerationFields(_Lenient):
    """Fields shared by txt2img and img2img (A1111 `StableDiffusionProcessing`)."""

    prompt: Optional[str] = ""
    negative_prompt: Optional[str] = ""
    styles: Optional[list[str]] = None
    seed: Optional[int] = -1
    subseed: Optional[int] = -1
    subseed_strength: Optional[float] = 0
    seed_resize_from_h: Optional[int] = -1
    seed_resize_from_w: Optional[int] = -1
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: Optional[int] = 1
    n_iter: Optional[int] = 1
    steps: Optional[int] = 50
    cfg_scale: Optional[float] = 7.0
    width: Optional[int] = 512
    height: Optional[int] = 512
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: Optional[bool] = False
    do_not_save_grid: Optional[bool] = False
    eta: Optional[float] = None
    s_min_uncond: Optional[float] = None
    s_churn: Optional[float] = None
    s_tmax: Optional[float] = None
    s_tmin: Optional[float] = None
    s_noise: Optional[float] = None
    override_settings: Optional[dict[str, Any]] = None
    override_settings_restore_afterwards: Optional[bool] = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = None
    disable_extra_networks: Optional[bool] = False
    comments: Optional[dict[str, Any]] = None
    force_task_id: Optional[str] = None
    sampler_index: Optional[str] = Field(default="Euler", description="Deprecated A1111 name of sampler_name.")
    script_name: Optional[str] = None
    script_args: Optional[list[Any]] = Field(default_factory=list)
    send_images: Optional[bool] = True
    save_images: Optional[bool] = False
    alwayson_scripts: Optional[dict[str, Any]] = Field(default_factory=dict)
    infotext: Optional[str] = Field(default=None, description="An infotext whose values fill the fields not given.")


class HiresFields(_Lenient):
    """txt2img's hires-fix fields (they count only with `enable_hr`)."""

    enable_hr: Optional[bool] = False
    firstpass_image: Optional[str] = None
    denoising_strength: Optional[float] = None
    firstphase_width: Optional[int] = 0
    firstphase_height: Optional[int] = 0
    hr_scale: Optional[float] = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: Optional[int] = 0
    hr_resize_x: Optional[int] = 0
    hr_resize_y: Optional[int] = 0
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: Optional[str] = ""
    hr_negative_prompt: Optional[str] = ""


class InitImageFields(_Lenient):
    """img2img / inpaint fields (A1111 `StableDiffusionProcessingImg2Img` API defaults)."""

    init_images: Optional[list[str]] = Field(default=None, description="Base64 images, with or without a data: URL.")
    resize_mode: Optional[int] = Field(default=0, description="0 just resize, 1 crop and resize, 2 resize and fill.")
    denoising_strength: Optional[float] = 0.75
    image_cfg_scale: Optional[float] = None
    mask: Optional[str] = Field(default=None, description="Base64 mask; white = repaint. Its presence means inpaint.")
    mask_blur_x: Optional[int] = 4
    mask_blur_y: Optional[int] = 4
    mask_blur: Optional[int] = None
    mask_round: Optional[bool] = True
    inpainting_fill: Optional[int] = Field(default=0, description="0 fill, 1 original, 2 latent noise, "
                                                                     "3 latent nothing.")
    inpaint_full_res: Optional[bool] = Field(default=True, description="True = inpaint only the masked area.")
    inpaint_full_res_padding: Optional[int] = 0
    inpainting_mask_invert: Optional[int] = 0
    initial_noise_multiplier: Optional[float] = None
    latent_mask: Optional[str] = None
    include_init_images: Optional[bool] = False


class Txt2ImgRequest(HiresFields, GenerationFields):
    """Body of POST /sdapi/v1/txt2img (A1111 `StableDiffusionTxt2ImgProcessingAPI`)."""


class Img2ImgRequest(InitImageFields, GenerationFields):
    """Body of POST /sdapi/v1/img2img (A1111 `StableDiffusionImg2ImgProcessingAPI`)."""


class JobRequest(InitImageFields, HiresFields, GenerationFields):
    """Body of POST /api/v1/jobs: the txt2img or img2img fields plus `mode`.

    `mode` "txt2img" ignores the img2img fields; "img2img" needs `init_images` and becomes an inpaint job when a
    `mask` is given (as in A1111); "inpaint" insists on a mask. `denoising_strength` defaults to 0.75.
    """

    mode: Literal["txt2img", "img2img", "inpaint"] = "txt2img"
    denoising_strength: Optional[float] = 0.75


class GenerationResponse(BaseModel):
    """Response of txt2img and img2img (A1111 `TextToImageResponse` / `ImageToImageResponse`)."""

    images: Optional[list[str]] = Field(default=None, description="Base64 PNGs with the infotext embedded.")
    parameters: dict[str, Any]
    info: str = Field(description="JSON text: seeds, prompts, infotexts, model, ... (A1111 `Processed.js()`).")


class PngInfoRequest(_Lenient):
    image: str = Field(description="Base64 image (PNG, JPEG or WebP), with or without a data: URL prefix.")


class PngInfoResponse(BaseModel):
    info: str = Field(description="The infotext stored in the image (empty if none).")
    items: dict[str, Any] = Field(description="Other text metadata of the image.")
    parameters: dict[str, Any] = Field(description="The infotext parsed into fields, as A1111 parses it.")


class ProgressResponse(BaseModel):
    progress: float = Field(description="0 to 1.")
    eta_relative: float = Field(description="Seconds left (estimate).")
    state: dict[str, Any]
    current_image: Optional[str] = Field(default=None, description="Latest preview, base64 PNG.")
    textinfo: Optional[str] = None
    worker: Optional[str] = Field(default=None, description="The worker running the job (with --workers / "
                                                            "--ray-address; not in A1111).")


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: Optional[list[str]] = None
    default_rho: Optional[float] = None
    need_inner_model: Optional[bool] = None


class UpscalerItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    model_url: Optional[str] = None
    scale: Optional[float] = None


class LatentUpscaleModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    title: str
    model_name: str
    hash: Optional[str] = None
    sha256: Optional[str] = None
    filename: str
    config: Optional[str] = None


class SDVaeItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    filename: str


class EmbeddingItem(BaseModel):
    step: Optional[int] = None
    sd_checkpoint: Optional[str] = None
    sd_checkpoint_name: Optional[str] = None
    shape: Optional[int] = Field(default=None, description="Vector length, when the file header states it.")
    vectors: Optional[int] = Field(default=None, description="Number of vectors, when the file header states it.")


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class ScriptsList(BaseModel):
    """GET /sdapi/v1/scripts: lower-case titles of the selectable scripts ("Script" dropdown) per tab."""

    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArg(BaseModel):
    """One control of a script, in order (A1111 `ScriptArg`, plus `name`: the key for named args)."""

    name: str
    label: Optional[str] = None
    value: Optional[Any] = None
    minimum: Optional[Any] = None
    maximum: Optional[Any] = None
    step: Optional[Any] = None
    choices: Optional[list[Any]] = None


class ScriptInfo(BaseModel):
    """GET /sdapi/v1/script-info: one row per script and tab (A1111 `ScriptInfo`)."""

    name: str
    is_alwayson: bool
    is_img2img: bool
    args: list[ScriptArg]


class MemoryResponse(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]


class JobCreated(BaseModel):
    job_id: str
    state: str
    position: Optional[int] = Field(default=None, description="1 = runs next; null once running.")


class JobProgressModel(BaseModel):
    fraction: float
    step: int
    total_steps: int
    job_no: int
    job_count: int
    eta: Optional[float] = None
    textinfo: str = ""


class JobResult(BaseModel):
    images: list[str] = Field(description="Base64 PNGs with the infotext embedded.")
    info: dict[str, Any] = Field(description="Seeds, prompts, infotexts, model (the same keys as A1111's info).")


class JobStatus(BaseModel):
    job_id: str
    state: str
    owner: Optional[str] = None
    description: str = ""
    position: Optional[int] = None
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    progress: JobProgressModel
    error: Optional[str] = None
    result: Optional[JobResult] = Field(default=None, description="Present once done (or interrupted).")
    worker: Optional[str] = Field(default=None, description="The worker running (or that ran) the job, with "
                                                            "--workers / --ray-address.")
    notes: list[str] = Field(default_factory=list, description="What happened to the job on the way (a lost "
                                                                "worker: queued again).")


class JobList(BaseModel):
    jobs: list[JobStatus]
    others: int = Field(default=0, description="Queued and running jobs of other users (with --api-auth), "
                                               "counted, not shown.")


class WorkerItem(BaseModel):
    """One worker of `GET /api/v1/workers`."""

    name: str
    device: str = Field(description="What it runs on, e.g. \"cuda float16 (GPU 2)\"; empty while it starts.")
    state: str = Field(description="starting, idle, busy or unavailable (it failed to start).")
    job_id: Optional[str] = Field(default=None, description="The job it runs, when busy.")
    checkpoints: list[str] = Field(description="Titles of the checkpoints in its model cache (as of its last job).")
    node: str = Field(default="", description="The host it runs on.")
    pid: Optional[int] = None
    jobs_done: int = 0


class WorkerList(BaseModel):
    executor: str = Field(description="\"ray\" with --workers / --ray-address, else \"local\" (no workers listed: "
                                      "jobs run in the server's process).")
    workers: list[WorkerItem]


class JobCancelResult(BaseModel):
    job_id: str
    cancelled: bool = Field(description="False when the job had already finished.")
    state: str


class PromptStyleItem(BaseModel):
    """One row of `GET /sdapi/v1/prompt-styles` (A1111's shape)."""

    name: str
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None


class ExtensionItem(BaseModel):
    """One row of `GET /sdapi/v1/extensions` (A1111's shape; git fields are empty for a folder that is no checkout)."""

    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int
    enabled: bool


class CreateEmbeddingRequest(BaseModel):
    """A1111's `POST /sdapi/v1/create/embedding` body."""

    name: str
    num_vectors_per_token: int = 1
    overwrite_old: bool = False
    init_text: str = "*"


class CreateResponse(BaseModel):
    """A1111's answer to `create/*`: what was written."""

    info: str


class HypernetworkItem(BaseModel):
    """A1111's `GET /sdapi/v1/hypernetworks` row (none are supported here: the list is empty)."""

    name: str
    path: Optional[str] = None


class SdModuleItem(BaseModel):
    """A1111's `GET /sdapi/v1/sd-modules` row (alternative UNet implementations; none here: the list is empty)."""

    model_name: str
    filename: str
