"""Interrogate: a caption for a picture from a BLIP captioning model in the models folder (A1111's "Interrogate CLIP").

A1111 downloads BLIP (and CLIP, for its list of artists and flavours) on first use. Nothing is downloaded here: the
captioning model is a Hugging Face-format BLIP folder (`config.json` of model type "blip", the weights, the tokenizer
and preprocessor files; e.g. a copy of Salesforce/blip-image-captioning-base) in `models/BLIP/`, or in one folder
below it. Without one, interrogating says where to put it. The caption is BLIP's alone: A1111's CLIP ranking of
artists, mediums and flavours, and DeepDanbooru tags, are not produced (docs/compat.md).

`CaptionModel` is one loaded model; `InterrogateService` finds it, keeps it in the model manager's cache (one at a
time, on the generation device) and answers A1111's model names ("clip"; "deepdanbooru" is refused).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from modules.errors import InvalidRequest, ModelNotFound

log = logging.getLogger(__name__)

CAPTION_FOLDER = "BLIP"
"""A1111's folder name for the BLIP captioning model, under the models folder."""
MAX_CAPTION_TOKENS = 40
"""Caption length limit in tokens (A1111's `interrogate_clip_max_length` default is 48 characters' worth)."""
A1111_MODELS = ("clip", "deepdanbooru")


def _is_blip_folder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "blip"
    except (OSError, ValueError, AttributeError):
        return False


def find_caption_model(models_dir: Path) -> Path | None:
    """`models/BLIP` itself when it holds a BLIP model, else the first folder below it (by name) that does."""
    root = models_dir / CAPTION_FOLDER
    if _is_blip_folder(root):
        return root
    if not root.is_dir():
        return None
    return next((folder for folder in sorted(root.iterdir()) if folder.is_dir() and _is_blip_folder(folder)), None)


@dataclass
class CaptionModel:
    """A loaded BLIP captioning model and its processor."""

    processor: Any
    model: Any
    device: torch.device

    @classmethod
    def load(cls, folder: Path, device: torch.device, dtype: torch.dtype) -> "CaptionModel":
        from transformers import BlipForConditionalGeneration, BlipProcessor  # loaded on first use only

        started = time.perf_counter()
        try:
            processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
            model: Any = BlipForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as error:
            raise InvalidRequest(f"The captioning model in {folder} cannot be loaded ({error}): it needs config.json, "
                                 "the weights, and the tokenizer and preprocessor files of a BLIP model.") from error
        model.to(device)  # nn.Module.to moves in place
        model.eval()
        log.info("Loaded captioning model %s in %.1fs", folder.name, time.perf_counter() - started)
        return cls(processor, model, device)

    def to(self, device: torch.device | str) -> "CaptionModel":
        """For the model manager's cache (it moves models it keeps)."""
        self.model = self.model.to(device)
        self.device = torch.device(device)
        return self

    @torch.inference_mode()
    def caption(self, image: Image.Image) -> str:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        tokens = self.model.generate(**inputs, max_new_tokens=MAX_CAPTION_TOKENS, num_beams=1, do_sample=False)
        return str(self.processor.decode(tokens[0], skip_special_tokens=True)).strip()


HoldCaptioner = Callable[[Path], AbstractContextManager[CaptionModel]]
"""The model manager's `hold_captioner`: the loaded model of a folder, for a `with` block."""


class InterrogateService:
    """A1111's interrogate for one picture: `interrogate(image, "clip")` returns the caption."""

    def __init__(self, models_dir: Path, hold: HoldCaptioner) -> None:
        self.models_dir = models_dir
        self.hold = hold

    def folder(self) -> Path:
        found = find_caption_model(self.models_dir)
        if found is None:
            raise ModelNotFound(
                f"No captioning model: put a BLIP captioning model in Hugging Face format (config.json, the weights, "
                f"tokenizer and preprocessor files) in {self.models_dir / CAPTION_FOLDER}. Nothing is downloaded.")
        return found

    def interrogate(self, image: Image.Image, model: str = "clip") -> str:
        if model == "deepdanbooru":
            raise ModelNotFound("DeepDanbooru is not available here; interrogate with model \"clip\" (a BLIP "
                                "caption).")
        if model != "clip":
            raise ModelNotFound(f"Model not found: {model!r}; choose one of: {', '.join(A1111_MODELS[:1])}.")
        with self.hold(self.folder()) as captioner:
            return captioner.caption(image)
