"""A data directory for the real App with a tiny SD1 checkpoint, a textual inversion embedding and a kohya LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.models.convert import save_single_file
from modules.models.identity import Family, ModelIdentity
from modules.models.tiny import TINY_HIDDEN, build_tiny_components
from tests.networks.helpers import kohya_state, write_lora

EMBEDDING = "sksstyle"
LORA = "tinylora"
LORA_UNET = [
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.resnets.0.conv1",
    "mid_block.resnets.0.time_emb_proj",
]
LORA_TE = [(0, "encoder.layers.0.self_attn.q_proj"), (0, "encoder.layers.1.mlp.fc1")]


@dataclass(frozen=True)
class NetworkFiles:
    checkpoint: Path
    embedding: Path
    lora: Path


def write_network_data(data_dir: Path) -> NetworkFiles:
    """models/Stable-diffusion/tiny.safetensors, models/embeddings/sksstyle.safetensors (2 vectors) and
    models/Lora/tinylora.safetensors (rank 2, alpha 2, on UNet and text-encoder layers) under `data_dir`."""
    components = build_tiny_components(ModelIdentity(Family.SD1), seed=0)
    checkpoint = data_dir / "models" / "Stable-diffusion" / "tiny.safetensors"
    checkpoint.parent.mkdir(parents=True)
    save_single_file(components, checkpoint)
    embedding = data_dir / "models" / "embeddings" / f"{EMBEDDING}.safetensors"
    embedding.parent.mkdir(parents=True)
    vectors = torch.randn(2, TINY_HIDDEN, generator=torch.Generator().manual_seed(5)) * 2
    save_file({"emb_params": vectors}, str(embedding))
    state = kohya_state(components, LORA_UNET, LORA_TE, rank=2, alpha=2.0)
    lora = write_lora(data_dir / "models" / "Lora" / f"{LORA}.safetensors", state, {"ss_output_name": LORA})
    return NetworkFiles(checkpoint, embedding, lora)
