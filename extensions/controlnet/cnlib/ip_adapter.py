"""IP-Adapter files and CLIP vision encoders for the ControlNet extension's IP-Adapter units.

A unit whose module is an IP-Adapter preprocessor (`ip-adapter_clip_h`, `ip-adapter_clip_g`, `ip-adapter-auto`,
and the A1111 extension's older names `ip-adapter_clip_sd15`, `ip-adapter_clip_sdxl_plus_vith`,
`ip-adapter_clip_sdxl`) takes as model an IP-Adapter file of `models/ControlNet` (`.safetensors` with
`image_proj.` / `ip_adapter.` keys, or a `.bin`/`.pth` holding the two dicts). The plain IP-Adapter (an
ImageProjection of the encoder's image embeds), "plus" (a Resampler of the penultimate hidden states) and "full
face" files are read; FaceID files need face embeddings this program does not compute and are refused.

The CLIP vision encoder is found locally, never downloaded, in `models/clip_vision`, `models/ControlNet/clip_vision`
or A1111's `extensions/sd-webui-controlnet/annotator/downloads/clip_vision`: a transformers
CLIPVisionModelWithProjection folder (config.json + weights) or one weights file with transformers' keys (A1111's
`clip_h.pth` / `clip_g.pth`, ComfyUI's clip vision files), whose architecture comes from the bundled ViT-H/14 or
ViT-bigG/14 config in `models/configs/clip_vision/`. The encoder is chosen by the width the adapter takes.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from modules.extensions.api import UserError

BUNDLED = Path(__file__).resolve().parents[3] / "models" / "configs" / "clip_vision"
ENCODER_FOLDERS = ("models/clip_vision", "models/ControlNet/clip_vision",
                   "extensions/sd-webui-controlnet/annotator/downloads/clip_vision")
"""Where CLIP vision encoders are looked up, under the data directory (`models/` moves with `--models-dir`)."""
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
UNET_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 1280: "the SDXL refiner", 2048: "SDXL"}


@dataclass(frozen=True)
class EncoderKind:
    """A CLIP vision architecture IP-Adapters are trained on: its widths and its bundled config folder."""

    name: str
    label: str
    config: str
    hidden_size: int
    projection_dim: int
    module: str
    example: str


KINDS = (
    EncoderKind("clip_h", "ViT-H/14", "vit-h-14", 1280, 1024, "ip-adapter_clip_h",
                "clip_h.pth or CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"),
    EncoderKind("clip_g", "ViT-bigG/14", "vit-bigg-14", 1664, 1280, "ip-adapter_clip_g",
                "clip_g.pth or CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors"),
)
MODULES: dict[str, str | None] = {"ip-adapter-auto": None, "ip-adapter_clip_h": "clip_h", "ip-adapter_clip_g": "clip_g"}
"""The IP-Adapter preprocessors (listed by `/controlnet/module_list`) and the encoder each asks for (None: any)."""
ALIASES = {"ip-adapter_clip_sd15": "ip-adapter_clip_h", "ip-adapter_clip_sdxl_plus_vith": "ip-adapter_clip_h",
           "ip-adapter_clip_sdxl": "ip-adapter_clip_g"}


def module_name(name: str) -> str | None:
    """The canonical IP-Adapter module for a name a client sends (None when it is not one)."""
    key = str(name or "").strip().lower()
    key = ALIASES.get(key, key)
    return key if key in MODULES else None


def is_module(name: str) -> bool:
    return module_name(name) is not None


# -- adapter files ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterFile:
    """An IP-Adapter's two state dicts and what they need: `hidden_states` (the encoder's penultimate hidden states,
    "plus" and "full face") or its image embeds (plain), of width `encoder_width`, for a UNet whose cross-attention
    width is `cross_attention_dim`."""

    path: Path
    image_proj: Mapping[str, Any] = field(repr=False)
    ip_adapter: Mapping[str, Any] = field(repr=False)
    hidden_states: bool
    encoder_width: int
    cross_attention_dim: int

    @property
    def name(self) -> str:
        return self.path.stem

    def kind(self) -> EncoderKind | None:
        """The known encoder whose width this adapter takes (None for another width)."""
        for kind in KINDS:
            if self.encoder_width == (kind.hidden_size if self.hidden_states else kind.projection_dim):
                return kind
        return None


def read_adapter(path: Path) -> AdapterFile:
    """The IP-Adapter of a file; UserError when it is unreadable, not an IP-Adapter, or a FaceID one."""
    import torch

    if path.is_dir():
        raise UserError(f"IP-Adapter {path.name}: a folder is not an IP-Adapter file (use its .safetensors or .bin).")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            flat = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type for a bad header
            raise UserError(f"IP-Adapter file {path.name} cannot be read ({exc}).") from None
        parts: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
        for key, value in flat.items():
            head, _, rest = key.partition(".")
            if head in parts:
                parts[head][rest] = value
    else:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle that is not plain tensors is refused by the weights-only loader
            raise UserError(f"IP-Adapter file {path.name} cannot be read safely ({exc}).") from None
        parts = {name: dict(data.get(name) or {}) for name in ("image_proj", "ip_adapter")} \
            if isinstance(data, Mapping) else {"image_proj": {}, "ip_adapter": {}}
    return _adapter(path, parts["image_proj"], parts["ip_adapter"])


def _adapter(path: Path, image_proj: dict[str, Any], ip_adapter: dict[str, Any]) -> AdapterFile:
    if not image_proj or not ip_adapter or "1.to_k_ip.weight" not in ip_adapter:
        raise UserError(f"{path.name} is not an IP-Adapter file (no image_proj / ip_adapter weights); the "
                        "IP-Adapter preprocessors need an IP-Adapter model.")
    face_id = "norm.weight" in image_proj and "proj.0.weight" in image_proj and "proj.3.weight" not in image_proj
    if face_id or "perceiver_resampler.proj_in.weight" in image_proj or any("lora" in key for key in ip_adapter):
        raise UserError(f"IP-Adapter {path.name} is a FaceID model: it needs insightface face embeddings, which "
                        "this program does not compute.")
    if "proj.weight" in image_proj:
        hidden, width = False, int(image_proj["proj.weight"].shape[-1])
    elif "proj.3.weight" in image_proj:
        hidden, width = True, int(image_proj["proj.0.weight"].shape[-1])
    elif "proj_in.weight" in image_proj and "latents" in image_proj:
        hidden, width = True, int(image_proj["proj_in.weight"].shape[-1])
    else:
        raise UserError(f"IP-Adapter {path.name}: unknown image projection layout.")
    return AdapterFile(path, image_proj, ip_adapter, hidden, width, int(ip_adapter["1.to_k_ip.weight"].shape[-1]))


# -- encoders --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderFile:
    """A CLIP vision encoder found on disk and its widths."""

    path: Path
    hidden_size: int
    projection_dim: int

    def kind(self) -> EncoderKind | None:
        return next((k for k in KINDS if (k.hidden_size, k.projection_dim) == (self.hidden_size, self.projection_dim)),
                    None)

    def width(self, hidden_states: bool) -> int:
        return self.hidden_size if hidden_states else self.projection_dim


def _vision_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("vision_config") or config


def encoder_widths(path: Path) -> tuple[int, int] | None:
    """(hidden size, projection width) of an encoder folder or file; None when it is not a CLIP vision encoder with
    a projection in transformers' layout."""
    try:
        if path.is_dir():
            config = json.loads((path / "config.json").read_text(encoding="utf8"))
            architectures = config.get("architectures") or ["CLIPVisionModelWithProjection"]
            if not any("Projection" in name or name == "CLIPModel" for name in architectures):
                return None  # a CLIPVisionModel has no projection: its image embeds would be random
            config = _vision_config(config)
            return int(config["hidden_size"]), int(config["projection_dim"])
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                shape = handle.get_slice("visual_projection.weight").get_shape()
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            shape = list(state["visual_projection.weight"].shape)
        return int(shape[1]), int(shape[0])
    except Exception:  # noqa: BLE001 - any file that cannot be read this way is simply not an encoder candidate
        return None


def encoder_candidates(folders: list[Path]) -> list[Path]:
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
            if (path.is_dir() and (path / "config.json").is_file()) or \
                    (path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES):
                found.append(path)
    return found


def bundled_config(hidden_size: int, projection_dim: int, configs: Path = BUNDLED) -> dict[str, Any] | None:
    """The bundled encoder config with these widths (None when none has them)."""
    for path in sorted(configs.glob("*/config.json")):
        config = json.loads(path.read_text(encoding="utf8"))
        if (config.get("hidden_size"), config.get("projection_dim")) == (hidden_size, projection_dim):
            return dict(config)
    return None


def image_processor(image_size: int, configs: Path = BUNDLED) -> Any:
    """The bundled CLIPImageProcessor config sized for the encoder (as diffusers sizes it to `image_size`)."""
    from transformers import CLIPImageProcessor

    config = json.loads((configs / "preprocessor_config.json").read_text(encoding="utf8"))
    config.pop("image_processor_type", None)
    config.update(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return CLIPImageProcessor(**config)


def encoder_view(picture: Any, size: int = 224) -> Any:
    """The picture as a CLIP encoder of `size` pixels sees it: short side scaled to `size` (bicubic), centre crop."""
    from PIL import Image

    from .preprocessors import rgb_array

    picture = Image.fromarray(rgb_array(picture))  # transparent parts over white, as the encoder gets it
    scale = size / min(picture.size)
    width, height = max(size, round(picture.width * scale)), max(size, round(picture.height * scale))
    scaled = picture.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return scaled.crop((left, top, left + size, top + size))


def load_encoder(path: Path, configs: Path = BUNDLED) -> Any:
    """A CLIPVisionModelWithProjection (float32, CPU, eval) from a transformers folder or one weights file."""
    from transformers import CLIPVisionModelWithProjection

    if path.is_dir():
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"CLIP vision encoder {path} cannot be loaded ({exc}).") from None
        return model.eval()
    widths = encoder_widths(path)
    config = bundled_config(*widths, configs=configs) if widths else None
    if config is None:
        known = ", ".join(f"{k.label} ({k.hidden_size}/{k.projection_dim})" for k in KINDS)
        raise UserError(f"CLIP vision encoder {path.name}: its layout matches no bundled config (known: {known}); "
                        "use a transformers folder with its config.json.")
    return _from_single_file(path, config)


def _from_single_file(path: Path, config: dict[str, Any]) -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if not key.endswith("position_ids")}
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing:
        raise UserError(f"CLIP vision encoder {path.name} lacks {len(missing)} weights of its architecture "
                        f"(e.g. {missing[0]}).")
    embeddings = model.vision_model.embeddings
    embeddings.register_buffer("position_ids", torch.arange(embeddings.num_positions).expand((1, -1)),
                               persistent=False)
    return model.float().eval()


class IPAdapterFiles:
    """The encoder folders of a data directory, and the adapters and encoders read from disk (the last ones used)."""

    def __init__(self, configs: Path = BUNDLED, limit: int = 2) -> None:
        self.folders: list[Path] = []
        self.configs = configs
        self.limit = limit
        self._adapters: dict[Any, AdapterFile] = {}
        self._encoders: dict[Any, Any] = {}
        self._widths: dict[tuple[Path, float], tuple[int, int] | None] = {}
        self._lock = threading.Lock()

    def set_data_dir(self, data_dir: Path, models_dir: Path | None = None) -> None:
        models = models_dir or data_dir / "models"
        self.folders = [models / folder.removeprefix("models/") if folder.startswith("models/") else data_dir / folder
                        for folder in ENCODER_FOLDERS]

    def adapter(self, path: Path) -> AdapterFile:
        key = (path, path.stat().st_mtime)
        with self._lock:
            adapter = self._adapters.pop(key, None) or read_adapter(path)
            self._adapters[key] = adapter
            _trim(self._adapters, self.limit)
            return adapter

    def encoders(self) -> list[EncoderFile]:
        """The encoders found in the folders, with their widths."""
        found = []
        for path in encoder_candidates(self.folders):
            key = (path, path.stat().st_mtime)
            if key not in self._widths:
                self._widths[key] = encoder_widths(path)
            widths = self._widths[key]
            if widths is not None:
                found.append(EncoderFile(path, *widths))
        return found

    def encoder_for(self, adapter: AdapterFile, module: str) -> EncoderFile:
        """The encoder an adapter takes, for a unit's module; UserError naming the folders when there is none."""
        wanted = MODULES[module_name(module) or "ip-adapter-auto"]
        needed = adapter.kind()
        if wanted is not None and needed is not None and needed.name != wanted:
            raise UserError(f"IP-Adapter {adapter.name} takes the {needed.label} image encoder: use the "
                            f"{needed.module} preprocessor (or ip-adapter-auto), not {module}.")
        fitting = [e for e in self.encoders() if e.width(adapter.hidden_states) == adapter.encoder_width]
        fitting.sort(key=lambda e: (e.kind() is None, e.path.name.lower()))
        if fitting:
            return fitting[0]
        what = f"{needed.label}, e.g. {needed.example}" if needed else f"width {adapter.encoder_width}"
        where = " or ".join(str(folder) for folder in self.folders) or " or ".join(ENCODER_FOLDERS)
        raise UserError(f"IP-Adapter {adapter.name} needs a CLIP vision encoder ({what}); none found in {where}. "
                        "Put a transformers CLIPVisionModelWithProjection folder (config.json + weights) or a "
                        "single weights file there.")

    def encoder(self, path: Path, device: Any, dtype: Any) -> tuple[Any, Any]:
        """(encoder on device/dtype, its image processor)."""
        key = (path, path.stat().st_mtime, str(device), dtype)
        with self._lock:
            loaded = self._encoders.pop(key, None)
            if loaded is None:
                model = load_encoder(path, self.configs).to(device=device, dtype=dtype)
                loaded = (model, image_processor(int(model.config.image_size), self.configs))
            self._encoders[key] = loaded
            _trim(self._encoders, 1)
            return loaded


def _trim(cache: dict[Any, Any], limit: int) -> None:
    while len(cache) > limit:
        cache.pop(next(iter(cache)))
