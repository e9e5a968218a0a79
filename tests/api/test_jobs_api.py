"""/api/v1/jobs over real HTTP against the App with a stand-in generation: submit, poll, events, cancel, owners."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from tests.api.api_helpers import seed_colour

SMALL = {"width": 64, "height": 64, "steps": 2}


def wait_finished(client: httpx.Client, job_id: str, **kwargs: object) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/jobs/{job_id}", **kwargs).json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def read_events(client: httpx.Client, job_id: str, out: list[tuple[str, dict]]) -> None:
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                out.append((kind, json.loads(line[len("data: "):])))


def test_submit_poll_and_fetch_the_result(make_server) -> None:
    _, client = make_server()
    created = client.post("/api/v1/jobs", json={"mode": "txt2img", "seed": 11, "prompt": "x", **SMALL})
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    status = wait_finished(client, job_id)
    assert status["state"] == "done" and status["progress"]["fraction"] == 1.0 and status["error"] is None
    result = status["result"]
    assert result["info"]["seed"] == 11 and result["info"]["infotexts"][0].startswith("x\n")
    image = Image.open(io.BytesIO(base64.b64decode(result["images"][0])))
    assert image.getpixel((0, 0)) == seed_colour(11) and "Seed: 11" in image.info["parameters"]
    listing = client.get("/api/v1/jobs").json()["jobs"]
    assert [job["job_id"] for job in listing] == [job_id] and listing[0]["result"] is None


@pytest.mark.slow
def test_img2img_and_inpaint_modes(make_server) -> None:
    _, client = make_server()
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buffer, format="PNG")
    init = base64.b64encode(buffer.getvalue()).decode()
    img2img = client.post("/api/v1/jobs", json={"mode": "img2img", "init_images": [init], **SMALL}).json()
    assert wait_finished(client, img2img["job_id"])["result"]["info"]["denoising_strength"] == 0.75
    missing_mask = client.post("/api/v1/jobs", json={"mode": "inpaint", "init_images": [init], **SMALL})
    assert missing_mask.status_code == 422 and "mask" in missing_mask.json()["detail"]
    no_init = client.post("/api/v1/jobs", json={"mode": "img2img", **SMALL})
    assert no_init.status_code == 422
    assert client.post("/api/v1/jobs", json={"mode": "upscale"}).status_code == 422


def test_failed_job_reports_its_error(make_server) -> None:
    _, client = make_server()
    job_id = client.post("/api/v1/jobs", json={**SMALL, "steps": 0}).json()["job_id"]
    status = wait_finished(client, job_id)
    assert status["state"] == "failed" and "steps" in status["error"] and status["result"] is None


def test_events_stream_until_the_job_finishes(make_server) -> None:
    app, client = make_server()
    app.generation.gate.close()
    job_id = client.post("/api/v1/jobs", json={**SMALL, "steps": 3}).json()["job_id"]
    events: list[tuple[str, dict]] = []
    reader = threading.Thread(target=read_events, args=(client, job_id, events))
    reader.start()
    assert app.generation.gate.reached.wait(10)
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:  # the stream is open (its status event arrived)
        time.sleep(0.01)
    app.generation.gate.release()
    reader.join(20)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "status" and kinds[-1] == "finished" and "progress" in kinds
    assert events[-1][1]["state"] == "done" and events[-1][1]["progress"]["step"] == 3
    late: list[tuple[str, dict]] = []
    read_events(client, job_id, late)  # a finished job: status, then its final event at once
    assert [kind for kind, _ in late] == ["status", "finished"]


@pytest.mark.slow
def test_delete_cancels_queued_and_interrupts_running_jobs(make_server) -> None:
    app, client = make_server()
    app.generation.gate.close()
    running = client.post("/api/v1/jobs", json={**SMALL, "n_iter": 2}).json()["job_id"]
    assert app.generation.gate.reached.wait(10)
    queued = client.post("/api/v1/jobs", json=SMALL).json()
    assert queued["state"] == "queued" and queued["position"] == 1
    cancelled = client.delete(f"/api/v1/jobs/{queued['job_id']}").json()
    assert cancelled == {"job_id": queued["job_id"], "cancelled": True, "state": "cancelled"}
    assert client.delete(f"/api/v1/jobs/{running}").json()["cancelled"] is True
    status = wait_finished(client, running)
    assert status["state"] == "interrupted" and len(status["result"]["images"]) == 1
    again = client.delete(f"/api/v1/jobs/{running}").json()
    assert again["cancelled"] is False and again["state"] == "interrupted"
    assert client.get("/api/v1/jobs/nope").status_code == 404


@pytest.mark.slow
def test_users_see_and_cancel_only_their_own_jobs(make_server) -> None:
    app, client = make_server(api_auth=(("alice", "a"), ("bob", "b")))
    alice, bob = ("alice", "a"), ("bob", "b")
    app.generation.gate.close()
    job_id = client.post("/api/v1/jobs", json=SMALL, auth=alice).json()["job_id"]
    assert app.generation.gate.reached.wait(10)
    assert client.get(f"/api/v1/jobs/{job_id}", auth=bob).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/events", auth=bob).status_code == 404
    assert client.delete(f"/api/v1/jobs/{job_id}", auth=bob).status_code == 404
    assert client.get("/api/v1/jobs", auth=bob).json()["jobs"] == []
    mine = client.get("/api/v1/jobs", auth=alice).json()["jobs"]
    assert [(job["job_id"], job["owner"], job["state"]) for job in mine] == [(job_id, "alice", "running")]
    app.generation.gate.release()
    assert wait_finished(client, job_id, auth=alice)["state"] == "done"
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 401


def test_force_task_id_names_the_job(make_server) -> None:
    _, client = make_server()
    created = client.post("/api/v1/jobs", json={"force_task_id": "task-7", **SMALL}).json()
    assert created["job_id"] == "task-7"
    assert wait_finished(client, "task-7")["state"] == "done"


def _finish_order(client: httpx.Client, jobs: dict[str, tuple[str, tuple[str, str] | None]]) -> list[str]:
    """The names of `jobs` ({name: (job id, auth)}) in the order they finished."""
    finished = {name: wait_finished(client, job_id, **({"auth": auth} if auth else {}))
                for name, (job_id, auth) in jobs.items()}
    assert all(status["state"] == "done" for status in finished.values())
    return sorted(finished, key=lambda name: finished[name]["finished"])


def test_users_take_turns_in_the_queue(make_server) -> None:
    """Fairness over HTTP: alice queues five jobs, then bob one; bob's runs second, and each sees only their own
    jobs with positions in the fair order, the other user's counted."""
    app, client = make_server(api_auth=(("alice", "a"), ("bob", "b")))
    alice, bob = ("alice", "a"), ("bob", "b")
    app.generation.gate.close()
    jobs = {"A1": (client.post("/api/v1/jobs", json=SMALL, auth=alice).json()["job_id"], alice)}
    assert app.generation.gate.reached.wait(10)
    for n in range(2, 6):
        created = client.post("/api/v1/jobs", json=SMALL, auth=alice).json()
        assert created["position"] == n - 1
        jobs[f"A{n}"] = (created["job_id"], alice)
    created = client.post("/api/v1/jobs", json=SMALL, auth=bob).json()
    assert created["position"] == 1
    jobs["B1"] = (created["job_id"], bob)
    mine = client.get("/api/v1/jobs", auth=alice).json()
    assert [job["position"] for job in mine["jobs"]] == [None, 2, 3, 4, 5] and mine["others"] == 1
    theirs = client.get("/api/v1/jobs", auth=bob).json()
    assert [job["job_id"] for job in theirs["jobs"]] == [jobs["B1"][0]] and theirs["others"] == 5
    app.generation.gate.release()
    assert _finish_order(client, jobs) == ["A1", "B1", "A2", "A3", "A4", "A5"]


@pytest.mark.slow
def test_client_addresses_take_turns_without_auth(make_server) -> None:
    """Without --api-auth the client address is the user the queue is fair between (127.0.0.2 is loopback too)."""
    app, client = make_server()
    other = httpx.Client(base_url=str(client.base_url), timeout=60,
                         transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    try:
        app.generation.gate.close()
        jobs = {"A1": (client.post("/api/v1/jobs", json=SMALL).json()["job_id"], None)}
        assert app.generation.gate.reached.wait(10)
        jobs.update({f"A{n}": (client.post("/api/v1/jobs", json=SMALL).json()["job_id"], None) for n in (2, 3)})
        created = other.post("/api/v1/jobs", json=SMALL).json()
        assert created["position"] == 1
        jobs["B1"] = (created["job_id"], None)
        assert [job.group for job in app.jobs.list()] == ["addr:127.0.0.1"] * 3 + ["addr:127.0.0.2"]
        listing = other.get("/api/v1/jobs").json()  # without auth every client sees every job
        assert len(listing["jobs"]) == 4 and listing["others"] == 0
        app.generation.gate.release()
        assert _finish_order(client, jobs) == ["A1", "B1", "A2", "A3"]
    finally:
        other.close()


@pytest.mark.slow
def test_the_worker_running_a_job_shows_in_the_job_api_and_progress(make_server, monkeypatch) -> None:
    from modules.jobs import WorkerInfo

    app, client = make_server()
    assert client.get("/api/v1/workers").json() == {"executor": "local", "workers": []}
    app.generation.gate.close()
    job_id = client.post("/api/v1/jobs", json={"mode": "txt2img", "seed": 4, "prompt": "x", **SMALL}).json()["job_id"]
    assert app.generation.gate.reached.wait(10)
    assert client.get(f"/api/v1/jobs/{job_id}").json()["worker"] is None  # the local executor names none
    app.jobs.placed(job_id, "worker-3")  # what a Ray executor reports when its worker starts the job
    info = WorkerInfo("worker-3", "cuda float16 (GPU 3)", "busy", job_id, ("tiny.safetensors [0123456789]",),
                      "node-a", 4242, 7)
    monkeypatch.setattr(app.jobs._executor, "workers", lambda: [info])
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["worker"] == "worker-3" and progress["state"]["job"] == job_id
    assert set(progress) == {"progress", "eta_relative", "state", "current_image", "textinfo", "worker"}
    assert client.get(f"/api/v1/jobs/{job_id}").json()["worker"] == "worker-3"
    assert client.get("/api/v1/workers").json()["workers"] == [{
        "name": "worker-3", "device": "cuda float16 (GPU 3)", "state": "busy", "job_id": job_id,
        "checkpoints": ["tiny.safetensors [0123456789]"], "node": "node-a", "pid": 4242, "jobs_done": 7}]
    app.generation.gate.release()
    status = wait_finished(client, job_id)
    assert status["state"] == "done" and status["worker"] == "worker-3" and status["notes"] == []
    assert client.get("/sdapi/v1/progress").json()["worker"] is None  # idle


def test_the_workers_listing_needs_the_api_login(make_server) -> None:
    _, client = make_server(api_auth=(("ann", "pw"),))
    assert client.get("/api/v1/workers").status_code == 401
    assert client.get("/api/v1/workers", auth=("ann", "pw")).status_code == 200
