"""The model files of a job as the driver names them (`job_files`) and as a worker finds them in its own data folder
(`localize`), without Ray: one stack for the driver and one per worker, each over its own data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modules.bootstrap import GenerationStack, build_generation_stack
from modules.cli import LaunchOptions
from modules.errors import ModelNotFound
from modules.jobs.job_files import JobFiles, job_files, localize
from modules.models.by_hash import EMBEDDING, LORA, VAE, ModelNotOnWorker, ModelRef
from modules.models.hashes import addnet_sha256, calculate_sha256
from modules.prompts.parser import ExtraNetworkRef
from modules.settings import Settings, SettingsStore
from modules.types import GenerationRequest

pytestmark = pytest.mark.slow  # the LoRA and embedding databases import torch

REQUEST = GenerationRequest(prompt="a sksstyle cat <lora:grain:0.5>", negative_prompt="blurry", seed=1,
                            checkpoint="main.safetensors", refiner_checkpoint="refiner", enable_hr=True,
                            hr_checkpoint_name="hires", vae="clear.safetensors")


def tensors(seed: int) -> dict[str, torch.Tensor]:
    return {"emb_params": torch.randn(2, 8, generator=torch.Generator().manual_seed(seed))}


def write(folder: Path, files: dict[str, bytes | dict[str, torch.Tensor]]) -> Path:
    """Files under `folder`/models: raw bytes, or tensors saved as safetensors."""
    for name, contents in files.items():
        path = folder / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(contents, bytes):
            path.write_bytes(contents)
        else:
            save_file(contents, str(path))
    return folder


def stack_for(folder: Path, **settings: Any) -> tuple[GenerationStack, SettingsStore]:
    launch = LaunchOptions(data_dir=folder)
    store = SettingsStore(Settings.from_mapping(settings, launch=launch))
    return build_generation_stack(launch, store, None), store


HEAD = {"Stable-diffusion/main.safetensors": b"main", "Stable-diffusion/refiner.safetensors": b"refiner",
        "Stable-diffusion/hires.safetensors": b"hires", "VAE/clear.safetensors": b"vae clear",
        "Lora/grain.safetensors": tensors(1), "embeddings/sksstyle.safetensors": tensors(2)}
RENAMED = {"Stable-diffusion/m.safetensors": b"main", "Stable-diffusion/sub/r.safetensors": b"refiner",
           "Stable-diffusion/hires.safetensors": b"hires", "VAE/v.safetensors": b"vae clear",
           "VAE/clear.safetensors": b"another vae named clear", "Lora/film.safetensors": tensors(1),
           "Lora/grain.safetensors": tensors(3), "embeddings/other.safetensors": tensors(2)}
"""A worker's folder with the driver's contents under other names (and other contents under two of its names)."""


@pytest.fixture()
def head(tmp_path: Path) -> tuple[GenerationStack, SettingsStore]:
    return stack_for(write(tmp_path / "head", HEAD))


def test_the_driver_names_every_file_of_the_job_by_sha256(head: tuple[GenerationStack, SettingsStore],
                                                          tmp_path: Path) -> None:
    stack, store = head
    files = job_files(stack.generation, REQUEST, store.get())
    models = tmp_path / "head" / "models"
    digest = {name: calculate_sha256(models / name) for name in HEAD}
    assert files.checkpoint == ModelRef(f"main.safetensors [{digest['Stable-diffusion/main.safetensors'][:10]}]",
                                        "main.safetensors", digest["Stable-diffusion/main.safetensors"])
    assert files.refiner is not None and files.refiner.sha256 == digest["Stable-diffusion/refiner.safetensors"]
    assert files.hires is not None and files.hires.name == "hires.safetensors"
    assert files.vae == files.hires_vae == ModelRef("clear.safetensors", "clear.safetensors",
                                                    digest["VAE/clear.safetensors"], VAE)
    assert files.loras == (ModelRef("grain.safetensors", "grain", addnet_sha256(models / "Lora/grain.safetensors"),
                                    LORA),)
    assert files.embeddings == (ModelRef("sksstyle.safetensors", "sksstyle",
                                         digest["embeddings/sksstyle.safetensors"], EMBEDDING),)
    assert len(files.refs()) == 6  # the VAE once
    plain = job_files(stack.generation, GenerationRequest(prompt="sksstyles <lyco:missing>", vae="None"), store.get())
    assert plain.embeddings == plain.loras == () and plain.vae is None and plain.hires is None


def test_a_worker_finds_every_file_by_sha256_under_its_own_names(head: tuple[GenerationStack, SettingsStore],
                                                                  tmp_path: Path) -> None:
    stack, store = head
    files = job_files(stack.generation, REQUEST, store.get())
    worker, _ = stack_for(write(tmp_path / "worker-0", RENAMED))
    local = localize(worker, REQUEST, files, "worker-0")
    assert (local.request.checkpoint, local.request.refiner_checkpoint, local.request.vae) == (
        "m.safetensors", "sub/r.safetensors", "v.safetensors")
    assert local.request.hr_checkpoint_name == "hires"  # the same name and contents: unchanged
    assert local.request.prompt == REQUEST.prompt  # LoRAs and embeddings are lent under the driver's names
    assert {name: lora.path.name for name, lora in local.loras.items()} == {"grain": "film.safetensors"}
    embedding = local.embeddings["sksstyle"]
    assert embedding.name == "sksstyle" and embedding.path.name == "other.safetensors"
    networks = worker.networks
    with networks.substituted(local.loras, local.embeddings):
        uses = networks.lora_uses([ExtraNetworkRef("lora", "grain", ("0.5",))])
        assert [use.lora.path.name for use in uses] == ["film.safetensors"] and uses[0].mentioned_name == "grain"
    assert [use.lora.path.name for use in networks.lora_uses([ExtraNetworkRef("lora", "grain")])] == [
        "grain.safetensors"]  # the folder's own file again after the job


def test_a_worker_with_the_same_names_and_contents_changes_nothing(head: tuple[GenerationStack, SettingsStore],
                                                                    tmp_path: Path) -> None:
    stack, store = head
    files = job_files(stack.generation, REQUEST, store.get())
    worker, _ = stack_for(write(tmp_path / "same", HEAD))
    local = localize(worker, REQUEST, files, "worker-1")
    assert local.request is REQUEST and not local.loras and not local.embeddings


def test_a_worker_without_a_file_says_which(head: tuple[GenerationStack, SettingsStore], tmp_path: Path) -> None:
    stack, store = head
    files = job_files(stack.generation, REQUEST, store.get())
    without_lora = {name: data for name, data in HEAD.items() if not name.startswith("Lora/")}
    worker, _ = stack_for(write(tmp_path / "worker-1", without_lora))
    with pytest.raises(ModelNotOnWorker) as caught:
        localize(worker, REQUEST, files, "worker-1")
    assert caught.value.ref == files.loras[0]
    assert str(caught.value) == (
        f"The LoRA grain.safetensors (sha256 {files.loras[0].sha256}) is not on worker-1: no file with that name "
        f"and contents under {tmp_path / 'worker-1' / 'models' / 'Lora'}.")
    without_vae = {name: data for name, data in HEAD.items() if name != "VAE/clear.safetensors"}
    worker, _ = stack_for(write(tmp_path / "worker-2", without_vae))
    with pytest.raises(ModelNotOnWorker) as caught:
        localize(worker, REQUEST, files, "worker-2")
    assert caught.value.ref == files.vae


def test_automatic_vae_follows_the_driver_s_choice(tmp_path: Path) -> None:
    """"Automatic" finds no VAE beside the driver's checkpoint; a worker that has one beside its copy uses none."""
    head, store = stack_for(write(tmp_path / "head", HEAD), sd_vae="Automatic")
    request = GenerationRequest(prompt="a cat", checkpoint="main.safetensors")
    files = job_files(head.generation, request, store.get())
    assert files == JobFiles(checkpoint=files.checkpoint)
    worker, _ = stack_for(write(tmp_path / "worker", {"Stable-diffusion/main.safetensors": b"main",
                                                     "Stable-diffusion/main.vae.safetensors": b"its vae"}),
                          sd_vae="Automatic")
    assert localize(worker, request, files, "worker-0").request.vae == "None"
    with_vae = {**HEAD, "Stable-diffusion/main.vae.safetensors": b"near vae"}
    head, store = stack_for(write(tmp_path / "head-2", with_vae), sd_vae="Automatic")
    files = job_files(head.generation, request, store.get())
    assert files.vae is not None and files.vae.name == "main.vae.safetensors"
    worker, _ = stack_for(write(tmp_path / "worker-2", {"Stable-diffusion/x.safetensors": b"main",
                                                       "VAE/renamed.safetensors": b"near vae"}), sd_vae="Automatic")
    local = localize(worker, request, files, "worker-0")
    assert (local.request.checkpoint, local.request.vae) == ("x.safetensors", "renamed.safetensors")


XYZ_REQUEST = REQUEST.with_changes(extension_args={
    "_script": {"title": "x/y/z plot"},
    "xyz_grid": {"x_type": "Checkpoint name", "x_values": "main.safetensors, hires.safetensors",
                 "y_type": "Prompt S/R", "y_values": "cat, main", "z_values": ["refiner.safetensors"]}})


def test_checkpoints_named_by_script_values_travel_by_sha256(head: tuple[GenerationStack, SettingsStore],
                                                             tmp_path: Path) -> None:
    """X/Y/Z plot's checkpoint axis on Ray: the driver names the files, a worker resolves the driver's names to its
    own files with the same contents while the job runs; a model name without extension ("main", a prompt word
    here) names nothing."""
    stack, store = head
    files = job_files(stack.generation, XYZ_REQUEST, store.get())
    assert sorted(ref.name for ref in files.named) == ["hires.safetensors", "main.safetensors", "refiner.safetensors"]
    assert set(files.named) <= set(files.refs())
    worker, _ = stack_for(write(tmp_path / "worker-0", RENAMED))
    local = localize(worker, XYZ_REQUEST, files, "worker-0")
    main = next(ref for ref in files.named if ref.name == "main.safetensors")
    assert local.checkpoints == {"main.safetensors": "m.safetensors", main.title: "m.safetensors",
                                 "refiner.safetensors": "sub/r.safetensors",
                                 next(ref.title for ref in files.named if ref.name == "refiner.safetensors"):
                                     "sub/r.safetensors"}  # hires.safetensors: the same name and contents
    models = worker.models
    with models.substituted(local.checkpoints):
        assert models.resolve_checkpoint("main.safetensors").name == "m.safetensors"
        assert models.resolve_checkpoint(main.title).name == "m.safetensors"
        assert models.resolve_checkpoint("hires.safetensors").name == "hires.safetensors"
    with pytest.raises(ModelNotFound):  # after the job, the node's own names only
        models.resolve_checkpoint("main.safetensors")


def test_a_worker_without_a_named_checkpoint_says_which(head: tuple[GenerationStack, SettingsStore],
                                                        tmp_path: Path) -> None:
    stack, store = head
    files = job_files(stack.generation, XYZ_REQUEST, store.get())
    without = {name: data for name, data in HEAD.items() if name != "Stable-diffusion/hires.safetensors"}
    worker, _ = stack_for(write(tmp_path / "worker-3", without))
    with pytest.raises(ModelNotOnWorker) as caught:
        localize(worker, XYZ_REQUEST.with_changes(enable_hr=False), files, "worker-3")
    assert caught.value.ref.name == "hires.safetensors"
