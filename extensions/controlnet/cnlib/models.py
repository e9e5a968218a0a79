"""The ControlNet files of `models/ControlNet` (and A1111's extension folder): listing with A1111's short hashes,
and loading into a diffusers `ControlNetModel` from a diffusers folder, a diffusers single file or an original
(`control_model.`-prefixed or plain LDM) single file, offline, built from the job's UNet config; a file of
another family is a clear error."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

from modules.extensions.api import UNetCallContext, UserError

MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


class ControlNetModels:
    """The ControlNet files of `models/ControlNet` (and A1111's extension folder); the loaded networks are held in
    the model manager's cache of extension networks (`hold`)."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self._hashes: dict[tuple[Path, float], str] = {}

    def set_data_dir(self, data_dir: Path, models_dir: Path | None = None, extra: Path | None = None) -> None:
        """`models_dir/ControlNet` (`--models-dir`, by default `data_dir/models`), sd-webui-controlnet's folder,
        then `extra` (`--controlnet-dir`)."""
        models = models_dir or data_dir / "models"
        self.folders = [models / "ControlNet", data_dir / "extensions" / "sd-webui-controlnet" / "models",
                        *((extra,) if extra is not None else ())]

    def files(self) -> dict[str, Path]:
        """Name (file stem or folder name) -> path, sorted by name."""
        found: dict[str, Path] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
                if path.is_dir() and (path / "config.json").is_file():
                    found.setdefault(path.name, path)
                elif path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
                    found.setdefault(path.stem, path)
        return dict(sorted(found.items(), key=lambda item: item[0].lower()))

    def short_hash(self, path: Path) -> str:
        """First 8 hex digits of the file's sha256 (of the weights file for a folder), cached by mtime."""
        target = path
        if path.is_dir():
            weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
            if not weights:
                return "00000000"
            target = weights[0]
        key = (target, target.stat().st_mtime)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(target, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._hashes[key] = digest.hexdigest()[:8]
        return self._hashes[key]

    def titles(self) -> list[str]:
        return [f"{name} [{self.short_hash(path)}]" for name, path in self.files().items()]

    def find(self, name: str) -> tuple[Path, str]:
        """(path, "name [hash]") for a unit's model name, with or without its hash; UserError naming the folders."""
        wanted = name.split(" [", 1)[0].strip()
        files = self.files()
        path = files.get(wanted) or next((p for n, p in files.items() if n.lower() == wanted.lower()), None)
        if path is None:
            where = " or ".join(str(folder) for folder in self.folders) or "models/ControlNet"
            known = ", ".join(files) or "none"
            raise UserError(f"ControlNet model {name!r} not found in {where} (found: {known}).")
        return path, f"{path.stem if path.is_file() else path.name} [{self.short_hash(path)}]"

    def hold(self, ctx: UNetCallContext, path: Path, load: Callable[[Path, Any], Any]) -> ContextManager[Any]:
        """`with models.hold(ctx, path, load) as net:` the network of `path` (`load(path, unet)`) for the call's
        UNet, from the model manager's cache: keyed by the file (and its size and time) and by the UNet's config,
        device and dtype, so another checkpoint (another family: a clear error) loads it again and a changed file is
        read again."""
        unet = ctx.unet
        stat = path.stat()
        config = json.dumps(dict(unet.config), sort_keys=True, default=str)
        key = ("controlnet", path, stat.st_size, stat.st_mtime_ns, config, str(unet.device), str(unet.dtype))
        return ctx.hold_model(key, lambda: load(path, unet))


def load_controlnet(path: Path, unet: Any) -> Any:
    """A diffusers ControlNetModel from a diffusers folder, a diffusers single file or an original single file."""
    import torch
    from diffusers import ControlNetModel

    if path.is_dir():
        model = ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=unet.dtype)
        return model.to(unet.device).eval()
    state = _read_weights(path)
    with torch.device("meta"):  # only the config is wanted here: no weights are allocated
        config = dict(ControlNetModel.from_unet(_four_channel(unet), load_weights_from_unet=False).config)
    if any(key.startswith(("control_model.", "input_blocks.", "zero_convs.")) for key in state):
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        state = convert_controlnet_checkpoint(state, config)
    with torch.device("meta"):
        model = ControlNetModel.from_config(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        problem = f"{len(missing)} weights missing, {len(unexpected)} unexpected" if missing or unexpected else ""
    except RuntimeError as exc:  # weights of other shapes (another family with the same names)
        problem = f"{str(exc).count('size mismatch')} weights of another shape"
    if problem:
        raise UserError(f"ControlNet file {path.name} does not fit this checkpoint's UNet ({problem}; an SDXL "
                        "ControlNet needs an SDXL checkpoint and an SD 1.x one an SD 1.x checkpoint).")
    if model.dtype != unet.dtype:
        model = model.to(dtype=unet.dtype)
    return model.to(unet.device).eval()


def _four_channel(unet: Any) -> Any:
    """A ControlNet takes the 4 latent channels even beside a 9-channel inpainting UNet."""
    if unet.config.in_channels == 4:
        return unet
    from diffusers import UNet2DConditionModel

    config = dict(unet.config)
    config["in_channels"] = 4
    return UNet2DConditionModel.from_config(config)


def _read_weights(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error type for a bad header
            raise UserError(f"ControlNet file {path.name} cannot be read ({exc}).") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not plain tensors is refused by the weights-only loader
        raise UserError(f"ControlNet file {path.name} cannot be read safely ({exc}).") from None
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    return {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}


