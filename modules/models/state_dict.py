"""The one reader of tensor files: safetensors and `.ckpt`/`.pt`/`.pth`/`.bin` pickles -> a state dict.

Checkpoints, VAEs, LoRAs, embeddings and the probe all read files here. Tensors are memory-mapped where the format
allows (safetensors; zip-format pickles through `torch.load(mmap=True)`), so a tensor costs RAM only when used.
Pickles go through torch's weights-only unpickler with a short allowlist of plain-data classes: a pickle that
would run code is refused with `UnsafeCheckpoint` and never executed. Any file that cannot be read (missing,
truncated, damaged) raises `CorruptFile`, and every message names the file.
"""

from __future__ import annotations

import pickle
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from safetensors import SafetensorError, safe_open

from modules.errors import CorruptFile, UnsafeCheckpoint, UnsupportedModel

if TYPE_CHECKING:  # torch loads with the first tensor read, not at start-up (headers need none)
    import torch

StateDict = dict[str, "torch.Tensor"]

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
_ZIP_MAGIC = b"PK\x03\x04"


class _LightningCheckpointCallback:
    """Stand-in for pytorch_lightning's ModelCheckpoint, which old SD training checkpoints pickle (plain data)."""


def _allowed_globals() -> list[Any]:
    """Plain-data classes that SD `.ckpt` files reference besides tensors: the Lightning callback, numpy's
    scalar reconstructor (under its numpy 1 name too) and dtype classes. Anything else is refused."""
    import numpy as np

    scalar = np.dtype("float64").type(0).__reduce__()[0]
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "float16", "int64", "int32")]
    callback = (_LightningCheckpointCallback, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")
    return [callback, (scalar, "numpy.core.multiarray.scalar"), scalar, np.dtype, *dtypes]


@dataclass(frozen=True)
class Header:
    """Key names, tensor shapes and (safetensors) metadata of a file, without its tensor data."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str] = field(default_factory=dict)


def is_safetensors(path: Path) -> bool:
    return Path(path).suffix.lower() in SAFETENSORS_SUFFIXES


def check_readable(path: Path) -> Path:
    """`path` as a Path when its suffix is one this module reads and the file exists, else the error to show."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        known = ", ".join(sorted(SUFFIXES))
        raise UnsupportedModel(f"{path}: unknown file type {path.suffix!r} (supported: {known}).")
    if not path.is_file():
        raise CorruptFile(f"{path}: no such file.")
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.split(". ")[0].splitlines()[0] if text.strip() else type(exc).__name__


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns the ways reading a file fails into CorruptFile / UnsafeCheckpoint naming the file."""
    try:
        yield
    except (SafetensorError, OSError, EOFError, ValueError, RuntimeError) as exc:
        kind = "safetensors file" if is_safetensors(path) else "PyTorch checkpoint"
        raise CorruptFile(f"{path}: not a readable {kind} ({_first_line(exc)}).") from exc
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "global" not in message.lower() and "unsupported operand" not in message.lower():
            raise CorruptFile(f"{path}: damaged or incomplete checkpoint ({_first_line(exc)}).") from exc
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        what = f"it references {found.group(1)}" if found else "it needs code beyond tensors"
        raise UnsafeCheckpoint(
            f"{path}: refused to load this pickle because {what}; it was not executed. Convert it to "
            f".safetensors with a tool you trust, or get a .safetensors release of the model."
        ) from exc


def read_pickle(path: Path, *, allow: Sequence[Any] = ()) -> Any:
    """The whole object of a pickle, through the weights-only unpickler (`allow`: extra plain-data classes).

    Zip-format pickles are memory-mapped; old (non-zip) ones are read whole.
    """
    import torch

    path = check_readable(path)
    with _reading(path):
        with open(path, "rb") as handle:
            mmap = handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
        with torch.serialization.safe_globals([*_allowed_globals(), *allow]):
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


def _pickled_tensors(path: Path) -> StateDict:
    import torch

    data = read_pickle(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # PyTorch Lightning's wrapper
    if not isinstance(data, dict):
        raise UnsupportedModel(f"{path}: the pickle holds a {type(data).__name__}, not a dictionary of tensors.")
    return {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}


def read_state_dict(path: Path, *, prefix: str | tuple[str, ...] = "") -> StateDict:
    """The tensors of a file on the CPU (memory-mapped), only the keys starting with `prefix` when given.

    A pickle's {"state_dict": ...} wrapper is unwrapped and its non-tensor entries are left out.
    """
    path = check_readable(path)
    if not is_safetensors(path):
        return {key: value for key, value in _pickled_tensors(path).items() if key.startswith(prefix)}
    with _reading(path), safe_open(str(path), framework="pt", device="cpu") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors header ({} for pickles, which have none); no tensor data is read."""
    path = check_readable(path)
    if not is_safetensors(path):
        return {}
    with _reading(path), safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def read_header(path: Path) -> Header:
    """Keys, shapes and metadata: the safetensors header alone, or a memory-mapped pickle's tensors (not read)."""
    path = check_readable(path)
    if not is_safetensors(path):
        return Header({key: tuple(value.shape) for key, value in _pickled_tensors(path).items()})
    with _reading(path), safe_open(str(path), framework="pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        return Header(shapes, dict(handle.metadata() or {}))
