"""Token merging (ToMe for SD, the `tomesd` package) on the UNets of one sampling pass.

`token_merging(unets, ratio)` patches the UNets' transformer blocks for the duration of a `with` block and always
removes the patch afterwards (also on errors and interrupts), so a cached UNet is unchanged for the next job; ratio 0
patches nothing. The arguments are A1111's (`TOME_SETTINGS`): merge the self-attention input tokens only, at the
UNet levels without downsampling, with the destination token of each 2x2 cell fixed at its top left (no random
choice, so a seed gives the same picture every time and no global generator is read). Which ratio a pass uses is
`CoreOptions`' rule (modules/core/plan.py).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator

import tomesd
import torch

log = logging.getLogger(__name__)

_INFO = "_tome_info"
"""The attribute `tomesd.apply_patch` leaves on the UNet and its patched blocks (`remove_patch` keeps it)."""


@dataclass(frozen=True)
class ToMeSettings:
    """`tomesd.apply_patch`'s arguments besides the ratio, as A1111 passes them."""

    max_downsample: int = 1
    sx: int = 2
    sy: int = 2
    use_rand: bool = False
    merge_attn: bool = True
    merge_crossattn: bool = False
    merge_mlp: bool = False


TOME_SETTINGS = ToMeSettings()


def _distinct(unets: Iterable[torch.nn.Module]) -> list[torch.nn.Module]:
    """Each UNet once (a refiner or hires checkpoint may be the base model itself)."""
    seen: dict[int, torch.nn.Module] = {}
    for unet in unets:
        seen.setdefault(id(unet), unet)
    return list(seen.values())


def patched_blocks(unet: torch.nn.Module) -> int:
    """How many transformer blocks of `unet` carry the ToMe patch now."""
    return sum(type(module).__name__ == "ToMeBlock" for module in unet.modules())


def _apply(unet: torch.nn.Module, ratio: float, settings: ToMeSettings) -> None:
    arguments: dict[str, Any] = asdict(settings)
    tomesd.apply_patch(unet, ratio=ratio, **arguments)


def _remove(unet: torch.nn.Module) -> None:
    """Undo `_apply` exactly: the blocks' classes, the size hook, and the attributes tomesd leaves behind."""
    tomesd.remove_patch(unet)
    for module in unet.modules():
        if _INFO in vars(module):
            delattr(module, _INFO)


@contextmanager
def token_merging(unets: Iterable[torch.nn.Module], ratio: float,
                  settings: ToMeSettings = TOME_SETTINGS) -> Iterator[None]:
    """Merge `ratio` (0 <= ratio < 1) of the tokens of each UNet's transformer blocks while the block runs."""
    if ratio <= 0:
        yield
        return
    patched: list[torch.nn.Module] = []
    try:
        for unet in _distinct(unets):
            patched.append(unet)
            _apply(unet, ratio, settings)
        log.debug("token merging ratio %s on %d UNet(s)", ratio, len(patched))
        yield
    finally:
        for unet in reversed(patched):
            _remove(unet)
