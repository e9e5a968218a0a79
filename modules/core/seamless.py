"""A1111's "Tiling": pictures that tile seamlessly, by circular padding in every convolution of the models.

While `circular_padding` is active, each `Conv2d` of the given models pads by wrapping around the opposite edge
instead of with zeros, so the UNet and the VAE see the latent as a torus and the picture's left edge continues its
right one (and the top its bottom). The previous padding modes come back afterwards, also on errors.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch


@contextlib.contextmanager
def circular_padding(models: Iterable[torch.nn.Module | None], enabled: bool = True) -> Iterator[None]:
    """Within the block, every padded `Conv2d` of `models` (None entries skipped) pads circularly (when
    `enabled`; otherwise nothing changes)."""
    changed: list[tuple[torch.nn.Conv2d, str]] = []
    try:
        if enabled:
            seen: set[int] = set()
            for model in models:
                if model is None:
                    continue
                for layer in model.modules():
                    if isinstance(layer, torch.nn.Conv2d) and id(layer) not in seen and layer.padding != (0, 0):
                        seen.add(id(layer))
                        changed.append((layer, layer.padding_mode))
                        layer.padding_mode = "circular"
        yield
    finally:
        for layer, mode in changed:
            layer.padding_mode = mode  # type: ignore[assignment]  # one of torch's modes: it was read there
