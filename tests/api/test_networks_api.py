"""/sdapi/v1 embeddings and LoRA routes on the real App: listings from the databases, refresh, generation."""

from __future__ import annotations

import json
from typing import Iterator

import httpx
import pytest
import torch
from safetensors.torch import save_file

from modules.app import App
from modules.bootstrap import build_app
from modules.cli import LaunchOptions
from tests.api.api_helpers import LiveServer, fastapi_for
from tests.networks.app_data import EMBEDDING, LORA, NetworkFiles, write_network_data

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "cfg_scale": 5, "seed": 3}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, httpx.Client, NetworkFiles]]:
    data_dir = tmp_path_factory.mktemp("networks_api")
    files = write_network_data(data_dir)
    app = build_app(LaunchOptions(data_dir=data_dir, api=True))
    server = LiveServer(fastapi_for(app)).start()
    client = httpx.Client(base_url=server.url, timeout=120)
    yield app, client, files
    client.close()
    server.stop()
    app.close()


@pytest.mark.slow
def test_embeddings_are_listed_as_loaded_for_the_current_model(served) -> None:
    _, client, _ = served
    listing = client.get("/sdapi/v1/embeddings").json()
    assert listing["loaded"] == {EMBEDDING: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                             "shape": 32, "vectors": 2}}
    assert listing["skipped"] == {}


def test_an_embedding_for_another_model_is_skipped_after_a_refresh(served) -> None:
    app, client, _ = served
    wide = app.paths.embeddings / "wide.safetensors"
    save_file({"emb_params": torch.zeros(3, 768)}, str(wide))
    try:
        assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
        listing = client.get("/sdapi/v1/embeddings").json()
        assert set(listing["loaded"]) == {EMBEDDING} and listing["skipped"]["wide"]["shape"] == 768
    finally:
        wide.unlink()
        client.post("/sdapi/v1/refresh-embeddings")


def test_loras_are_listed_and_refreshed(served) -> None:
    app, client, files = served
    listing = client.get("/sdapi/v1/loras").json()
    assert listing == [{"name": LORA, "alias": LORA, "path": str(files.lora), "metadata": {"ss_output_name": LORA}}]
    extra = app.paths.lora / "sub" / "other.safetensors"
    extra.parent.mkdir()
    extra.write_bytes(files.lora.read_bytes())
    try:
        assert client.post("/sdapi/v1/refresh-loras").status_code == 200
        assert sorted(item["name"] for item in client.get("/sdapi/v1/loras").json()) == ["other", LORA]
    finally:
        extra.unlink()
        client.post("/sdapi/v1/refresh-loras")


def test_txt2img_with_a_lora_and_an_embedding(served) -> None:
    _, client, _ = served
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": f"{EMBEDDING} <lora:{LORA}:0.8>"})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["extra_generation_params"]["Lora hashes"].startswith(f"{LORA}: ")
    assert info["extra_generation_params"]["TI hashes"].startswith(f"{EMBEDDING}: ")
    assert "Lora hashes: " in info["infotexts"][0]
