"""glibc allocator settings for generation on the CPU, applied once at start-up (`tune_allocator`).

With glibc's defaults every large activation buffer of a UNet call is an `mmap` returned to the kernel when freed,
and faulted in again page by page at the next call (millions of minor page faults per image); a worker thread,
which runs our jobs, allocates from its own arena, which maps and unmaps its heaps the same way. So, on Linux with
glibc and no other allocator preloaded (`./webui.sh` preloads TCMalloc where the system has it, which does not
need this), we keep freed memory for reuse: one arena for all threads, every block served from the heap (none
mapped on its own: attention buffers exceed glibc's largest mmap threshold), and the heap trimmed only when much
of it is free. The cost is that the
process would keep the memory its largest job used, so `release_free_memory` (glibc's `malloc_trim`) hands the free
pages back once the job queue has been idle for a moment (`LocalThreadExecutor`'s `on_idle`). `bench/model_thread.py`
measures it (docs/performance.md). `WEBUI_GLIBC_DEFAULTS=1` leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from dataclasses import dataclass

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
"""glibc's `mallopt` parameters (malloc.h)."""

TRIM_THRESHOLD = 1024 * 1024 * 1024
"""Give memory back to the kernel only when this much is free at the top of the heap."""


@dataclass(frozen=True)
class AllocatorState:
    """What `tune_allocator` found and did: `tuned` is True when the glibc settings were applied."""

    tuned: bool
    reason: str


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _preloaded_allocator() -> str | None:
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if name in preload:
            return name
    return None


def tune_allocator() -> AllocatorState:
    """Apply the settings of the module doc where they apply; says what it did (also in the log)."""
    libc = _glibc()
    if libc is None:
        return AllocatorState(False, "not glibc")
    preloaded = _preloaded_allocator()
    if preloaded is not None:
        return AllocatorState(False, f"{preloaded} preloaded")
    if os.environ.get("WEBUI_GLIBC_DEFAULTS"):
        return AllocatorState(False, "WEBUI_GLIBC_DEFAULTS is set")
    applied = all(libc.mallopt(option, value) == 1 for option, value in (
        (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
    if not applied:
        log.warning("could not apply the glibc allocator settings; CPU generation may be slower")
        return AllocatorState(False, "mallopt refused")
    log.info("glibc allocator: one arena, no mmap blocks, trim threshold %d MiB", TRIM_THRESHOLD >> 20)
    return AllocatorState(True, "glibc tuned")


def release_free_memory() -> None:
    """Hand the heap's free pages back to the kernel (glibc's `malloc_trim`; nothing elsewhere). Freed blocks stay
    reusable; the next job faults its pages in again, once."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
