"""AUTOMATIC1111-compatible routes under /sdapi/v1 (the list, and what is not served: docs/compat.md).

txt2img/img2img are translated (`translate.build_job`), queued on the App's job queue like UI jobs and answered
when the job finishes; the handler waits on the job's event stream without holding a thread. An interrupted job
answers with the images finished before the interrupt; a failed one with its error (4xx bad input, 500 fault).
`progress`, `interrupt` and `skip` act on the running job, whoever submitted it; `progress` adds a top-level
`worker` (the Ray worker running it, null with the local executor) to A1111's answer.

`POST options` validates every change first (unknown keys and bad values: 422; unknown checkpoint: 404), then
applies and saves them all. A changed `sd_model_checkpoint` is loaded by a job on the queue (the one place that
loads weights) before the settings change and the POST answers; if the load fails, nothing changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from fastapi import APIRouter, Body, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from modules import devices
from modules.api import listings
from modules.api.auth import Authenticator, client_group
from modules.api.codec import decode_image, encode_png
from modules.api.results import generation_response, job_timestamp
from modules.api.schemas import (
    CreateEmbeddingRequest,
    CreateResponse,
    EmbeddingsResponse,
    ExtensionItem,
    GenerationFields,
    GenerationResponse,
    HypernetworkItem,
    Img2ImgRequest,
    LatentUpscaleModeItem,
    LoraItem,
    MemoryResponse,
    PngInfoRequest,
    PngInfoResponse,
    ProgressResponse,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptInfo,
    ScriptsList,
    SDModelItem,
    SdModuleItem,
    SDVaeItem,
    Txt2ImgRequest,
    UpscalerItem,
)
from modules.api.translate import (
    CHECKPOINT_KEY,
    VAE_KEY,
    build_job,
    find_checkpoint,
    find_vae,
    refuse_path_options,
)
from modules.errors import ModelNotFound
from modules.jobs import Job, JobContext, JobQueue
from modules.models.manager import ModelOptions

if TYPE_CHECKING:
    from modules.app import App

PREFIX = "/sdapi/v1"
_IDLE_STATE: dict[str, Any] = {
    "skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
    "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
}


async def wait_until_finished(queue: JobQueue, job: Job) -> None:
    """Return once `job` has finished (any final state), without blocking a thread."""
    with queue.subscribe(job.id) as subscription:
        async for _event in subscription:
            pass


async def generate_and_answer(app: "App", body: GenerationFields, mode: str, user: Optional[str],
                              group: Optional[str] = None) -> GenerationResponse:
    """Convert, queue, wait, answer: the whole of txt2img / img2img (`group`: the queue's round-robin group)."""
    api_job = await run_in_threadpool(build_job, body, app, mode)
    job = app.submit(api_job.request, owner=user, task_id=api_job.task_id, save=api_job.save_images, group=group)
    await wait_until_finished(app.jobs, job)
    result = job.outcome(timeout=0)  # re-raises the job's error
    embed = bool(app.settings.get().enable_pnginfo)
    return await run_in_threadpool(generation_response, body, result, job, send_images=api_job.send_images,
                                   embed_infotext=embed)


def progress_of(job: Job | None, skip_current_image: bool) -> ProgressResponse:
    """A1111's progress answer for the running job (or the idle answer)."""
    if job is None:
        return ProgressResponse(progress=0, eta_relative=0, state=dict(_IDLE_STATE), textinfo=None)
    progress = job.progress
    eta = progress.eta
    if eta is None:  # no rate measured yet: A1111's estimate from the time since the start
        elapsed = max(0.0, time.time() - (job.started or job.created))
        eta = elapsed / max(progress.fraction, 0.01) - elapsed
    state = {
        "skipped": job.cancel_token.skipped, "interrupted": job.cancel_token.interrupted,
        "stopping_generation": False, "job": job.id, "job_count": progress.job_count,
        "job_timestamp": job_timestamp(job), "job_no": progress.job_no, "sampling_step": progress.step,
        "sampling_steps": progress.total_steps,
    }
    preview = job.preview
    image = encode_png(preview) if preview is not None and not skip_current_image else None
    return ProgressResponse(progress=progress.fraction, eta_relative=eta, state=state, current_image=image,
                            textinfo=progress.textinfo or None, worker=job.worker)


def _checkpoint_title(app: "App", name: str) -> str:
    try:
        return find_checkpoint(app, name)
    except ModelNotFound as exc:  # A1111's words for it
        raise ModelNotFound(f"model {name!r} not found. {app.models.catalog.available_summary()}") from exc


def prepare_options(app: "App", changes: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(`changes` with checkpoint and VAE names resolved, whether they switch the checkpoint). Raises for unknown
    names, keys or bad values; applies nothing."""
    changes = dict(changes)
    refuse_path_options(app, changes)
    if changes.get(CHECKPOINT_KEY):
        changes[CHECKPOINT_KEY] = _checkpoint_title(app, str(changes[CHECKPOINT_KEY]))
    if changes.get(VAE_KEY):
        changes[VAE_KEY] = find_vae(app, str(changes[VAE_KEY]))
    current = app.settings.get()
    current.with_overrides(changes)  # validation only (InvalidRequest, 422)
    switch = bool(changes.get(CHECKPOINT_KEY)) and changes[CHECKPOINT_KEY] != current[CHECKPOINT_KEY]
    return changes, switch


def switch_checkpoint_job(app: "App", changes: dict[str, Any]) -> Callable[[JobContext], None]:
    """The queue job of a checkpoint switch: load the checkpoint the new settings name, then apply them."""
    def switch(ctx: JobContext) -> None:
        options = ModelOptions.from_mapping(app.settings.get().with_overrides(changes))
        with app.models.get(options=options):
            pass
        app.settings.update(changes)

    return switch


async def set_options(app: "App", changes: dict[str, Any]) -> None:
    """`POST options`: see the module doc."""
    prepared, switch = await run_in_threadpool(prepare_options, app, changes)
    if not switch:
        await run_in_threadpool(app.settings.update, prepared)
        return
    job = app.jobs.submit(switch_checkpoint_job(app, prepared),
                          description=f"load checkpoint {prepared[CHECKPOINT_KEY]}")
    await wait_until_finished(app.jobs, job)
    job.outcome(timeout=0)  # re-raises the load's error


def _reload_checkpoint(app: "App") -> None:
    """Load the current checkpoint now (A1111 moves it back to the device; here it is loaded into the cache)."""
    with app.models.get(options=ModelOptions.from_mapping(app.settings.get())):
        pass


def _add_generation_routes(router: APIRouter, app: "App", auth: Authenticator) -> None:
    @router.post("/txt2img", response_model=GenerationResponse)
    async def txt2img(body: Txt2ImgRequest, http: Request, user: Optional[str] = Depends(auth)) -> GenerationResponse:
        """Generate images from a prompt (A1111 fields and defaults)."""
        return await generate_and_answer(app, body, "txt2img", user, client_group(user, http))

    @router.post("/img2img", response_model=GenerationResponse)
    async def img2img(body: Img2ImgRequest, http: Request, user: Optional[str] = Depends(auth)) -> GenerationResponse:
        """Transform `init_images[0]`; with a `mask`, inpaint (white = repaint)."""
        return await generate_and_answer(app, body, "img2img", user, client_group(user, http))

    @router.get("/progress", response_model=ProgressResponse)
    def progress(skip_current_image: bool = False) -> ProgressResponse:
        """Progress of the running job (0 when idle) with its latest preview."""
        return progress_of(app.jobs.current(), skip_current_image)

    @router.post("/interrupt")
    def interrupt() -> dict[str, Any]:
        """Stop the running job; it answers with the images finished so far."""
        app.jobs.interrupt_current()
        return {}

    @router.post("/skip")
    def skip() -> None:
        """Abandon the running job's current batch and go on with the next one."""
        app.jobs.skip_current()

    @router.post("/png-info", response_model=PngInfoResponse)
    def png_info(body: PngInfoRequest) -> dict[str, Any]:
        """The generation parameters stored in an image."""
        return listings.png_info(decode_image(body.image, "image"))


def _add_option_routes(router: APIRouter, app: "App") -> None:
    @router.get("/options")
    def get_options() -> dict[str, Any]:
        """Every setting (and keys kept from config.json that this program does not use)."""
        return app.settings.get().to_json()

    @router.post("/options")
    async def post_options(changes: dict[str, Any] = Body(...)) -> None:
        """Change settings; all are validated before any is applied, then they are saved. A new checkpoint is
        loaded before the answer."""
        await set_options(app, changes)

    @router.get("/cmd-flags")
    def cmd_flags() -> dict[str, Any]:
        return listings.cmd_flags(app.launch)

    @router.get("/memory", response_model=MemoryResponse)
    def memory() -> dict[str, Any]:
        return devices.memory_stats(app.models.plan.device)


def _add_model_routes(router: APIRouter, app: "App") -> None:
    @router.get("/sd-models", response_model=list[SDModelItem])
    def sd_models() -> list[dict[str, Any]]:
        return listings.sd_models(app)

    @router.get("/sd-vae", response_model=list[SDVaeItem])
    def sd_vae() -> list[dict[str, Any]]:
        return listings.sd_vaes(app)

    @router.get("/samplers", response_model=list[SamplerItem])
    def samplers() -> list[dict[str, Any]]:
        return listings.samplers(app.samplers)

    @router.get("/schedulers", response_model=list[SchedulerItem])
    def schedulers() -> list[dict[str, Any]]:
        return listings.schedulers(app.samplers)

    @router.get("/upscalers", response_model=list[UpscalerItem])
    def upscalers() -> list[dict[str, Any]]:
        return listings.upscalers(app.models.upscalers)

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscaleModeItem])
    def latent_upscale_modes() -> list[dict[str, Any]]:
        return listings.latent_upscale_modes(app.models.upscalers)

    @router.get("/embeddings", response_model=EmbeddingsResponse)
    def embeddings() -> dict[str, Any]:
        return listings.embeddings(app)

    @router.get("/loras", response_model=list[LoraItem])
    def loras() -> list[dict[str, Any]]:
        return listings.loras(app)

    _add_refresh_routes(router, app)


def _add_refresh_routes(router: APIRouter, app: "App") -> None:
    @router.post("/refresh-checkpoints")
    def refresh_checkpoints() -> None:
        app.models.refresh()

    @router.post("/refresh-embeddings")
    def refresh_embeddings() -> None:
        app.networks.refresh_embeddings(force=True)

    @router.post("/refresh-loras")
    def refresh_loras() -> None:
        app.networks.refresh_loras(force=True)

    @router.post("/refresh-vae")
    def refresh_vae() -> None:
        app.models.refresh()

    @router.post("/unload-checkpoint")
    def unload_checkpoint() -> dict[str, Any]:
        app.models.unload()
        return {}

    @router.post("/reload-checkpoint")
    def reload_checkpoint() -> dict[str, Any]:
        _reload_checkpoint(app)
        return {}


def _add_script_routes(router: APIRouter, app: "App") -> None:
    @router.get("/scripts", response_model=ScriptsList)
    def scripts() -> dict[str, list[str]]:
        """Selectable scripts of the loaded extensions (the values `script_name` accepts), per tab."""
        return app.extensions.scripts.api_scripts()

    @router.get("/script-info", response_model=list[ScriptInfo])
    def script_info() -> list[dict[str, Any]]:
        """Every script (selectable and always-on) per tab with its controls, in `script_args` order."""
        return app.extensions.scripts.api_script_info()


def _add_library_routes(router: APIRouter, app: "App") -> None:
    @router.get("/prompt-styles", response_model=list[PromptStyleItem])
    def prompt_styles() -> list[dict[str, Any]]:
        """The styles of styles.csv (the names `styles` in a generation request accepts)."""
        return listings.prompt_styles(app.styles)

    @router.get("/extensions", response_model=list[ExtensionItem])
    def extensions() -> list[dict[str, Any]]:
        """Every discovered extension, enabled or not."""
        return listings.extensions(app.extensions)

    @router.get("/hypernetworks", response_model=list[HypernetworkItem])
    def hypernetworks() -> list[dict[str, Any]]:
        """Hypernetworks are not supported here (docs/compat.md): always empty."""
        return []

    @router.get("/sd-modules", response_model=list[SdModuleItem])
    def sd_modules() -> list[dict[str, Any]]:
        """A1111's alternative UNet implementations (from extensions such as TensorRT): none here."""
        return []

    @router.post("/create/embedding", response_model=CreateResponse)
    async def create_embedding_route(body: CreateEmbeddingRequest) -> dict[str, Any]:
        """A new untrained embedding for the current checkpoint, made in the job queue (it needs the model)."""
        job = app.jobs.submit(create_embedding_job(app, body), description=f"create embedding {body.name}")
        await wait_until_finished(app.jobs, job)
        path = job.outcome(timeout=0)
        return {"info": f"create embedding filename: {path}"}


def create_embedding_job(app: "App", body: CreateEmbeddingRequest) -> Callable[[JobContext], Path]:
    """The job of `POST create/embedding`: the current checkpoint's text encoders, the file, a rescan."""
    def create(ctx: JobContext) -> Path:
        options = ModelOptions.from_mapping(app.settings.get())
        record = app.models.resolve_checkpoint(options=options)
        with app.models.get(record, options=options) as components:
            from modules.networks.create_embedding import create_embedding  # torch: not at start-up

            path = create_embedding(app.paths.embeddings, body.name, components, record.shorthash, record.model_name,
                                    body.num_vectors_per_token, body.overwrite_old, body.init_text)
        app.networks.refresh_embeddings(force=True)
        return path

    return create


def build_sdapi_router(app: "App", auth: Authenticator) -> APIRouter:
    """All /sdapi/v1 routes, each behind `auth`."""
    router = APIRouter(prefix=PREFIX, tags=["sdapi"], dependencies=[Depends(auth)])
    _add_generation_routes(router, app, auth)
    _add_option_routes(router, app)
    _add_model_routes(router, app)
    _add_script_routes(router, app)
    _add_library_routes(router, app)
    if app.launch.api_server_stop:
        _add_server_routes(router, app)
    return router


def _add_server_routes(router: APIRouter, app: "App") -> None:
    """`--api-server-stop`: A1111's server-stop, server-restart (501 when no server can be restarted), server-kill."""
    @router.post("/server-stop")
    def server_stop() -> Response:
        app.server.stop()
        return Response("Stopping.")

    @router.post("/server-restart")
    def server_restart() -> Response:
        if not app.server.restart():
            return Response(status_code=501)
        return Response("Restarting.")

    @router.post("/server-kill")
    def server_kill() -> Response:
        app.server.kill()
        return Response("Killing.")
