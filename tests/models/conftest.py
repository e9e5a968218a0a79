"""Shared fixtures for the model manager tests: tiny checkpoints on disk and diffusers folder skeletons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.models.identity import ModelIdentity, Variant
from modules.models.tiny import ALL_TINY_IDENTITIES, build_tiny_components, tiny_configs


def tiny_file_name(identity: ModelIdentity, suffix: str = ".safetensors") -> str:
    return f"{identity.config_name}-{identity.prediction.value}{suffix}"


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[ModelIdentity, Path]:
    """One A1111-layout tiny .safetensors per family/variant/prediction, written once per test session."""
    from modules.models.convert import save_single_file

    folder = tmp_path_factory.mktemp("tiny_checkpoints")
    files: dict[ModelIdentity, Path] = {}
    for seed, identity in enumerate(ALL_TINY_IDENTITIES):
        path = folder / tiny_file_name(identity)
        save_single_file(build_tiny_components(identity, seed=seed), path)
        files[identity] = path
    return files


def write_diffusers_skeleton(folder: Path, identity: ModelIdentity) -> Path:
    """A diffusers pipeline folder with the JSON files of a tiny model (no weights): enough for probing."""
    configs = tiny_configs(identity)
    pipeline = "StableDiffusionXLPipeline" if identity.is_sdxl else "StableDiffusionPipeline"
    if identity.variant is Variant.INPAINT:
        pipeline = pipeline.replace("Pipeline", "InpaintPipeline")
    index: dict[str, object] = {"_class_name": pipeline, "_diffusers_version": "0.42.1"}
    index["text_encoder"] = ["transformers", "CLIPTextModel"] if "text_encoder" in configs else [None, None]
    if identity.is_sdxl:
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    index.update(unet=["diffusers", "UNet2DConditionModel"], vae=["diffusers", "AutoencoderKL"],
                 scheduler=["diffusers", "EulerDiscreteScheduler"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    names = {"scheduler": "scheduler_config.json"}
    for component, config in configs.items():
        (folder / component).mkdir(exist_ok=True)
        (folder / component / names.get(component, "config.json")).write_text(json.dumps(config))
    return folder


@pytest.fixture
def diffusers_skeleton():
    """The `write_diffusers_skeleton(folder, identity)` helper, as a fixture (conftest is not importable)."""
    return write_diffusers_skeleton
