"""The UI's extra-networks panel (lists, picking into the prompt, refresh) and the token counter's embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors.torch import save_file

from modules.networks.service import ExtraNetworks
from modules.ui.extra_networks import lora_text, toggle_in_prompt
from modules.ui.layout import build_ui
from modules.ui.tokens import TokenCounter
from tests.ui.fakes import FakeApp, make_app
from tests.ui.helpers import Page


def write_files(data_dir: Path, embedding: str = "sksstyle", lora: str = "film") -> None:
    (data_dir / "models" / "embeddings").mkdir(parents=True, exist_ok=True)
    (data_dir / "models" / "Lora").mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.ones(2, 32)}, str(data_dir / "models" / "embeddings" / f"{embedding}.safetensors"))
    lora_path = data_dir / "models" / "Lora" / f"{lora}.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.ones(1, 1)}, str(lora_path))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture
def ui(tmp_path: Path, counter: TokenCounter) -> Iterator[tuple[FakeApp, Page]]:
    write_files(tmp_path)
    app = make_app(tmp_path)
    yield app, Page(build_ui(app, tokens=counter))
    app.close()


@pytest.mark.parametrize(("prompt", "text", "expected"), [
    ("", "<lora:film:1>", "<lora:film:1>"),
    ("a cat", "<lora:film:1>", "a cat <lora:film:1>"),
    ("a cat\n", "sksstyle", "a cat\nsksstyle"),
    ("a cat <lora:film:1>", "<lora:film:1>", "a cat"),
    ("a <lora:film:1> cat", "<lora:film:1>", "a cat"),
    ("<lora:film:1> a cat", "<lora:film:1>", "a cat"),
])
def test_toggle_in_prompt(prompt: str, text: str, expected: str) -> None:
    assert toggle_in_prompt(prompt, text) == expected


def test_lora_text_uses_the_default_multiplier() -> None:
    assert lora_text("film") == "<lora:film:1>" and lora_text("film", 0.5) == "<lora:film:0.5>"


def test_panel_lists_files_and_picks_into_the_prompt(ui) -> None:
    _, page = ui
    for tab in ("txt2img", "img2img"):
        embeddings, loras = page.find(f"{tab}_extra_networks_embeddings"), page.find(f"{tab}_extra_networks_loras")
        assert [c[0] for c in embeddings.choices] == ["sksstyle"] and [c[0] for c in loras.choices] == ["film"]
        prompt_id = f"{tab}_prompt"
        assert page.call(loras.elem_id, "input", {prompt_id: "a cat", loras.elem_id: "film"}) == \
            ("a cat <lora:film:1>", None)
        assert page.call(embeddings.elem_id, "input", {prompt_id: "a cat", embeddings.elem_id: "sksstyle"}) == \
            ("a cat sksstyle", None)
        assert page.call(loras.elem_id, "input", {prompt_id: "a cat", loras.elem_id: None}) == ("a cat", None)


def test_refresh_finds_new_files(ui, tmp_path: Path) -> None:
    _, page = ui
    write_files(tmp_path, embedding="newstyle", lora="grain")
    embeddings, loras = page.call("txt2img_extra_networks_refresh", "click")
    assert embeddings.choices == [("newstyle", "newstyle"), ("sksstyle", "sksstyle")]
    assert loras.choices == [("film", "film"), ("grain", "grain")]


def test_token_counter_counts_an_embedding_as_its_vectors(tmp_path: Path) -> None:
    write_files(tmp_path)
    networks = ExtraNetworks.for_folders(tmp_path / "models" / "embeddings", tmp_path / "models" / "Lora")
    networks.refresh()
    counter = TokenCounter(embeddings=networks.counting_lookup)
    plain = TokenCounter()
    assert counter.label("a photo, sksstyle") == "5/75"  # a, photo, comma and two vectors
    assert plain.count("a photo, sksstyle").count != 5
    assert counter.label("a photo") == plain.label("a photo")
