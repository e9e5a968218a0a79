"""Reading `.ckpt`/`.pt` pickles safely: torch's weights-only unpickler plus a short allowlist of plain-data classes.

A pickle that would need any other global (i.e. run code) is refused with UnsafeCheckpoint and never executed.
Used by the probe (keys and shapes, memory-mapped) and the loaders (tensors).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from modules.errors import CorruptFile, UnsafeCheckpoint, UnsupportedModel


class _LightningCheckpointCallback:
    """Stand-in for pytorch_lightning's ModelCheckpoint, which old SD training checkpoints pickle (plain data)."""


# Plain-data classes that original SD `.ckpt` files reference besides tensors; anything else is refused.
_PICKLE_ALLOWLIST: list[Any] = [
    (_LightningCheckpointCallback, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
]


def _numpy_allowlist() -> list[Any]:
    """numpy's scalar reconstructor (under its numpy 1 name too) and dtype classes: data, not code."""
    import numpy as np

    scalar = np.dtype("float64").type(0).__reduce__()[0]
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "float16", "int64", "int32")]
    return [(scalar, "numpy.core.multiarray.scalar"), scalar, np.dtype, *dtypes]


def load_pickle_state_dict(path: Path, *, mmap: bool = True) -> dict[str, torch.Tensor]:
    """Tensors of a `.ckpt` through torch's weights-only unpickler (never executes code in the file).

    Unwraps Lightning's {"state_dict": ...}. Old (non-zip) pickles cannot be memory-mapped; they are read whole.
    """
    try:
        with torch.serialization.safe_globals(_PICKLE_ALLOWLIST + _numpy_allowlist()):
            try:
                data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "global" not in message.lower() and "unsupported operand" not in message.lower():
            raise CorruptFile(f"{path}: damaged or incomplete checkpoint ({message.splitlines()[0]}).") from exc
        found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        what = f"it references {found.group(1)}" if found else "it needs code beyond tensors"
        raise UnsafeCheckpoint(
            f"{path}: refused to load this pickle because {what}; it was not executed. Convert it to "
            f".safetensors with a tool you trust, or get a .safetensors release of the model."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptFile(f"{path}: not a readable PyTorch checkpoint ({first}).") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise UnsupportedModel(f"{path}: the pickle holds a {type(data).__name__}, not a dictionary of tensors.")
    return {key: value for key, value in data.items() if isinstance(value, torch.Tensor)}
