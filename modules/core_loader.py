"""`CoreLoader`: the generation core (torch, diffusers, transformers and our modules over them) imported once, by
whichever thread needs it first, while every other thread that needs it waits.

The server answers before these packages are imported (docs/performance.md, "Cold start"); a warm-up thread then
imports them. diffusers' and transformers' lazily importing package modules are not safe to import from two threads
at once: a job that arrived while the warm-up was importing failed with "cannot import name 'AutoencoderKL' from
'diffusers'". So the warm-up, the job executor (`GenerationService.run`) and the token counter's tokenizer load
all go through one loader: `ensure()` imports the core under its lock; `locked(fn)` runs a first load of something
else from these packages (the CLIP tokenizer) under the same lock.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

CORE_MODULE = "modules.core.generate"
"""Importing it imports torch, diffusers and transformers and the core that uses them."""


class CoreLoader:
    """Imports the generation core once (see the module doc); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ensure(self) -> None:
        """Import the core now, or wait for the thread that is importing it."""
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                importlib.import_module(CORE_MODULE)
                self._loaded = True

    def locked(self, load: Callable[[], T]) -> T:
        """`load()` under the loader's lock (after the core, if another thread is importing it)."""
        with self._lock:
            return load()
