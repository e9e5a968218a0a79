"""Streaming a job's progress into a tab: progress bar, ETA, queue position, live preview, interrupt and skip.

A Gradio generator handler submits the job and then polls it about four times a second (`POLL_SECONDS`), yielding
only what changed; Gradio streams every yield to the browser. The job id is kept in the session's `gr.State`, so
Interrupt and Skip act on this browser session's job only (the queue checks the owner: the login with
--gradio-auth, else the session hash; `job_owner`). The queue orders waiting jobs round-robin between users
(`job_group`: the login, else the browser's address).

Failures follow `modules.errors`: a `UserError` message is shown as is in a `gr.Error`; any other failure shows
the queue's one-line "internal error: ..." summary (the traceback goes to the server log only). Errors that
extensions raised during the job (their hooks were skipped, the job went on) are shown as `gr.Warning` toasts.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr
from PIL import Image

from modules.errors import UserError
from modules.jobs import Job, JobState, UnknownJob, fair_group
from modules.types import GenerationRequest, GenerationResult
from modules.ui.extensions_tab import warn_extension_errors
from modules.ui.results import ResultPanel, show_result

if TYPE_CHECKING:
    from modules.app import App

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
"""How often a running job is polled: 4 updates per second."""


@dataclass(frozen=True)
class JobView:
    """What the page shows of a job at one moment. `preview` is set only when a new preview arrived."""

    state: JobState
    step: int
    total_steps: int
    job_no: int
    job_count: int
    fraction: float
    eta: float | None
    position: int | None
    textinfo: str
    preview: Image.Image | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished


def job_owner(request: Any) -> str | None:
    """Who owns the page's jobs (sees them in the queue panel, interrupts and cancels them): the login when the UI
    runs with --gradio-auth, else the browser session."""
    if request is None:
        return None
    return getattr(request, "username", None) or getattr(request, "session_hash", None)


def job_group(request: Any) -> str | None:
    """Who the page's jobs count for in the queue's round-robin (`modules.jobs.fair_group`): the login, else the
    browser's address, else the session."""
    if request is None:
        return None
    client = getattr(request, "client", None)
    return fair_group(getattr(request, "username", None), getattr(client, "host", None)) or job_owner(request)


def view_of(job: Job, last_preview_id: int) -> JobView:
    """A consistent snapshot of `job`; the preview is included only if its id moved past `last_preview_id`."""
    progress = job.progress
    preview = job.preview if job.preview_id != last_preview_id else None
    return JobView(job.state, progress.step, progress.total_steps, progress.job_no, progress.job_count,
                   progress.fraction, progress.eta, job.position, progress.textinfo, preview)


def watch(job: Job, poll_seconds: float = POLL_SECONDS) -> Iterator[JobView]:
    """Views of `job` every `poll_seconds` until it finishes (the last view is the finished state)."""
    last_preview_id = 0
    while True:
        finished = job.wait(poll_seconds)
        current_preview_id = job.preview_id
        yield view_of(job, last_preview_id)
        last_preview_id = current_preview_id
        if finished:
            return


def _eta_text(eta: float | None) -> str:
    if eta is None:
        return ""
    seconds = int(round(eta))
    return f"ETA {seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"ETA {seconds}s"


def progress_html(view: JobView) -> str:
    """A1111-style progress bar: percentage, step count, batch image and ETA (or the queue position)."""
    if view.state is JobState.QUEUED:
        place = f"position {view.position}" if view.position else "next"
        return f"<div class='progress-text'>Waiting in queue ({place})&hellip;</div>"
    if view.finished:
        return ""
    percent = int(view.fraction * 100)
    parts = [f"{percent}%"]
    if view.total_steps:
        parts.append(f"step {view.step}/{view.total_steps}")
    if view.job_count > 1:
        parts.append(f"batch {view.job_no + 1}/{view.job_count}")
    if view.eta is not None:
        parts.append(_eta_text(view.eta))
    label = html.escape(" \u00b7 ".join(parts))
    info = f"<div class='progress-info'>{html.escape(view.textinfo)}</div>" if view.textinfo else ""
    return (f"<div class='progress-bar'><div class='progress' style='width:{percent}%'></div>"
            f"<span class='progress-label'>{label}</span></div>{info}")


def failure_message(job: Job) -> str:
    """What a failed job tells the user: a `UserError`'s own message, else the job's one-line error (never a
    traceback)."""
    error = job.error
    return str(error) if isinstance(error, UserError) else (job.error_message or "internal error")


def raise_for_job(job: Job) -> GenerationResult | None:
    """The job's result, or a `gr.Error` for a failure (message only, never a traceback)."""
    if job.state is JobState.CANCELLED:
        gr.Warning("The generation was cancelled before it started.")
        return None
    if job.state is JobState.FAILED:
        raise gr.Error(failure_message(job), print_exception=False)
    result = job.result if isinstance(job.result, GenerationResult) else None
    if job.state is JobState.INTERRUPTED:
        kept = len(result.images) if result is not None else 0
        gr.Warning(f"Interrupted: {kept} finished picture{'s' if kept != 1 else ''} kept.")
    return result


@dataclass
class RunButtons:
    """Generate is swapped for Interrupt + Skip while a job of this session runs (as in A1111)."""

    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button

    def running(self) -> dict[Any, Any]:
        return {self.generate: gr.Button(visible=False), self.interrupt: gr.Button(visible=True),
                self.skip: gr.Button(visible=True)}

    def idle(self) -> dict[Any, Any]:
        return {self.generate: gr.Button(visible=True), self.interrupt: gr.Button(visible=False),
                self.skip: gr.Button(visible=False)}


def stream_generation(app: "App", panel: ResultPanel, buttons: RunButtons, request: GenerationRequest,
                      owner: str | None, poll_seconds: float = POLL_SECONDS, *,
                      combine: Callable[[GenerationResult], GenerationResult] | None = None,
                      selected: int | None = None, group: str | None = None) -> Iterator[dict[Any, Any]]:
    """Submit `request` (for `owner`, in the queue's round-robin `group`) and yield panel updates until the job
    ends; the last update shows the result (passed through `combine` first when given, with picture `selected`
    selected)."""
    try:
        job = app.submit(request, owner=owner, group=group)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from error
    yield {panel.job: job.id, **buttons.running(), panel.progress: progress_html(view_of(job, 0))}
    settings = app.settings.get()
    show_previews = bool(settings["live_previews_enable"])
    for view in watch(job, poll_seconds):
        update: dict[Any, Any] = {panel.progress: progress_html(view)}
        if view.preview is not None and show_previews:
            update[panel.preview] = gr.Image(value=view.preview, visible=True)
        if not view.finished:
            yield update
    warn_extension_errors(app.extensions, job)
    result = raise_for_job(job)
    if result is not None and combine is not None:
        result = combine(result)
    yield {panel.progress: "", panel.preview: gr.Image(value=None, visible=False), panel.job: None,
           **buttons.idle(), **show_result(panel, result, bool(settings["do_not_show_images"]), selected)}


def finish_updates(panel: ResultPanel, buttons: RunButtons) -> dict[Any, Any]:
    """Restore the idle look after a run, whatever its outcome (chained with `.then`, which always runs)."""
    return {panel.progress: "", panel.preview: gr.Image(visible=False), panel.job: None, **buttons.idle()}


def interrupt_job(app: "App", job_id: str | None, owner: str | None) -> None:
    """Interrupt this session's job: a queued one is cancelled, a running one stops keeping finished pictures."""
    if not job_id:
        return
    try:
        app.jobs.cancel(job_id, owner)
    except UnknownJob:
        log.debug("interrupt: job %s is gone", job_id)


def skip_job(app: "App", job_id: str | None, owner: str | None) -> None:
    """Skip the current batch of this session's running job (nothing for a queued or finished one)."""
    if not job_id:
        return
    try:
        app.jobs.skip(job_id, owner)
    except UnknownJob:
        return
