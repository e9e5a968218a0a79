"""Our own job API under /api/v1: submit without waiting, poll, stream progress, cancel.

    POST   /api/v1/jobs              body: txt2img/img2img fields + "mode"  -> 202 {job_id, state, position}
    GET    /api/v1/jobs              the queue: queued, running and recently finished jobs (oldest first)
    GET    /api/v1/jobs/{id}         status, progress, ETA, error; `result` (base64 images + info) once finished
    GET    /api/v1/jobs/{id}/events  server-sent events until the job finishes (see `event_stream`)
    DELETE /api/v1/jobs/{id}         cancel a queued job, interrupt a running one
    GET    /api/v1/workers           the workers jobs run on (with --workers / --ray-address): device, state, models

The body of POST is A1111's (see `modules.api.translate`) with `mode` added; `force_task_id` chooses the job id.
With --api-auth each job belongs to the user who submitted it: other users get 404 for it and do not see it in
the listing (its `others` field counts them). Without auth every client sees every job. Waiting jobs run in the
queue's fair order, round-robin between users (the --api-auth user, else the client address; see
`modules.jobs.queue`), and `position` is the place in that order. With Ray workers a job's `worker` names the one
running it, and `notes` says when it was queued again after losing one (docs/scale-out.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, AsyncIterator, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modules.api.auth import Authenticator, client_group
from modules.api.results import encode_images, info_object, job_timestamp
from modules.api.schemas import (
    JobCancelResult,
    JobCreated,
    JobList,
    JobProgressModel,
    JobRequest,
    JobResult,
    JobStatus,
    WorkerItem,
    WorkerList,
)
from modules.api.translate import build_job
from modules.jobs import Job, JobEvent, JobProgress, JobQueue, Subscription
from modules.types import GenerationResult

if TYPE_CHECKING:
    from modules.app import App

PREFIX = "/api/v1"
KEEPALIVE_SECONDS = 15.0


def progress_model(progress: JobProgress) -> JobProgressModel:
    return JobProgressModel(fraction=progress.fraction, step=progress.step, total_steps=progress.total_steps,
                            job_no=progress.job_no, job_count=progress.job_count, eta=progress.eta,
                            textinfo=progress.textinfo)


def job_result(job: Job, embed_infotext: bool) -> JobResult | None:
    """Images and info of a finished job that produced a result (done, or interrupted with images)."""
    result = job.result
    if not job.state.finished or not isinstance(result, GenerationResult):
        return None
    return JobResult(images=encode_images(result, embed_infotext), info=info_object(result, job_timestamp(job)))


def job_status(job: Job, *, with_result: bool, embed_infotext: bool = True) -> JobStatus:
    return JobStatus(
        job_id=job.id, state=job.state.value, owner=job.owner, description=job.description, position=job.position,
        created=job.created, started=job.started, finished=job.finished, progress=progress_model(job.progress),
        error=job.error_message, result=job_result(job, embed_infotext) if with_result else None,
        worker=job.worker, notes=list(job.notes),
    )


def worker_list(queue: JobQueue, ray_enabled: bool) -> WorkerList:
    return WorkerList(executor="ray" if ray_enabled else "local", workers=[
        WorkerItem(name=info.name, device=info.device, state=info.state, job_id=info.job_id,
                   checkpoints=list(info.checkpoints), node=info.node, pid=info.pid, jobs_done=info.jobs_done)
        for info in queue.workers()])


def event_payload(event: JobEvent) -> str:
    """One server-sent event: `event: <queued|started|progress|finished>` and a JSON `data` line."""
    data = {"job_id": event.job_id, "kind": event.kind, "state": event.state.value,
            "progress": progress_model(event.progress).model_dump(), "preview_id": event.preview_id,
            "error": event.message or None}
    return f"event: {event.kind}\ndata: {json.dumps(data)}\n\n"


async def event_stream(job: Job, subscription: Subscription) -> AsyncIterator[str]:
    """The job's current status as a first `status` event, then every event until it finishes. A comment line
    is sent after each quiet period of KEEPALIVE_SECONDS so that proxies keep the connection open."""
    try:
        status = job_status(job, with_result=False).model_dump(mode="json")
        yield f"event: status\ndata: {json.dumps(status)}\n\n"
        while True:
            event = await subscription.aget(timeout=KEEPALIVE_SECONDS)
            if event is None:
                if subscription.closed:
                    return
                yield ": keep-alive\n\n"
                continue
            yield event_payload(event)
            if event.kind == "finished":
                return
    finally:
        subscription.close()


def _visible(queue: JobQueue, job_id: str, user: Optional[str]) -> Job:
    return queue.get(job_id, owner=user)  # UnknownJob (404) for other users' jobs


def build_jobs_router(app: "App", auth: Authenticator) -> APIRouter:
    """The /api/v1 job routes, each behind `auth` (see the module doc)."""
    router = APIRouter(prefix=PREFIX, tags=["jobs"], dependencies=[Depends(auth)])

    @router.post("/jobs", response_model=JobCreated, status_code=202)
    async def create_job(body: JobRequest, http: Request, user: Optional[str] = Depends(auth)) -> JobCreated:
        """Queue a txt2img, img2img or inpaint job and answer at once with its id (and its place in the queue)."""
        api_job = await run_in_threadpool(build_job, body, app, body.mode)
        job = app.submit(api_job.request, owner=user, task_id=api_job.task_id, save=api_job.save_images,
                         group=client_group(user, http))
        return JobCreated(job_id=job.id, state=job.state.value, position=job.position)

    @router.get("/jobs", response_model=JobList)
    def list_jobs(user: Optional[str] = Depends(auth)) -> JobList:
        """Queued, running and recently finished jobs (the caller's own with --api-auth), without results;
        `others` counts the other users' queued and running jobs (not shown)."""
        return JobList(jobs=[job_status(job, with_result=False) for job in app.jobs.list(owner=user)],
                       others=app.jobs.active_count(exclude_owner=user) if user is not None else 0)

    @router.get("/jobs/{job_id}", response_model=JobStatus)
    def get_job(job_id: str, user: Optional[str] = Depends(auth)) -> JobStatus:
        """Status and progress; `result` holds the images and info once the job has finished."""
        job = _visible(app.jobs, job_id, user)
        return job_status(job, with_result=True, embed_infotext=bool(app.settings.get().enable_pnginfo))

    @router.get("/jobs/{job_id}/events")
    def job_events(job_id: str, user: Optional[str] = Depends(auth)) -> StreamingResponse:
        """Server-sent events of the job until it finishes (`status` first, then queued/started/progress/finished)."""
        job = _visible(app.jobs, job_id, user)
        subscription = app.jobs.subscribe(job.id, owner=user)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(event_stream(job, subscription), media_type="text/event-stream", headers=headers)

    @router.get("/workers", response_model=WorkerList)
    def list_workers() -> WorkerList:
        """The workers jobs run on, as they last reported (none listed with the local executor)."""
        return worker_list(app.jobs, app.launch.ray_enabled)

    @router.delete("/jobs/{job_id}", response_model=JobCancelResult)
    def cancel_job(job_id: str, user: Optional[str] = Depends(auth)) -> JobCancelResult:
        """Cancel a queued job or interrupt a running one; `cancelled` is false if it had already finished."""
        job = _visible(app.jobs, job_id, user)
        cancelled = app.jobs.cancel(job.id, owner=user)
        return JobCancelResult(job_id=job.id, cancelled=cancelled, state=job.state.value)

    return router
