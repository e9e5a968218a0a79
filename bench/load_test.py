"""A bounded load test of the HTTP API: N concurrent clients for a while, mixing txt2img, img2img, progress polling,
options reads and jobs that their client cancels (the job API's DELETE), against one server.

Every generation asks for its own seed (unique over the whole run); each answer must carry that seed in its info
and in the PNG's infotext, so a picture that went to the wrong client, got lost or came twice is counted. Prints
per-operation latency (p50/p95), answer codes, the server's resident memory before and after, and the problems.

    .venv/bin/python bench/load_test.py --url http://127.0.0.1:7860 --clients 16 --seconds 60

Without `--url` it starts the real app in this process on two tiny SD 1.x checkpoints (made in a temporary
folder), so it runs anywhere; the resident memory is then this process's. tests/api/test_load.py runs it shorter
and asserts on the report.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5, "prompt": "a red square"}


@dataclass
class LoadReport:
    """What a run saw: latencies by operation, answer codes, seeds asked and received, problems."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    asked: set[int] = field(default_factory=set)
    received: list[int] = field(default_factory=list)
    cancelled: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    rss_before: int = 0
    rss_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[operation].append(seconds)
            self.statuses[status] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    @property
    def lost(self) -> set[int]:
        return self.asked - set(self.received) - self.cancelled

    @property
    def duplicated(self) -> set[int]:
        return {seed for seed in self.received if self.received.count(seed) > 1}

    def summary(self) -> str:
        lines = []
        for operation, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
            lines.append(f"{operation:10s} n={len(values):4d}  p50 {statistics.median(values):6.2f} s  "
                         f"p95 {p95:6.2f} s")
        codes = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        change = (self.rss_after - self.rss_before) / self.rss_before * 100 if self.rss_before else 0.0
        lines.append(f"answers: {codes}")
        lines.append(f"generations: {len(self.asked)} asked, {len(self.received)} pictures received, "
                     f"{len(self.cancelled)} cancelled by their client, {len(self.lost)} lost, "
                     f"{len(self.duplicated)} duplicated")
        lines.append(f"server RSS: {self.rss_before / 2**20:.0f} MiB before, {self.rss_after / 2**20:.0f} MiB after "
                     f"({change:+.1f} %)")
        lines.extend(f"problem: {text}" for text in self.problems[:20])
        return "\n".join(lines)


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _check_pictures(report: LoadReport, seed: int, data: dict[str, Any], where: str) -> None:
    """The answer's pictures must carry `seed` (info and PNG infotext)."""
    info = json.loads(data["info"]) if isinstance(data.get("info"), str) else data.get("info") or {}
    images = data.get("images") or []
    if info.get("seed") != seed:
        report.problem(f"{where}: asked seed {seed}, info says {info.get('seed')}")
    for text in images:
        with Image.open(io.BytesIO(base64.b64decode(text))) as picture:
            parameters = picture.info.get("parameters", "")
        if f"Seed: {seed}," not in parameters:
            report.problem(f"{where}: seed {seed} not in the picture's infotext")
    with report.lock:
        report.received.extend([seed] * len(images))


class Client:
    """One client's loop: its operations in turn until the deadline."""

    def __init__(self, url: str, number: int, seeds: Callable[[], int], report: LoadReport, deadline: float) -> None:
        self.http = httpx.Client(base_url=url, timeout=300)
        self.number, self.seeds, self.report, self.deadline = number, seeds, report, deadline
        self.init_image = _png(Image.new("RGB", (64, 64), (40 * (number % 6), 90, 200)))

    def _timed(self, operation: str, call: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = call()
        except httpx.HTTPError as error:
            self.report.problem(f"{operation}: {type(error).__name__}: {error}")
            return None
        self.report.record(operation, time.perf_counter() - started, response.status_code)
        if response.status_code >= 500:
            self.report.problem(f"{operation}: {response.status_code} {response.text[:200]}")
        return response

    def txt2img(self) -> None:
        seed = self.seeds()
        with self.report.lock:
            self.report.asked.add(seed)
        response = self._timed("txt2img", lambda: self.http.post("/sdapi/v1/txt2img", json={**SMALL, "seed": seed}))
        if response is not None and response.status_code == 200:
            _check_pictures(self.report, seed, response.json(), f"client {self.number} txt2img")

    def img2img(self) -> None:
        seed = self.seeds()
        with self.report.lock:
            self.report.asked.add(seed)
        body = {**SMALL, "seed": seed, "init_images": [self.init_image], "denoising_strength": 0.6}
        response = self._timed("img2img", lambda: self.http.post("/sdapi/v1/img2img", json=body))
        if response is not None and response.status_code == 200:
            _check_pictures(self.report, seed, response.json(), f"client {self.number} img2img")

    def cancelled_job(self) -> None:
        """A job through the job API that its client cancels at once (interrupt of its own job)."""
        seed = self.seeds()
        created = self._timed("job submit", lambda: self.http.post(
            "/api/v1/jobs", json={**SMALL, "seed": seed, "mode": "txt2img"}))
        if created is None or created.status_code != 202:
            return
        job_id = created.json()["job_id"]
        self._timed("cancel", lambda: self.http.delete(f"/api/v1/jobs/{job_id}"))
        with self.report.lock:
            self.report.asked.add(seed)
            self.report.cancelled.add(seed)  # it may still finish: counted as received only if its picture arrives
        while time.monotonic() < self.deadline + 120:
            status = self._timed("job poll", lambda: self.http.get(f"/api/v1/jobs/{job_id}"))
            if status is None or status.status_code != 200:
                return
            body = status.json()
            if body["state"] in ("done", "failed", "cancelled", "interrupted"):
                result = body.get("result") or {}
                if result.get("images"):
                    _check_pictures(self.report, seed, result, f"client {self.number} job")
                return
            time.sleep(0.2)

    def run(self) -> None:
        operations = [self.txt2img, self.progress, self.img2img, self.options, self.cancelled_job]
        for operation in itertools.cycle(operations[self.number % len(operations):] +
                                         operations[:self.number % len(operations)]):
            if time.monotonic() >= self.deadline:
                break
            operation()
        self.http.close()

    def progress(self) -> None:
        self._timed("progress", lambda: self.http.get("/sdapi/v1/progress"))

    def options(self) -> None:
        self._timed("options", lambda: self.http.get("/sdapi/v1/options"))


def run_load(url: str, clients: int, seconds: float, rss: Callable[[], int]) -> LoadReport:
    """Run `clients` clients against `url` for `seconds` (each finishes the operation it is in)."""
    report = LoadReport()
    counter = itertools.count(1_000_000)
    lock = threading.Lock()

    def next_seed() -> int:
        with lock:
            return next(counter)

    with httpx.Client(base_url=url, timeout=300) as warm:  # load the model before measuring memory
        warm.post("/sdapi/v1/txt2img", json={**SMALL, "seed": 1}).raise_for_status()
    report.rss_before = rss()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=Client(url, number, next_seed, report, deadline).run, daemon=True)
               for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.rss_after = rss()
    return report


def _local_server() -> tuple[str, Callable[[], None]]:
    """The real app on two tiny checkpoints in a temporary folder, served on a free port of 127.0.0.1."""
    from modules.bootstrap import build_app
    from modules.cli import LaunchOptions
    from modules.models.convert import save_single_file
    from modules.models.identity import Family, ModelIdentity
    from modules.models.tiny import build_tiny_components
    from tests.api.api_helpers import LiveServer, fastapi_for

    folder = Path(tempfile.mkdtemp(prefix="load-test-"))
    models = folder / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    for seed, name in enumerate(("tiny-a.safetensors", "tiny-b.safetensors")):
        save_single_file(build_tiny_components(ModelIdentity(Family.SD1), seed=seed), models / name)
    app = build_app(LaunchOptions(data_dir=folder, api=True))
    server = LiveServer(fastapi_for(app)).start()

    def stop() -> None:
        server.stop()
        app.close()
    return server.url, stop


def main() -> None:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (default: the real app in this process on tiny models)")
    parser.add_argument("--pid", type=int, help="the server's process id, for its resident memory (with --url)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    stop: Callable[[], None] = lambda: None  # noqa: E731
    url = args.url
    if url is None:
        url, stop = _local_server()
    process = psutil.Process(args.pid) if args.pid else psutil.Process()
    try:
        report = run_load(url, args.clients, args.seconds, lambda: process.memory_info().rss)
    finally:
        stop()
    print(report.summary())


if __name__ == "__main__":
    main()
