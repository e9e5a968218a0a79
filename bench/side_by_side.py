"""Benchmark: this program's `/sdapi/v1/txt2img` against diffusers' `StableDiffusionPipeline` on the same weights.

Each system runs in its own process (so each has its own allocator and memory): `ours` is `webui.py --nowebui
--api` on a data directory holding the checkpoint; `diffusers` is a worker that loads the same file with
`StableDiffusionPipeline.from_single_file` (the bundled configs, offline) and runs it in its main thread, the way
its users do. Systems named with `+tcmalloc` run with Debian's TCMalloc preloaded; `+bf16` runs in bfloat16 (ours:
the "Model precision" setting; diffusers: `torch_dtype=torch.bfloat16`). Rounds alternate the systems
(the first one of each round rotates), all with the same prompt, seed, size, steps, Euler and CFG 7.

Printed per system: cold start (process start -> ready to serve, and -> first image), then over the warm rounds the
median (min-max) of the whole job and of its stages (text encoder, UNet steps, VAE decode: ours from the API's
`timings`, diffusers' by timing its modules), the ratio to the first system, and the peak RSS.

    .venv/bin/python bench/side_by_side.py --size 256 --steps 8 --rounds 5
    .venv/bin/python bench/side_by_side.py --systems ours,ours+tcmalloc,diffusers,diffusers+tcmalloc
    .venv/bin/python bench/side_by_side.py --systems diffusers,ours+tcmalloc,ours+fast+tcmalloc   # speed-ups on
    .venv/bin/python bench/side_by_side.py --systems diffusers,ours+bf16+tcmalloc,ours+fast+bf16+tcmalloc
    .venv/bin/python bench/side_by_side.py --checkpoint path/to/model.safetensors   # a real SD 1.x file

Without `--checkpoint` a full-size SD 1.5 architecture with random weights is written once to
`bench/.cache/sd15-random.safetensors` (2 GB, fp16 on disk as most downloads are). Timings vary with load: compare
within one run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT, NEGATIVE = "a photo of a red car on a country road, high detail", "blurry, lowres"
STAGES = ("text_encoder", "unet", "vae_decode")
FAST_SETTINGS = {"token_merging_ratio": 0.5, "s_min_uncond": 1.0}
"""`ours+fast`: the optional speed-ups that pay on a CPU (token merging, A1111's negative guidance minimum sigma; both
change the picture), written to the server's config.json (channels-last, fused QKV and torch.compile do not pay on
a CPU: docs/performance.md)."""
BF16_SETTINGS = {"model_dtype": "bfloat16"}
"""`ours+bf16`: "Model precision" bfloat16 (the picture changes slightly; pays on CPUs with native bf16)."""


def server_settings(name: str) -> dict[str, Any]:
    """The config.json of our server for the system `name` (its `+fast` / `+bf16` parts)."""
    settings: dict[str, Any] = {}
    if "+fast" in name:
        settings.update(FAST_SETTINGS)
    if "+bf16" in name:
        settings.update(BF16_SETTINGS)
    return settings


def tcmalloc_path() -> str | None:
    """Debian's TCMalloc, as webui.sh finds it."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in listing.splitlines():
        name = line.strip().split(" ", 1)[0]
        if name in ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"):
            return line.rsplit("=>", 1)[1].strip()
    return None


def build_checkpoint(path: Path) -> Path:
    """A full-size SD 1.5 architecture (bundled configs) with random weights, as one A1111 file in fp16."""
    import torch

    from bench.txt2img_overhead import real_sd1_random
    from modules.models.convert import save_single_file

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    components = real_sd1_random(torch.device("cpu"), torch.float32)
    save_single_file(components, path, dtype=torch.float16)
    return path


def diffusers_config_dir(into: Path) -> Path:
    """The SD 1.x config folder that `from_single_file(config=...)` needs: our bundled configs plus the tokenizer."""
    folder = into / "sd1-config"
    if not folder.exists():
        shutil.copytree(ROOT / "models" / "configs" / "sd1", folder)
        shutil.copytree(ROOT / "models" / "configs" / "tokenizers" / "clip_l", folder / "tokenizer")
    return folder


# -- the diffusers worker (a subprocess: reads a JSON request per line, answers a JSON line) -----------------------

class StageTimer:
    """Wall time spent in chosen modules' forward calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, module: Any, method: str, stage: str) -> None:
        original = getattr(module, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
        setattr(module, method, timed)


def diffusers_worker(checkpoint: Path, config: Path, bf16: bool = False) -> None:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    dtype = torch.bfloat16 if bf16 else torch.float32
    pipe = StableDiffusionPipeline.from_single_file(str(checkpoint), config=str(config), local_files_only=True,
                                                    torch_dtype=dtype, safety_checker=None)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    timer = StageTimer()
    timer.wrap(pipe.text_encoder, "forward", "text_encoder")
    timer.wrap(pipe.unet, "forward", "unet")
    timer.wrap(pipe.vae, "decode", "vae_decode")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        timer.seconds.clear()
        started = time.perf_counter()
        pipe(PROMPT, negative_prompt=NEGATIVE, width=request["size"], height=request["size"],
             num_inference_steps=request["steps"], guidance_scale=7.0,
             generator=torch.Generator().manual_seed(request["seed"]))
        total = time.perf_counter() - started
        print(json.dumps({"total": total, **timer.seconds}), flush=True)


# -- the systems ---------------------------------------------------------------------------------------------------

class PeakRss:
    """Peak resident set size of a process, sampled every 20 ms while it lives."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.peak = 0
        self._process = psutil.Process(pid)
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except Exception:  # the process ended
                return
            time.sleep(0.02)


class System:
    """One system under test, started as its own process."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: Path) -> None:
        self.name, self.args, self.workdir = name, args, workdir
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False"}
        self.env.pop("LD_PRELOAD", None)
        if name.endswith("+tcmalloc"):
            library = tcmalloc_path()
            if library is None:
                raise SystemExit("TCMalloc not found: install libtcmalloc-minimal4")
            self.env["LD_PRELOAD"] = library
        self.results: list[dict[str, float]] = []
        self.cold: dict[str, float] = {}

    def start(self) -> None:
        raise NotImplementedError

    def run(self, seed: int) -> dict[str, float]:
        raise NotImplementedError

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Ours(System):
    def start(self) -> None:
        import httpx

        data = self.workdir / f"data-{self.name.replace('+', '-')}"
        folder = data / "models" / "Stable-diffusion"
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / self.args.checkpoint.name
        if not link.exists():
            link.symlink_to(self.args.checkpoint.resolve())
        (data / "config.json").write_text(json.dumps(server_settings(self.name)))
        port = free_port()
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "webui.py"), "--nowebui", "--api", "--data-dir", str(data), "--port",
             str(port), "--skip-load-model-at-start", "--log-level", "WARNING"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.rss = PeakRss(self.process.pid)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600)
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name}: the server exited with {self.process.returncode}")
            try:
                if self.client.get("/sdapi/v1/sd-models").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        self.cold["ready"] = time.perf_counter() - started
        self.run(0)
        self.cold["first_image"] = time.perf_counter() - started

    def run(self, seed: int) -> dict[str, float]:
        body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "width": self.args.size, "height": self.args.size,
                "steps": self.args.steps, "cfg_scale": 7.0, "sampler_name": "Euler", "seed": seed,
                "save_images": False, "send_images": True}
        started = time.perf_counter()
        response = self.client.post("/sdapi/v1/txt2img", json=body)
        total = time.perf_counter() - started
        response.raise_for_status()
        data = response.json()
        base64.b64decode(data["images"][0])
        timings = json.loads(data["info"]).get("timings", {})
        return {"total": total, "text_encoder": timings.get("encode_prompts", 0.0),
                "unet": timings.get("denoise", 0.0), "vae_decode": timings.get("decode", 0.0)}


class Diffusers(System):
    def start(self) -> None:
        config = diffusers_config_dir(self.workdir)
        started = time.perf_counter()
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--checkpoint", str(self.args.checkpoint),
                   "--config", str(config)] + (["--bf16"] if "+bf16" in self.name else [])
        self.process = subprocess.Popen(command, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.rss = PeakRss(self.process.pid)
        self._read()
        self.cold["ready"] = time.perf_counter() - started
        self.run(0)
        self.cold["first_image"] = time.perf_counter() - started

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: the worker exited with {self.process.wait()}")
        return json.loads(line)

    def run(self, seed: int) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"size": self.args.size, "steps": self.args.steps, "seed": seed}) + "\n")
        self.process.stdin.flush()
        return self._read()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_system(name: str, args: argparse.Namespace, workdir: Path) -> System:
    base = name.split("+", 1)[0]
    if base == "ours":
        return Ours(name, args, workdir)
    if base == "diffusers":
        return Diffusers(name, args, workdir)
    raise SystemExit(f"unknown system {name!r} (ours, diffusers, each optionally with +bf16 and +tcmalloc; ours+fast)")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f}s ({min(values):.2f}-{max(values):.2f})"


def report(systems: list[System], args: argparse.Namespace) -> None:
    print(f"\n{args.size}x{args.size}, {args.steps} steps, Euler, CFG 7, {args.rounds} warm rounds; "
          f"checkpoint {args.checkpoint.name}")
    base = statistics.median(r["total"] for r in systems[0].results)
    for system in systems:
        totals = [r["total"] for r in system.results]
        stages = "  ".join(f"{stage} {spread([r.get(stage, 0.0) for r in system.results])}" for stage in STAGES)
        print(f"{system.name:<20} total {spread(totals)}  ratio {statistics.median(totals) / base:5.2f}  {stages}  "
              f"peak RSS {system.rss.peak / 2**30:5.2f} GiB  cold: ready {system.cold['ready']:.1f}s, "
              f"first image {system.cold['first_image']:.1f}s")


@contextmanager
def started(systems: list[System]) -> Iterator[None]:
    try:
        for system in systems:
            system.start()
        yield
    finally:
        for system in systems:
            if hasattr(system, "process"):
                system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="ours,diffusers")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        diffusers_worker(args.checkpoint, args.config, args.bf16)
        return
    if args.checkpoint is None:
        args.checkpoint = build_checkpoint(ROOT / "bench" / ".cache" / "sd15-random.safetensors")
    with tempfile.TemporaryDirectory(prefix="side_by_side") as folder:
        systems = [make_system(name.strip(), args, Path(folder)) for name in args.systems.split(",")]
        with started(systems):
            for round_no in range(args.rounds):
                order = systems[round_no % len(systems):] + systems[:round_no % len(systems)]
                for system in order:
                    system.results.append(system.run(1000 + round_no))
                print(f"round {round_no + 1}: " + ", ".join(f"{s.name} {s.results[-1]['total']:.2f}s"
                                                             for s in systems), flush=True)
        report(systems, args)


if __name__ == "__main__":
    main()
