"""img2img's "Batch" sub-tab without the UI: which files to run, with which mask and parameters, and where the
results go (A1111 1.10 `modules/img2img.py:process_batch`). Pure PIL/pathlib; no torch.

- Folders (`resolve_folder`): a relative path is under the data directory; a path that ends up outside it (absolute,
  or `..`, or a symlink) is refused unless the server runs with `--allow-batch-dirs-outside-data`.
- `plan_batch`: the images of the input folder (A1111's extensions .png .jpg .jpeg .webp .tif .tiff), in natural
  sorted order, not recursive; other files are skipped with a note; an empty or missing folder is an error. With a
  mask folder, an image whose file name (without extension) matches a mask's is inpainted with it; when the mask
  folder holds exactly one image, that mask serves every image (A1111). An image without a mask runs plain
  img2img (A1111 skips it).
- `png_info_params` / `apply_png_info`: "Append png info to prompts": the chosen parameters of the picture's
  infotext (read from the PNG info folder's file of the same name, else the picture itself); the prompts are
  appended to the tab's, the others replace the tab's (A1111).
- `save_batch_outputs`: results saved in the output folder as ``NNNNN-<input name>.<format>`` (``-<n>`` added when
  one input makes several pictures), with the infotext: A1111's names with its default "add number" option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from PIL import Image

from modules import images, infotext
from modules.errors import InvalidRequest
from modules.job_options import OutputOptions
from modules.types import GenerationRequest, GenerationResult

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
PNG_INFO_PROPS: tuple[str, ...] = ("Prompt", "Negative prompt", "Seed", "CFG scale", "Sampler", "Steps", "Model hash")
"""The parameters "Append png info to prompts" can take (A1111 1.10's checkbox group, same labels and order)."""

OUTSIDE_FLAG = "--allow-batch-dirs-outside-data"


def _natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def resolve_folder(text: str | None, data_dir: Path, *, allow_outside: bool, what: str) -> Path | None:
    """The folder typed into a Batch field as an absolute path (None when the field is empty).

    Raises `InvalidRequest` for a folder outside the data directory unless `allow_outside`."""
    raw = (text or "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    full = (path if path.is_absolute() else data_dir / path).resolve()
    if not allow_outside and not full.is_relative_to(data_dir.resolve()):
        raise InvalidRequest(
            f"{what} '{raw}' is outside the data directory ({data_dir}). Use a folder inside it (a relative path is "
            f"taken from it), or start the server with {OUTSIDE_FLAG} to allow any folder.")
    return full


@dataclass(frozen=True)
class BatchItem:
    """One input picture, its mask (None = plain img2img) and the file its PNG info is read from."""

    image: Path
    mask: Path | None
    info: Path


@dataclass(frozen=True)
class BatchPlan:
    items: tuple[BatchItem, ...]
    notes: tuple[str, ...] = ()


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _files(folder: Path) -> list[Path]:
    return sorted((entry for entry in folder.iterdir() if entry.is_file()), key=lambda p: _natural_key(p.name))


def list_images(folder: Path, what: str = "Input directory") -> tuple[list[Path], list[str]]:
    """(images in natural sorted order, names of the other files); InvalidRequest for a missing folder."""
    if not folder.is_dir():
        raise InvalidRequest(f"{what} {folder} does not exist or is not a folder.")
    found: list[Path] = []
    others: list[Path] = []
    for path in _files(folder):
        (found if _is_image(path) else others).append(path)
    return found, [path.name for path in others]


def find_mask(masks: Sequence[Path], image: Path) -> Path | None:
    """The mask of `image`: the only one when there is exactly one (A1111), else the first whose stem matches."""
    if len(masks) == 1:
        return masks[0]
    return next((mask for mask in masks if mask.stem == image.stem), None)


def plan_batch(input_dir: Path, mask_dir: Path | None = None, info_dir: Path | None = None) -> BatchPlan:
    """What a Batch run does, file by file; see the module docstring. Raises `InvalidRequest` for an empty or
    missing input folder or a missing mask/PNG info folder."""
    pictures, others = list_images(input_dir)
    notes = []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        notes.append(f"Skipped {len(others)} file(s) that are not images ({', '.join(IMAGE_EXTENSIONS)}): {shown}.")
    if not pictures:
        raise InvalidRequest(f"Input directory {input_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    masks: list[Path] = []
    if mask_dir is not None:
        masks = list_images(mask_dir, "Inpaint batch mask directory")[0]
        if not masks:
            notes.append(f"The mask directory {mask_dir} holds no images: every picture runs as img2img.")
    if info_dir is not None and not info_dir.is_dir():
        raise InvalidRequest(f"PNG info directory {info_dir} does not exist or is not a folder.")
    items = tuple(BatchItem(path, find_mask(masks, path), (info_dir or input_dir) / path.name) for path in pictures)
    unmasked = [item.image.name for item in items if item.mask is None]
    if masks and unmasked:
        notes.append(f"No mask for {len(unmasked)} picture(s) (run as img2img): {', '.join(unmasked[:5])}.")
    return BatchPlan(items, tuple(notes))


def png_info_params(text: str | None, props: Iterable[str]) -> dict[str, str]:
    """The chosen `props` (PNG_INFO_PROPS labels) found in infotext `text`; {} when there is none."""
    if not text:
        return {}
    parsed = infotext.parse(text)
    wanted = set(props)
    found = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt, **parsed.params}
    return {key: value for key, value in found.items() if key in wanted and key in PNG_INFO_PROPS and value != ""}


def read_png_info(path: Path) -> str | None:
    """The infotext of `path`; None when it is missing or unreadable (A1111 ignores those)."""
    try:
        with Image.open(path) as picture:
            return images.read_infotext(picture)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _number(kind: Callable[[str], object], text: str | None, fallback: object) -> object:
    try:
        return kind(text) if text is not None else fallback
    except ValueError:
        return fallback


def apply_png_info(request: GenerationRequest, params: dict[str, str],
                   checkpoint_for_hash: Callable[[str], str | None] = lambda _hash: None) -> GenerationRequest:
    """`request` (the tab's values) with a picture's PNG info applied as A1111 does: "Prompt" and "Negative prompt"
    appended after a space, Seed / CFG scale / Sampler / Steps replacing the tab's, "Model hash" choosing the
    checkpoint that `checkpoint_for_hash` finds (the tab's when it finds none)."""
    prompt, negative = request.prompt, request.negative_prompt
    if "Prompt" in params:
        prompt = f"{prompt} {params['Prompt']}"
    if "Negative prompt" in params:
        negative = f"{negative} {params['Negative prompt']}"
    checkpoint = request.checkpoint
    if "Model hash" in params:
        checkpoint = checkpoint_for_hash(params["Model hash"]) or checkpoint
    return request.with_changes(
        prompt=prompt, negative_prompt=negative, checkpoint=checkpoint,
        seed=_number(lambda v: int(float(v)), params.get("Seed"), request.seed),
        cfg_scale=_number(float, params.get("CFG scale"), request.cfg_scale),
        sampler=params.get("Sampler", request.sampler),
        steps=_number(lambda v: int(float(v)), params.get("Steps"), request.steps),
    )


def output_pattern(stem: str, index: int, count: int) -> str:
    """A1111's file name pattern in the output folder: the input's name, with ``-<n>`` (1-based) for several."""
    return stem if count <= 1 else f"{stem}-{index + 1}"


def save_batch_outputs(result: GenerationResult, folder: Path, stem: str, options: OutputOptions) -> list[Path]:
    """Save a job's pictures in the Batch output folder, named after input `stem`, with their infotexts."""
    saved = []
    count = len(result.images)
    for index, picture in enumerate(result.images):
        text = result.infotexts[index] if index < len(result.infotexts) else None
        seed = result.seeds[index] if index < len(result.seeds) else result.request.seed
        saved.append(images.save_image(
            picture, folder, seed=seed, infotext=text if options.enable_pnginfo else None,
            extension=options.samples_format, basename_pattern=output_pattern(stem, index, count),
            jpeg_quality=options.jpeg_quality, lossless=options.webp_lossless,
            text_file=text if options.save_txt else None))
    return saved
