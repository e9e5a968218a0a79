"""A1111's create/embedding over HTTP on a real app (tiny SD1 checkpoint), hypernetworks and sd-modules (empty),
and the SDXL layout of a created embedding."""

from __future__ import annotations

import pytest
import torch

from modules.errors import InvalidRequest
from modules.networks.create_embedding import clean_name, create_embedding
from modules.networks.embeddings import load_embedding
from tests.api.api_helpers import serving
from tests.api.test_real_app import make_real_app
from tests.core.helpers import SDXL, tiny


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    app = make_real_app(tmp_path_factory.mktemp("create_embedding"))
    with serving(app) as client:
        yield app, client


def test_create_embedding_writes_a1111s_file_and_lists_it(served):
    app, client = served
    response = client.post("/sdapi/v1/create/embedding",
                           json={"name": "my style!", "num_vectors_per_token": 3, "init_text": "red"})
    assert response.status_code == 200, response.text
    path = app.paths.embeddings / "my style.pt"
    assert response.json() == {"info": f"create embedding filename: {path}"}
    embedding = load_embedding(path)
    assert embedding.vectors["*"].shape == (3, 32) and embedding.step == 0
    assert embedding.sd_checkpoint_name == "tiny-a"
    with app.models.get() as components:
        token = components.tokenizers[0]("red", add_special_tokens=False).input_ids[0]
        row = components.text_encoders[0].get_input_embeddings().weight[token].detach()
    assert all(torch.equal(vector, row) for vector in embedding.vectors["*"])  # one token spread over 3 vectors
    listed = client.get("/sdapi/v1/embeddings").json()
    assert listed["loaded"]["my style"]["vectors"] == 3


def test_an_existing_name_needs_overwrite_old_and_empty_init_text_gives_zeros(served):
    app, client = served
    body = {"name": "twice", "init_text": "blue"}
    assert client.post("/sdapi/v1/create/embedding", json=body).status_code == 200
    again = client.post("/sdapi/v1/create/embedding", json=body)
    assert again.status_code == 422 and "already exists" in again.text
    replaced = client.post("/sdapi/v1/create/embedding", json={**body, "init_text": "", "overwrite_old": True})
    assert replaced.status_code == 200
    assert torch.count_nonzero(load_embedding(app.paths.embeddings / "twice.pt").vectors["*"]) == 0


def test_unsupported_listings_are_empty(served):
    _, client = served
    assert client.get("/sdapi/v1/hypernetworks").json() == []
    assert client.get("/sdapi/v1/sd-modules").json() == []


def test_sdxl_embeddings_are_written_with_clip_l_and_clip_g(tmp_path):
    path = create_embedding(tmp_path, "xl", tiny(SDXL), None, "tiny-xl", num_vectors_per_token=2, init_text="")
    assert path.name == "xl.safetensors"
    vectors = load_embedding(path).vectors
    assert set(vectors) == {"clip_l", "clip_g"} and all(v.shape[0] == 2 for v in vectors.values())


def test_names_and_counts_are_checked():
    assert clean_name("a/b\\c:d e.f") == "abcd e.f"
    with pytest.raises(InvalidRequest):
        clean_name("///")
    with pytest.raises(InvalidRequest, match="1-75"):
        create_embedding(None, "x", None, None, "", num_vectors_per_token=0)  # type: ignore[arg-type]
