"""API 1.8: extensions learn A1111's `--models-dir` (`AppStartedContext.models_dir`, `UiBuilder.models_dir`); the
built-in ControlNet extension lists the networks of `<models-dir>/ControlNet`, not those of the data directory."""

from __future__ import annotations

import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules.cli import parse_args
from modules.extensions.host import ExtensionHost


def _write(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.safetensors").write_bytes(b"not loaded to be listed")


def test_controlnet_lists_the_networks_of_the_models_dir(tmp_path: Path) -> None:
    data, shared = tmp_path / "data", tmp_path / "a1111" / "models"
    _write(data / "models" / "ControlNet", "in_data_dir")
    _write(shared / "ControlNet", "in_models_dir")
    launch = parse_args(["--data-dir", str(data), "--models-dir", str(shared)])
    host = ExtensionHost.for_launch(launch)
    host.load()
    assert host.models_dir == shared and host.hooks.models_dir == shared
    fastapi = FastAPI()
    host.hooks.app_started(fastapi)
    listed = TestClient(fastapi).get("/controlnet/model_list").json()["model_list"]
    assert [title.split(" [")[0] for title in listed] == ["in_models_dir"]


def test_without_the_flag_the_models_dir_is_the_data_dirs(tmp_path: Path) -> None:
    host = ExtensionHost.for_launch(parse_args(["--data-dir", str(tmp_path)]))
    assert host.models_dir == tmp_path / "models"
    assert ExtensionHost(data_dir=tmp_path).hooks.models_dir == tmp_path / "models"


def test_controlnet_dir_and_annotator_path_flags_add_their_folders(tmp_path: Path) -> None:
    """API 1.9: sd-webui-controlnet's `--controlnet-dir` (its preload.py) reaches the extension, which lists the
    networks there after `models/ControlNet`; `--controlnet-annotator-models-path` is looked in first."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    _write(data / "models" / "ControlNet", "in_models")
    _write(elsewhere, "from_the_flag")
    launch = parse_args(["--data-dir", str(data), "--controlnet-dir", str(elsewhere),
                         "--controlnet-annotator-models-path", "annotators-here"])
    host = ExtensionHost.for_launch(launch)
    host.load()
    assert host.hooks.launch_flags["controlnet_dir"] == str(elsewhere)
    fastapi = FastAPI()
    host.hooks.app_started(fastapi)
    listed = TestClient(fastapi).get("/controlnet/model_list").json()["model_list"]
    assert [title.split(" [")[0] for title in listed] == ["from_the_flag", "in_models"]
    annotators = sys.modules["sdwebui_extensions.controlnet.cnlib.annotators"].AnnotatorFolders
    roots = annotators.for_data_dir(data, None, data / "annotators-here").roots
    assert roots[0] == data / "annotators-here" and roots[1] == data / "models" / "ControlNet" / "annotators"
