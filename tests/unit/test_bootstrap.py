"""First launch on an empty data folder gets the bundled demo model (or a tiny random one without it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules import bootstrap
from modules.cli import parse_args


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
    finally:
        app.close()


def test_without_the_demo_a_tiny_model_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "BUNDLED_DEMO", tmp_path / "missing.safetensors")
    app = bootstrap.build_app(parse_args(["--data-dir", str(tmp_path / "data")]))
    try:
        added = bootstrap.ensure_a_checkpoint(app)
        assert added is not None and added.name == bootstrap.FALLBACK_CHECKPOINT
        assert app.models.list_checkpoints()[0].identity.family.value == "sd1"
    finally:
        app.close()
