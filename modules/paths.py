"""Where things live on disk.

Read-only resources that ship with the code (component configs, tokenizer files) are found relative to the
repository. User data (checkpoints, outputs, config.json) lives under a data directory (`--data-dir`, default the
repository root) and is described by a `DataPaths` value that the App owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CONFIGS = REPO_ROOT / "models" / "configs"
BUILTIN_EXTENSIONS = REPO_ROOT / "extensions"
"""The extensions that ship with the program."""


def tokenizer_dir(name: str) -> Path:
    """Bundled CLIP tokenizer folder: 'clip_l' (OpenAI CLIP ViT-L/14) or 'openclip' (OpenCLIP ViT-H/bigG)."""
    return BUNDLED_CONFIGS / "tokenizers" / name


def family_config_dir(config_name: str) -> Path:
    """Bundled diffusers config folder of a family, e.g. 'sd1', 'sd2-v', 'sdxl-inpaint' (see ModelIdentity)."""
    return BUNDLED_CONFIGS / config_name


@dataclass(frozen=True)
class DataPaths:
    """User-data layout under one data directory (A1111 folder names)."""

    data_dir: Path = REPO_ROOT
    models_dir: Path | None = None
    """A1111's `--models-dir`: where the model folders are (None: DATA_DIR/models)."""
    lora_dir: Path | None = None
    """A1111's `--lora-dir` (None: the models folder's `Lora`)."""
    embeddings_dir: Path | None = None
    """A1111's `--embeddings-dir` (None: the models folder's `embeddings`)."""
    upscaler_dirs: tuple[tuple[str, Path], ...] = ()
    """A1111's `--esrgan-models-path` and the like: (upscaler folder name, where it is) for folders kept elsewhere."""

    @property
    def models(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def checkpoints(self) -> Path:
        return self.models / "Stable-diffusion"

    @property
    def vae(self) -> Path:
        return self.models / "VAE"

    @property
    def lora(self) -> Path:
        return self.lora_dir or self.models / "Lora"

    @property
    def embeddings(self) -> Path:
        return self.embeddings_dir or self.models / "embeddings"

    @property
    def outputs(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def ui_config_file(self) -> Path:
        return self.data_dir / "ui-config.json"

    @property
    def hash_cache_file(self) -> Path:
        return self.data_dir / "cache.json"

    @property
    def styles_file(self) -> Path:
        return self.data_dir / "styles.csv"

    @property
    def extensions(self) -> Path:
        return self.data_dir / "extensions"
