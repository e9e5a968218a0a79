"""Are two checkpoints the same model? Compares every tensor (bit for bit) and the metadata of two .safetensors.

    .venv/bin/python -m tools.demo_model.compare models/Stable-diffusion/demo-shapes.safetensors retrained.safetensors

The files' bytes (and so their SHA-256) can differ when the models are identical: safetensors writes the metadata
entries in an order that changes from one process to the next. This is the check behind "the training script
reproduces the shipped weights".
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

log = logging.getLogger("tools.demo_model.compare")


def differences(first: Path, second: Path) -> list[str]:
    """What differs between the two files (empty: the same tensors, bit for bit, and the same metadata)."""
    found: list[str] = []
    with safe_open(str(first), "pt") as a, safe_open(str(second), "pt") as b:
        if a.metadata() != b.metadata():
            found.append("metadata")
        keys_a, keys_b = set(a.keys()), set(b.keys())
        found += [f"only in {first.name}: {key}" for key in sorted(keys_a - keys_b)]
        found += [f"only in {second.name}: {key}" for key in sorted(keys_b - keys_a)]
        for key in sorted(keys_a & keys_b):
            x, y = a.get_tensor(key), b.get_tensor(key)
            if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
                found.append(f"tensor {key}")
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare two .safetensors checkpoints tensor by tensor.")
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    found = differences(args.first, args.second)
    if not found:
        log.info("identical: every tensor bit for bit, and the metadata")
        return
    log.info("%d difference(s):\n%s", len(found), "\n".join(found[:20]))
    sys.exit(1)


if __name__ == "__main__":
    main()
