"""build_app: first launch on an empty data folder gets the bundled demo model (or a tiny random one without it);
the job queue runs generations on the App's generation service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from modules import bootstrap
from modules.cli import parse_args
from modules.processing import GenerationService
from modules.types import GenerationRequest
from modules.ui.toprow import size_updates


def test_empty_data_dir_gets_the_bundled_demo(tmp_path: Path) -> None:
    if not bootstrap.BUNDLED_DEMO.is_file():
        pytest.skip("the demo model is not in this checkout")
    app = bootstrap.build_app(parse_args(["--data-dir", str(tmp_path)]))
    try:
        added = bootstrap.ensure_a_checkpoint(app)
        assert added == tmp_path / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
        assert added.read_bytes() == bootstrap.BUNDLED_DEMO.read_bytes()
        assert [record.name for record in app.models.list_checkpoints()] == ["demo-shapes.safetensors"]
        assert bootstrap.ensure_a_checkpoint(app) is None  # only when none is installed
        # the demo declares its native size; the UI's width/height follow it (txt2img and img2img)
        title = app.models.list_checkpoints()[0].title
        assert size_updates(app, title, 2) == [64, 64, 64, 64]
    finally:
        app.close()


def test_without_the_demo_a_tiny_model_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "BUNDLED_DEMO", tmp_path / "missing.safetensors")
    app = bootstrap.build_app(parse_args(["--data-dir", str(tmp_path / "data")]))
    try:
        added = bootstrap.ensure_a_checkpoint(app)
        assert added is not None and added.name == bootstrap.FALLBACK_CHECKPOINT
        record = app.models.list_checkpoints()[0]
        assert record.identity.family.value == "sd1"
        assert record.native_resolution is None  # no declared size: the UI leaves width/height alone
    finally:
        app.close()


def test_the_queue_runs_generations_on_the_apps_generation_service(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = bootstrap.build_app(parse_args(["--data-dir", str(tmp_path)]))
    try:
        service = app.generation
        assert isinstance(service, GenerationService)
        assert (service.settings, service.models, service.samplers, service.networks, service.extensions,
                service.styles, service.paths) == (app.settings, app.models, app.samplers, app.networks,
                                                   app.extensions, app.styles, app.paths)
        ran: list[tuple[GenerationRequest, bool | None]] = []

        def run(request: GenerationRequest, ctx: object, *, save: bool | None = None) -> str:
            ran.append((request, save))
            return "ran"

        monkeypatch.setattr(service, "run", run)
        request = GenerationRequest(prompt="a lake")
        assert app.submit(request, save=False).outcome(30) == "ran" and ran == [(request, False)]
    finally:
        app.close()


def test_processing_never_names_the_app() -> None:
    source = (Path(bootstrap.__file__).parent / "processing.py").read_text()
    names = {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}
    assert "App" not in names and "modules.app" not in source and '"App"' not in source
