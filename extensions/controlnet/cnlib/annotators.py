"""The ControlNet preprocessors that need weights: depth, normal map, segmentation (and, in pose.py, openpose) run
through transformers with weights that are already on disk (nothing is ever downloaded).

Each annotator reads a transformers folder (config.json, model.safetensors or pytorch_model.bin,
preprocessor_config.json) named after it, looked up in `<data dir>/models/ControlNet/annotators/<folder>/` and then
in A1111's `<data dir>/extensions/sd-webui-controlnet/annotator/downloads/<folder>/`; a missing folder is a UserError
naming the exact folder and what to put there.

- depth (`AutoModelForDepthEstimation`: DPT/MiDaS, Depth Anything): the model's relative depth, resized back to the
  picture (bicubic) and scaled to 0..255 (near = bright), as A1111's depth preprocessors write it;
- normal map: from that depth as A1111's `normal_midas` derives it: Sobel gradients x/y, z = 2 pi, gradients zeroed
  where the scaled depth is below the background threshold, normalised, written as (z, y, x) * 127.5 + 127.5;
- segmentation (`AutoModelForSemanticSegmentation`: UperNet, Segformer, ... trained on ADE20K's 150 classes): the
  logits resized to the picture (bilinear), the best class per pixel painted with the ADE20K palette (ade20k.py);
- pose (`VitPoseForPoseEstimation`, COCO's 17 keypoints) and an optional person detector (`AutoModelForObjectDetection`
  with a "person" class): loaded here, run and drawn in pose.py.

`AnnotatorSession` holds the models loaded for one job (or one detect call) and lets them go on `release()`.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modules.extensions.api import UserError

from .ade20k import PALETTE

log = logging.getLogger(__name__)

ANNOTATORS_FOLDER = ("models", "ControlNet", "annotators")
A1111_FOLDER = ("extensions", "sd-webui-controlnet", "annotator", "downloads")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
DEPTH = "depth"
SEGMENTATION = "segmentation"
POSE = "pose"
DETECTOR = "detector"
COCO_KEYPOINTS = 17
DESCRIPTIONS = {DEPTH: "depth-estimation", SEGMENTATION: "ADE20K semantic-segmentation",
                POSE: "VitPose pose-estimation (COCO's 17 keypoints)", DETECTOR: "object-detection"}


@dataclass(frozen=True)
class Weights:
    """An annotator's weights: its folder name, the kind of transformers model in it and an example of one."""

    folder: str
    kind: str  # DEPTH, SEGMENTATION, POSE or DETECTOR
    example: str


@dataclass(frozen=True)
class AnnotatorFolders:
    """Where annotator folders are looked up: `<root>/<weights.folder>` for each root, in order."""

    roots: tuple[Path, ...] = ()

    @classmethod
    def for_data_dir(cls, data_dir: Path, models_dir: Path | None = None,
                     first: Path | None = None) -> "AnnotatorFolders":
        """`first` (`--controlnet-annotator-models-path`), `<models>/ControlNet/annotators` (`models_dir`:
        `--models-dir`, by default `data_dir/models`), then sd-webui-controlnet's downloads folder."""
        models = models_dir or data_dir / "models"
        return cls((*((first,) if first is not None else ()), models.joinpath(*ANNOTATORS_FOLDER[1:]),
                    data_dir.joinpath(*A1111_FOLDER)))

    def first(self, weights: Weights) -> Path | None:
        """The first candidate folder holding a transformers model (config.json and a weights file), or None."""
        for folder in (root / weights.folder for root in self.roots):
            if (folder / "config.json").is_file() and any((folder / name).is_file() for name in WEIGHT_FILES):
                return folder
        return None

    def find(self, weights: Weights, preprocessor: str) -> Path:
        """The first candidate folder holding a transformers model; UserError naming the folder to fill."""
        found = self.first(weights)
        if found is not None:
            return found
        candidates = [root / weights.folder for root in self.roots]
        where = str(candidates[0]) if candidates else "/".join((*ANNOTATORS_FOLDER, weights.folder))
        also = f" (or {candidates[1]})" if len(candidates) > 1 else ""
        raise UserError(
            f"ControlNet: the {preprocessor} preprocessor needs its model, which is not in {where}{also}. Put a "
            f"transformers {DESCRIPTIONS[weights.kind]} model folder there (config.json, model.safetensors, "
            f"preprocessor_config.json; for example {weights.example}). Nothing is downloaded.")


@dataclass
class Loaded:
    """A loaded annotator: the transformers image processor and model."""

    processor: Any
    model: Any


@dataclass
class AnnotatorSession:
    """The annotator models one job (or one detect call) has loaded, by folder; `release()` lets them go."""

    folders: AnnotatorFolders
    device: Any = "cpu"
    _loaded: dict[Path, Loaded] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def load(self, weights: Weights, preprocessor: str) -> Loaded:
        return self._load_from(self.folders.find(weights, preprocessor), weights, preprocessor)

    def load_optional(self, weights: Weights, preprocessor: str) -> Loaded | None:
        """The model when its folder is there, else None (for weights a preprocessor can do without)."""
        folder = self.folders.first(weights)
        return None if folder is None else self._load_from(folder, weights, preprocessor)

    def _load_from(self, folder: Path, weights: Weights, preprocessor: str) -> Loaded:
        with self._lock:
            if folder not in self._loaded:
                self._loaded[folder] = _load(folder, weights, preprocessor, self.device)
            return self._loaded[folder]

    def release(self) -> None:
        with self._lock:
            self._loaded.clear()


def _family(kind: str) -> Any:
    """The transformers class that loads a model of this kind."""
    import transformers

    names = {DEPTH: "AutoModelForDepthEstimation", SEGMENTATION: "AutoModelForSemanticSegmentation",
             POSE: "VitPoseForPoseEstimation", DETECTOR: "AutoModelForObjectDetection"}
    return getattr(transformers, names[kind])


def _load(folder: Path, weights: Weights, preprocessor: str, device: Any) -> Loaded:
    from transformers import AutoImageProcessor

    family = _family(weights.kind)
    try:
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        model = family.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"ControlNet: the {preprocessor} model in {folder} cannot be loaded as a transformers "
                        f"{DESCRIPTIONS[weights.kind]} model ({exc}).") from None
    _check(model.config, folder, weights, preprocessor)
    log.info("ControlNet: loaded the %s annotator from %s", preprocessor, folder)
    return Loaded(processor, model.to(device).eval())


def _check(config: Any, folder: Path, weights: Weights, preprocessor: str) -> None:
    """UserError when a loaded model cannot give what the preprocessor draws (its classes or keypoints)."""
    labels = int(config.num_labels)
    if weights.kind == SEGMENTATION and labels != len(PALETTE):
        raise UserError(f"ControlNet: the {preprocessor} model in {folder} has {labels} classes; the segmentation "
                        f"ControlNets read ADE20K's {len(PALETTE)} (use a model trained on ADE20K).")
    if weights.kind == POSE and labels != COCO_KEYPOINTS:
        raise UserError(f"ControlNet: the {preprocessor} model in {folder} gives {labels} keypoints; the body "
                        f"skeleton is drawn from COCO's {COCO_KEYPOINTS} (use a VitPose model trained on COCO, for "
                        f"example {weights.example}).")
    if weights.kind == DETECTOR and person_label(config) is None:
        raise UserError(f"ControlNet: the person detector in {folder} has no \"person\" class (use a detector "
                        f"trained on COCO, for example {weights.example}).")


def person_label(config: Any) -> int | None:
    """The class id a detector's config names "person", or None."""
    for label, name in (getattr(config, "id2label", None) or {}).items():
        if str(name).strip().lower() == "person":
            return int(label)
    return None


def _inputs(loaded: Loaded, array: np.ndarray) -> Any:
    """The model's pixel values for an RGB uint8 picture (the processor's own resizing and normalisation)."""
    inputs = loaded.processor(images=array, return_tensors="pt")
    parameter = next(loaded.model.parameters())
    return inputs["pixel_values"].to(parameter.device, parameter.dtype)


def raw_depth(session: AnnotatorSession, weights: Weights, preprocessor: str, array: np.ndarray) -> np.ndarray:
    """The model's relative depth (larger = nearer) at the picture's size, float32 HxW."""
    import torch
    import torch.nn.functional as F

    loaded = session.load(weights, preprocessor)
    with torch.inference_mode():
        predicted = loaded.model(pixel_values=_inputs(loaded, array)).predicted_depth
        depth = F.interpolate(predicted[:, None].float(), size=array.shape[:2], mode="bicubic", align_corners=False)
    return depth[0, 0].cpu().numpy().astype(np.float32)


def scaled_depth(depth: np.ndarray) -> np.ndarray:
    """Depth scaled to 0..1 (its minimum to 0, its maximum to 1; a flat depth stays 0)."""
    shifted = depth - depth.min()
    top = float(shifted.max())
    return shifted / top if top > 0 else shifted


def depth_map(depth: np.ndarray) -> np.ndarray:
    """A1111's depth picture: the scaled depth times 255, uint8 HxW."""
    return (scaled_depth(depth) * 255.0).clip(0, 255).astype(np.uint8)


def _sobel(values: np.ndarray, axis: int) -> np.ndarray:
    """OpenCV's 3x3 Sobel derivative along `axis` (1: x, 0: y), borders reflected without the edge (REFLECT_101)."""
    padded = np.pad(values, 1, mode="reflect")
    if axis == 1:
        diff = padded[:, 2:] - padded[:, :-2]
        return diff[:-2] + 2 * diff[1:-1] + diff[2:]
    diff = padded[2:] - padded[:-2]
    return diff[:, :-2] + 2 * diff[:, 1:-1] + diff[:, 2:]


def normal_map(depth: np.ndarray, background: float, a: float = math.pi * 2.0) -> np.ndarray:
    """A1111's `normal_midas` from a depth: gradients zeroed where the scaled depth < `background`, uint8 HxWx3."""
    x = _sobel(depth.astype(np.float32), 1)
    y = _sobel(depth.astype(np.float32), 0)
    z = np.full_like(x, a)
    far = scaled_depth(depth) < background
    x[far] = 0
    y[far] = 0
    normal = np.stack([z, y, x], axis=2)  # A1111 writes (x, y, z) as BGR
    normal /= np.sqrt(np.sum(normal ** 2.0, axis=2, keepdims=True))
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)


def segmentation_map(session: AnnotatorSession, weights: Weights, preprocessor: str,
                     array: np.ndarray) -> np.ndarray:
    """Each pixel painted with the ADE20K colour of the model's best class there, uint8 HxWx3."""
    import torch
    import torch.nn.functional as F

    loaded = session.load(weights, preprocessor)
    with torch.inference_mode():
        logits = loaded.model(pixel_values=_inputs(loaded, array)).logits
        logits = F.interpolate(logits.float(), size=array.shape[:2], mode="bilinear", align_corners=False)
        classes = logits.argmax(dim=1)[0].cpu().numpy()
    return np.asarray(PALETTE, dtype=np.uint8)[classes]
