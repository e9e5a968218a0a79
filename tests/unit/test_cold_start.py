"""Cold start: the page and the API come up, and answer, without importing torch, diffusers or transformers (they
load in the background after the server is ready, or with the first job; listings that read the files, such as
`/sdapi/v1/embeddings`, load them then). Run in a fresh interpreter, so the test sees exactly what start-up
imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modules.paths import REPO_ROOT

HEAVY = ("torch", "diffusers", "transformers", "ray")  # ray: only with --workers / --ray-address

SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
import webui
from fastapi.testclient import TestClient
from modules.bootstrap import build_app, ensure_a_checkpoint
from modules.cli import parse_args

launch = parse_args(["--api", "--data-dir", {data!r}])
app = build_app(launch)
ensure_a_checkpoint(app)
server = webui.build_server(app, launch)
with TestClient(server) as client:
    statuses = {{path: client.get(path).status_code for path in (
        "/", "/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/sd-models", "/sdapi/v1/options",
        "/sdapi/v1/upscalers", "/sdapi/v1/scripts", "/sdapi/v1/prompt-styles", "/sdapi/v1/cmd-flags")}}
loaded = [name for name in {heavy!r} if name in sys.modules]
app.close()
print(json.dumps({{"statuses": statuses, "loaded": loaded}}))
"""


@pytest.mark.slow
def test_start_up_and_first_answers_do_not_import_the_generation_stack(tmp_path: Path) -> None:
    script = SCRIPT.format(root=str(REPO_ROOT), data=str(tmp_path / "data"), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                                              "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == {path: 200 for path in report["statuses"]}
    assert report["loaded"] == []


RACE_SCRIPT = """
import sys, threading
sys.path.insert(0, {root!r})
import webui
from modules.bootstrap import build_app, ensure_a_checkpoint
from modules.cli import parse_args
from modules.types import GenerationRequest

app = build_app(parse_args(["--data-dir", {data!r}]))
ensure_a_checkpoint(app)
threading.Thread(target=webui._warm_up, args=(app, False), daemon=True).start()
job = app.submit(GenerationRequest(prompt="a red circle", width=64, height=64, steps=1), save=False)
result = job.outcome(timeout=600)
app.close()
print("images", len(result.images))
"""


@pytest.mark.slow
def test_a_job_that_arrives_during_the_warm_up_runs(tmp_path: Path) -> None:
    # the warm-up thread and the job's thread both import the generation core: one at a time (core_loader.py)
    script = RACE_SCRIPT.format(root=str(REPO_ROOT), data=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT, env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                                              "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "images 1"
