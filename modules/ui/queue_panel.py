"""The Enqueue button and the Queue panel of txt2img and img2img (A1111 has neither: its queue is invisible).

**Enqueue** submits the tab's job and answers at once, so the user keeps working while it waits and runs;
Generate keeps A1111's behaviour (wait, show progress, show the pictures). The **Queue** accordion under the
results lists this user's jobs (`progress.job_owner`: the login, else the browser session) with their place in the
queue's fair order, state and progress, and counts other users' jobs without showing them. It is refreshed by a
`gr.Timer` while the page is open. A job is picked in the dropdown (or by clicking its row): **Cancel** cancels a
queued job or interrupts a running one; **Show results** puts a finished job's pictures and infotext into the tab's
results gallery (where the send-to and reuse-seed buttons act on them). The saved files are in the Gallery tab.
The dropdown's value belongs to the browser: a refresh only clears it when that job has left the list, because
a timer tick sent before the user picked a row answers after it, and writing back the value it carried would make
Cancel act on the previously picked job. A row click names its job by the row's own id cell, not by its index in
a list the server may have reordered since the browser drew the table.
With Ray workers (--workers / --ray-address) a second line under the summary lists the workers, their state and
their loaded checkpoints, and a running job's state names its worker; with the local executor nothing is added.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import gradio as gr

from modules.errors import UserError
from modules.jobs import Job, JobState, UnknownJob, WorkerInfo
from modules.types import GenerationResult
from modules.ui.progress import job_owner
from modules.ui.results import ResultPanel, show_result

if TYPE_CHECKING:
    from modules.app import App

REFRESH_SECONDS = 1.5
"""How often an open page refreshes its queue panel."""
MAX_FINISHED = 20
"""How many of the user's finished jobs the panel keeps listing (newest first, after the waiting ones)."""
HEADERS = ["Job", "Position", "State", "Progress", "Description"]


@dataclass
class QueuePanel:
    """The widgets of one tab's queue accordion."""

    accordion: gr.Accordion
    summary: gr.HTML
    table: gr.Dataframe
    job: gr.Dropdown
    cancel: gr.Button
    open: gr.Button
    refresh: gr.Button
    timer: gr.Timer

    def outputs(self) -> list[Any]:
        return [self.summary, self.table, self.job]


def build_queue_panel(tab: str) -> QueuePanel:
    """Create the accordion in the current layout context (under the tab's results); wired by `wire_queue_panel`."""
    with gr.Accordion("Queue", open=True, elem_id=f"{tab}_queue", elem_classes=["queue-panel"]) as accordion:
        summary = gr.HTML(summary_html(0, 0), elem_id=f"{tab}_queue_summary", padding=False)
        table = gr.Dataframe(value=[], headers=HEADERS, datatype="str", interactive=False, wrap=True,
                             elem_id=f"{tab}_queue_table", show_label=False, max_height=260,
                             column_widths=["14%", "12%", "14%", "22%", "38%"])
        with gr.Row(equal_height=True):
            job = gr.Dropdown(label="Job", choices=[], value=None, elem_id=f"{tab}_queue_job", scale=4,
                              min_width=200)
            cancel = gr.Button("Cancel", elem_id=f"{tab}_queue_cancel", size="sm", variant="stop", scale=1,
                               min_width=80)
            open_button = gr.Button("Show results", elem_id=f"{tab}_queue_open", size="sm", scale=1, min_width=80)
            refresh = gr.Button("\U0001f504", elem_id=f"{tab}_queue_refresh", size="sm", scale=0, min_width=40)
    timer = gr.Timer(REFRESH_SECONDS)
    return QueuePanel(accordion, summary, table, job, cancel, open_button, refresh, timer)


def summary_html(mine: int, others: int, workers: Sequence[WorkerInfo] = ()) -> str:
    """One line over the table: how many of the user's jobs wait or run, and how many of other users'; with
    workers, a second line listing them (`workers_text`)."""
    yours = f"{mine} of your job{'s' if mine != 1 else ''} waiting or running"
    theirs = f"{others} job{'s' if others != 1 else ''} of other users"
    line = f"<div class='queue-summary'>{html.escape(yours)} \u00b7 {html.escape(theirs)}</div>"
    if workers:
        line += f"<div class='queue-workers'>{html.escape(workers_text(workers))}</div>"
    return line


def workers_text(workers: Sequence[WorkerInfo]) -> str:
    """"Workers: worker-0 (cuda float16, busy, tiny.safetensors [...]) · worker-1 (..., idle, no model)"."""
    parts = []
    for info in workers:
        details = [text for text in (info.device, info.state) if text]
        details.append(", ".join(info.checkpoints) if info.checkpoints else "no model loaded")
        parts.append(f"{info.name} ({', '.join(details)})")
    return "Workers: " + " \u00b7 ".join(parts)


def state_text(job: Job) -> str:
    """The job's state, with the worker running it (Ray workers only)."""
    if job.state is JobState.RUNNING and job.worker:
        return f"running on {job.worker}"
    return job.state.value


def progress_text(job: Job) -> str:
    """Percent, step and batch of a running job; 100% for a done one; empty otherwise."""
    if job.state is JobState.DONE:
        return "100%"
    if job.state is not JobState.RUNNING:
        return ""
    progress = job.progress
    parts = [f"{int(progress.fraction * 100)}%"]
    if progress.total_steps:
        parts.append(f"step {progress.step}/{progress.total_steps}")
    if progress.job_count > 1:
        parts.append(f"batch {progress.job_no + 1}/{progress.job_count}")
    return " \u00b7 ".join(parts)


def owner_jobs(app: "App", owner: str | None) -> list[Job]:
    """The owner's jobs as the panel lists them: running, then queued in run order, then the newest finished."""
    if owner is None:
        return []
    jobs = app.jobs.list(owner=owner)
    running = [job for job in jobs if job.state is JobState.RUNNING]
    queued = sorted((job for job in jobs if job.state is JobState.QUEUED), key=lambda job: job.position or 0)
    finished = [job for job in reversed(jobs) if job.state.finished][:MAX_FINISHED]
    return [*running, *queued, *finished]


def job_label(job: Job) -> str:
    place = f"#{job.position}" if job.position else job.state.value
    return f"{short_id(job.id)} \u00b7 {place} \u00b7 {job.description}"


def short_id(job_id: str) -> str:
    """The job id as the table's first column shows it."""
    return job_id[:8]


def queue_view(app: "App", owner: str | None) -> tuple[str, list[list[str]], list[tuple[str, str]], list[str]]:
    """(summary HTML, table rows, dropdown choices, row job ids) of the owner's jobs."""
    jobs = owner_jobs(app, owner)
    rows = [[short_id(job.id), str(job.position) if job.position else "", state_text(job), progress_text(job),
             job.description] for job in jobs]
    mine = sum(1 for job in jobs if not job.state.finished)
    others = app.jobs.active_count(exclude_owner=owner) if owner is not None else app.jobs.active_count()
    summary = summary_html(mine, others, app.jobs.workers())
    return summary, rows, [(job_label(job), job.id) for job in jobs], [job.id for job in jobs]


def queue_updates(app: "App", panel: QueuePanel, owner: str | None, selected: str | None = None,
                  choose: str | None = None) -> dict[Any, Any]:
    """Updates of the panel. `choose` sets the dropdown to that job (the one just enqueued); otherwise the
    dropdown's value is left to the browser, and cleared only when `selected` (what the browser sent) is no longer
    listed: the browser may hold a newer pick than the one this event carried."""
    summary, rows, choices, ids = queue_view(app, owner)
    if choose is not None:
        job = gr.Dropdown(choices=choices, value=choose if choose in ids else None)
    elif selected is not None and selected not in ids:
        job = gr.Dropdown(choices=choices, value=None)
    else:
        job = gr.Dropdown(choices=choices)
    return {panel.summary: summary, panel.table: gr.Dataframe(value=rows, headers=HEADERS), panel.job: job}


def picked_job(app: "App", owner: str | None, row: Sequence[Any] | None) -> str | None:
    """The id of the owner's listed job whose row (as the browser shows it) was clicked, or None."""
    if not row:
        return None
    shown = str(row[0])
    matches = [job.id for job in owner_jobs(app, owner) if short_id(job.id) == shown]
    return matches[0] if len(matches) == 1 else None


def enqueue_job(app: "App", request: Any, owner: str | None, group: str | None) -> Job:
    """Submit a tab's request without waiting (a `gr.Error` for a request the queue refuses)."""
    try:
        job = app.submit(request, owner=owner, group=group)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from error
    place = f"position {job.position}" if job.position else "running"
    gr.Info(f"Queued ({place}): {job.description}")
    return job


def cancel_queued(app: "App", job_id: str | None, owner: str | None) -> None:
    """Cancel the owner's job `job_id` (a running one is interrupted and keeps its finished pictures)."""
    if not job_id:
        gr.Warning("Pick one of your jobs in the Job list first.")
        return
    try:
        cancelled = app.jobs.cancel(job_id, owner)
    except UnknownJob:
        gr.Warning("That job is no longer in the queue.")
        return
    if not cancelled:
        gr.Warning("That job has already finished.")


def finished_result(app: "App", job_id: str | None, owner: str | None) -> GenerationResult | None:
    """The pictures of the owner's finished job `job_id`, or None with a toast saying why there are none."""
    if not job_id:
        gr.Warning("Pick one of your jobs in the Job list first.")
        return None
    try:
        job = app.jobs.get(job_id, owner)
    except UnknownJob:
        gr.Warning("That job is no longer kept by the queue; its saved pictures are in the Gallery tab.")
        return None
    if not job.state.finished:
        gr.Warning("That job has not finished yet.")
        return None
    result = job.result
    if not isinstance(result, GenerationResult) or not result.images:
        gr.Warning(f"That job has no pictures to show ({job.error_message or job.state.value}).")
        return None
    return result


def wire_queue_panel(app: "App", panel: QueuePanel, results: ResultPanel) -> None:
    """Timer/refresh, row click, Cancel and Show results of one tab's queue panel."""
    outputs = panel.outputs()

    def refresh(selected: str | None, request: gr.Request) -> dict[Any, Any]:
        return queue_updates(app, panel, job_owner(request), selected)

    panel.timer.tick(refresh, inputs=panel.job, outputs=outputs, show_progress="hidden", queue=False)
    panel.refresh.click(refresh, inputs=panel.job, outputs=outputs, show_progress="hidden", queue=False)

    def pick_row(event: gr.SelectData, request: gr.Request) -> Any:
        job_id = picked_job(app, job_owner(request), event.row_value)
        return job_id if job_id is not None else gr.skip()

    panel.table.select(pick_row, outputs=panel.job, show_progress="hidden", queue=False)

    def cancel(selected: str | None, request: gr.Request) -> dict[Any, Any]:
        owner = job_owner(request)
        cancel_queued(app, selected, owner)
        return queue_updates(app, panel, owner, selected)

    panel.cancel.click(cancel, inputs=panel.job, outputs=outputs, show_progress="hidden", queue=False)

    def show(selected: str | None, request: gr.Request) -> dict[Any, Any]:
        result = finished_result(app, selected, job_owner(request))
        if result is None:
            return {}
        return show_result(results, result, bool(app.settings.get()["do_not_show_images"]))

    panel.open.click(show, inputs=panel.job,
                     outputs=[results.gallery, results.infotext, results.result, results.selected],
                     show_progress="hidden")
