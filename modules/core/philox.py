"""A1111's "NV" random number source: normal noise from Philox 4x32-10 as CUDA's generator makes it, on any device.

Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) maps a 128-bit counter and
a 64-bit key to 128 random bits in ten rounds. The normal numbers follow the layout A1111's NV source uses to match
`torch.randn` on an NVIDIA GPU: element i of the n-th draw of a generator seeded with `seed` uses the counter
(n, 0, i, 0) and the key (seed low 32 bits, seed high 32 bits); the first two output words u, v become one normal
number by the Box-Muller sine branch, with CUDA's offsets of half a unit:
    sqrt(-2 ln((u + 1/2) / 2^32)) * sin(2 pi (v + 1/2) / 2^32)
computed in float64 with CUDA's float32 constants and rounded to float32, as A1111 computes it.
"""

from __future__ import annotations

import numpy as np
import torch

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
"""Round multipliers."""
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
"""Key increments per round (the golden ratio and sqrt(3) - 1 in 32-bit fixed point)."""
TWO_POW32_INV = np.float32(2.3283064e-10)
TWO_POW32_INV_2PI = np.float32(2.3283064e-10 * 6.2831855)
"""CUDA's curand constants 2^-32 and 2 pi 2^-32, as float32."""


def _mulhilo(a: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    product = a.astype(np.uint64) * np.uint64(b)
    return (product >> np.uint64(32)).astype(np.uint32), (product & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def philox4x32_10(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The four output words for each column of `counter` (4, n) uint32 under `key` (2, n) uint32."""
    c0, c1, c2, c3 = (np.array(word, dtype=np.uint32) for word in counter)
    k0, k1 = (np.array(word, dtype=np.uint32) for word in key)
    for round_index in range(10):
        if round_index:
            k0 = (k0 + np.uint32(PHILOX_W[0])).astype(np.uint32)
            k1 = (k1 + np.uint32(PHILOX_W[1])).astype(np.uint32)
        hi0, lo0 = _mulhilo(c0, PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3])


def box_muller_sine(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One standard normal number per (u, v) pair of 32-bit words, CUDA's way (see the module docstring)."""
    radius = np.sqrt(-2.0 * np.log(u * TWO_POW32_INV.astype(np.float64) + TWO_POW32_INV.astype(np.float64) / 2))
    angle = v * TWO_POW32_INV_2PI.astype(np.float64) + TWO_POW32_INV_2PI.astype(np.float64) / 2
    return (radius * np.sin(angle)).astype(np.float32)


class PhiloxGenerator:
    """A seeded stream of normal noise; each `randn` call is one draw (the counter's first word counts them)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = 0

    def randn(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Standard normal float32 noise of `shape` on the CPU (the next draw of the stream)."""
        count = int(np.prod(shape)) if len(shape) else 1
        counter = np.zeros((4, count), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(count, dtype=np.uint32)
        key = np.array([[self.seed & 0xFFFFFFFF], [self.seed >> 32]], dtype=np.uint32).repeat(count, axis=1)
        self.offset += 1
        words = philox4x32_10(counter, key)
        return torch.from_numpy(box_muller_sine(words[0], words[1]).reshape(tuple(shape)))
