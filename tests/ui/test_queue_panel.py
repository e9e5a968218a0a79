"""Enqueue and the Queue panel with the fake App: jobs return at once, positions, cancel, others counted, results."""

from __future__ import annotations

import threading
from typing import Any

import gradio as gr
import pytest

from modules.jobs import Job, JobContext, JobState
from modules.ui.img2img import SOURCE_BATCH, SOURCE_IMG2IMG
from modules.ui.queue_panel import summary_html
from tests.ui.fakes import COLOUR, FakeApp
from tests.ui.helpers import Page

WAIT = 10.0
SMALL = {"txt2img_width": 64, "txt2img_height": 64, "txt2img_sampling_steps": 2}


def _hold_worker(app: FakeApp, owner: str) -> tuple[Job, threading.Event]:
    started, release = threading.Event(), threading.Event()

    def work(ctx: JobContext) -> None:
        started.set()
        assert release.wait(WAIT)

    job = app.jobs.submit(work, owner=owner, description="someone else's job")
    assert started.wait(WAIT)
    return job, release


def _by_id(page: Page, updates: dict[Any, Any]) -> dict[str, Any]:
    return {component.elem_id: value for component, value in updates.items() if getattr(component, "elem_id", None)}


def _rows(page: Page, updates: dict[Any, Any]) -> list[list[str]]:
    return updates[page.find("txt2img_queue_table")].value["data"]


def _enqueue(page: Page, prompt: str, session: str = "s1") -> tuple[str, dict[Any, Any]]:
    updates = page.call("txt2img_enqueue", "click", {"txt2img_prompt": prompt, **SMALL}, session=session)
    return updates[page.find("txt2img_queue_job")].value, updates


@pytest.mark.slow
def test_enqueue_three_cancel_the_second_two_finish(page: Page, app: FakeApp) -> None:
    _, release = _hold_worker(app, owner="other user")
    ids = []
    for n in (1, 2, 3):
        job_id, updates = _enqueue(page, f"job {n}")
        ids.append(job_id)
        assert _rows(page, updates)[n - 1][:3] == [job_id[:8], str(n), "queued"]  # listed at once
    assert [app.jobs.get(job_id).state for job_id in ids] == [JobState.QUEUED] * 3  # Enqueue did not wait

    table = page.find("txt2img_queue_table")
    refreshed = page.call("txt2img_queue_refresh", "click")
    assert [row[1:3] for row in refreshed[table].value["data"]] == [["1", "queued"], ["2", "queued"],
                                                                     ["3", "queued"]]
    assert [row[4] for row in refreshed[table].value["data"]] == ["txt2img: job 1", "txt2img: job 2",
                                                                  "txt2img: job 3"]
    assert refreshed[page.find("txt2img_queue_summary")] == summary_html(3, 1)
    choices = refreshed[page.find("txt2img_queue_job")].choices
    assert [value for _, value in choices] == ids

    stranger = page.call("txt2img_queue_refresh", "click", session="s2")  # others' jobs: counted, not shown
    assert stranger[table].value["data"] == [] and stranger[page.find("txt2img_queue_summary")] == summary_html(0, 4)
    with pytest.warns(UserWarning, match="no longer kept"):  # not even by id
        assert page.call("txt2img_queue_open", "click", {"txt2img_queue_job": ids[0]}, session="s2") == {}
    with pytest.warns(UserWarning, match="no longer in the queue"):
        page.call("txt2img_queue_cancel", "click", {"txt2img_queue_job": ids[1]}, session="s2")
    assert app.jobs.get(ids[1]).state is JobState.QUEUED

    cancelled = page.call("txt2img_queue_cancel", "click", {"txt2img_queue_job": ids[1]})
    rows = cancelled[table].value["data"]
    assert [(row[0], row[1], row[2]) for row in rows] == [(ids[0][:8], "1", "queued"), (ids[2][:8], "2", "queued"),
                                                           (ids[1][:8], "", "cancelled")]

    release.set()
    for job_id in (ids[0], ids[2]):
        assert app.jobs.get(job_id).wait(WAIT)
    final = page.call("txt2img_queue_refresh", "click")
    states = {row[0]: (row[2], row[3]) for row in final[table].value["data"]}
    assert states == {ids[0][:8]: ("done", "100%"), ids[2][:8]: ("done", "100%"), ids[1][:8]: ("cancelled", "")}
    assert final[page.find("txt2img_queue_summary")] == summary_html(0, 0)
    assert [request.prompt for request in app.generation.requests] == ["job 1", "job 3"]

    shown = _by_id(page, page.call("txt2img_queue_open", "click", {"txt2img_queue_job": ids[2]}))
    assert len(shown["txt2img_gallery"]) == 1 and shown["txt2img_gallery"][0].getpixel((0, 0)) == COLOUR
    assert "job 3" in shown["html_info_txt2img"]


def test_a_refresh_leaves_the_browsers_newer_pick_and_a_row_click_names_its_own_job(page: Page, app: FakeApp) -> None:
    """The race a timer tick used to lose: sent while job 3 (just enqueued) was picked, answered after the user
    picked job 2; writing job 3 back made the next Cancel cancel job 3."""
    import types

    _, release = _hold_worker(app, owner="other user")
    try:
        ids = [_enqueue(page, f"job {n}")[0] for n in (1, 2, 3)]
        dropdown = page.find("txt2img_queue_job")
        enqueued = page.call("txt2img_enqueue", "click", {"txt2img_prompt": "job 4", **SMALL})
        assert enqueued[dropdown].constructor_args["value"] == app.jobs.list()[-1].id  # Enqueue picks the new job
        ids.append(app.jobs.list()[-1].id)
        stale = page.call("txt2img_queue_refresh", "click", {"txt2img_queue_job": ids[2]})
        assert "value" not in stale[dropdown].constructor_args  # the browser's newer pick stays
        assert [value for _, value in stale[dropdown].constructor_args["choices"]] == ids
        cancelled = page.call("txt2img_queue_cancel", "click", {"txt2img_queue_job": ids[3]})
        assert "value" not in cancelled[dropdown].constructor_args and app.jobs.get(ids[3]).state is JobState.CANCELLED
        ids.pop()
        gone = page.call("txt2img_queue_refresh", "click", {"txt2img_queue_job": "f" * 32})
        assert gone[dropdown].constructor_args["value"] is None  # a job no longer listed is cleared

        pick = page.handler(page.find("txt2img_queue_table"), "select").fn
        request = types.SimpleNamespace(session_hash="s1")
        row = [ids[1][:8], "2", "queued", "", "txt2img: job 2"]
        assert pick(gr.SelectData(None, {"index": [0, 0], "value": row[0], "row_value": row}), request) == ids[1]
        assert pick(gr.SelectData(None, {"index": [2, 4], "value": row[4], "row_value": row}), request) == ids[1]
        stranger = types.SimpleNamespace(session_hash="s2")  # another user's browser cannot pick my job
        assert pick(gr.SelectData(None, {"index": [0, 0], "value": row[0], "row_value": row}), stranger) == gr.skip()
        assert pick(gr.SelectData(None, {"index": [0, 0], "value": "x", "row_value": None}), request) == gr.skip()
    finally:
        release.set()
    assert all(app.jobs.get(job_id).wait(WAIT) for job_id in ids)


@pytest.mark.slow
def test_other_users_take_turns_and_positions_say_so(page: Page, app: FakeApp) -> None:
    _, release = _hold_worker(app, owner="someone")
    mine = [_enqueue(page, f"mine {n}")[0] for n in range(3)]
    theirs, _ = _enqueue(page, "theirs", session="s2")
    assert app.jobs.get(theirs).position == 2  # after my first, before my second (the fake request has no address)
    rows = page.call("txt2img_queue_refresh", "click")[page.find("txt2img_queue_table")].value["data"]
    assert [row[1] for row in rows] == ["1", "3", "4"] and [row[0] for row in rows] == [m[:8] for m in mine]
    release.set()
    assert all(app.jobs.get(job_id).wait(WAIT) for job_id in (*mine, theirs))


@pytest.mark.slow
def test_show_results_of_an_unfinished_job_warns_and_batch_is_not_enqueued(page: Page, app: FakeApp) -> None:
    _, release = _hold_worker(app, owner="someone")
    job_id, _ = _enqueue(page, "waiting")
    with pytest.warns(UserWarning, match="not finished"):
        assert page.call("txt2img_queue_open", "click", {"txt2img_queue_job": job_id}) == {}
    release.set()
    assert app.jobs.get(job_id).wait(WAIT)
    with pytest.raises(gr.Error, match="Batch sub-tab"):
        page.call("img2img_enqueue", "click", extra={_source(page): SOURCE_BATCH})


def _source(page: Page) -> Any:
    fn = page.handler(page.find("img2img_enqueue"), "click")
    for component in fn.inputs:
        if isinstance(component, gr.State) and component.value == SOURCE_IMG2IMG:
            return component
    raise AssertionError("no source state among img2img's inputs")


def test_the_panel_lists_the_workers_and_names_the_worker_of_a_running_job(page: Page, app: FakeApp,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.jobs import WorkerInfo
    from modules.ui.queue_panel import queue_view, workers_text

    job, release = _hold_worker(app, owner="ann")
    try:
        assert queue_view(app, "ann")[0] == summary_html(1, 0)  # the local executor: nothing added
        app.jobs.placed(job.id, "worker-1")
        workers = [WorkerInfo("worker-0", "cuda float16 (GPU 0)", "idle", None, ("a.safetensors [0123456789]",)),
                   WorkerInfo("worker-1", "cuda float16 (GPU 1)", "busy", job.id, ()),
                   WorkerInfo("worker-2", "", "starting")]
        monkeypatch.setattr(app.jobs._executor, "workers", lambda: workers)
        summary, rows, _, _ = queue_view(app, "ann")
        assert rows[0][2] == "running on worker-1"
        assert workers_text(workers) == (
            "Workers: worker-0 (cuda float16 (GPU 0), idle, a.safetensors [0123456789]) \u00b7 worker-1 (cuda "
            "float16 (GPU 1), busy, no model loaded) \u00b7 worker-2 (starting, no model loaded)")
        assert summary == summary_html(1, 0) + "<div class='queue-workers'>Workers: worker-0 (cuda float16 (GPU 0), " \
            "idle, a.safetensors [0123456789]) \u00b7 worker-1 (cuda float16 (GPU 1), busy, no model loaded) " \
            "\u00b7 worker-2 (starting, no model loaded)</div>"
        assert summary == summary_html(1, 0, workers)
    finally:
        release.set()
    assert job.wait(WAIT) and queue_view(app, "ann")[1][0][2] == "done"
