"""ModelCache: loaded models within a budget, LRU eviction, in-use locks, and proof that evicted models are freed.

The cache is the only long-lived owner of model weights. At most `limit` entries are kept: the least recently used
entry not in use is evicted before a new one loads, so peak RAM stays at the budget (an entry in use is never
evicted; while every entry is in use the cache goes over its limit and shrinks back on release). At most one entry
is on the compute device unless `one_on_device=False`; the others wait on `offload_device`. Loads are serialized by
one lock. Evicting drops the reference, collects garbage and empties the CUDA cache; `freed` counts values really
gone. Use a value only inside `with cache.use(key, load) as value:`, or it cannot be freed.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, Iterator, Protocol, TypeVar

import torch

from modules.devices import empty_cache

log = logging.getLogger(__name__)


class Movable(Protocol):
    """What the cache needs from a value: moving it between devices in place (ComponentSet, nn.Module)."""

    def to(self, device: torch.device) -> Any: ...


V = TypeVar("V", bound=Movable)


@dataclass
class _Entry(Generic[V]):
    value: V
    on_device: bool
    users: int = 0

    def __post_init__(self) -> None:
        self.ref = weakref.ref(self.value)


class ModelCache(Generic[V]):
    """Keeps up to `limit` loaded values; see the module doc for the rules."""

    def __init__(self, limit: int = 1, device: torch.device | str = "cpu", offload_device: torch.device | str = "cpu",
                 name: str = "models", one_on_device: bool = True) -> None:
        self.limit = max(1, int(limit))
        self.one_on_device = one_on_device
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.name = name
        self.freed = 0
        self._entries: OrderedDict[Hashable, _Entry[V]] = OrderedDict()
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def in_use(self, key: Hashable) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry.users > 0

    def _note_freed(self, label: str) -> None:
        self.freed += 1
        log.debug("%s: %s freed", self.name, label)

    @contextmanager
    def use(self, key: Hashable, load: Callable[[], V]) -> Iterator[V]:
        """Yield the value for `key`, loading it with `load()` when missing; locked against eviction meanwhile."""
        value = self._acquire(key, load)
        try:
            yield value
        finally:
            del value
            self._release(key)

    def _acquire(self, key: Hashable, load: Callable[[], V]) -> V:
        with self._lock:
            if key in self._entries:
                return self._activate(key)
        with self._load_lock:
            with self._lock:
                if key in self._entries:
                    return self._activate(key)
                self._shrink(self.limit - 1)
            log.info("%s: loading %s", self.name, key)
            value = load()
            with self._lock:
                self._entries[key] = _Entry(value, on_device=self.device == self.offload_device)
                weakref.finalize(value, self._note_freed, str(key))
                del value
                return self._activate(key)

    def _activate(self, key: Hashable) -> V:
        """Mark `key` used and most recent; make it the one entry on the compute device. Caller holds the lock."""
        entry = self._entries[key]
        entry.users += 1
        self._entries.move_to_end(key)
        if self.device != self.offload_device and not entry.on_device:
            for other_key, other in self._entries.items():
                if self.one_on_device and other is not entry and other.on_device and other.users == 0:
                    other.value.to(self.offload_device)
                    other.on_device = False
                    log.debug("%s: moved %s to %s", self.name, other_key, self.offload_device)
            entry.value.to(self.device)
            entry.on_device = True
            empty_cache(self.device)
        return entry.value

    def _release(self, key: Hashable) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.users = max(0, entry.users - 1)
            del entry  # no local reference may outlive an eviction
            self._shrink(self.limit)

    def _shrink(self, size: int) -> None:
        """Evict least recently used entries not in use until at most `size` remain. Caller holds the lock."""
        victims = [key for key, entry in self._entries.items() if entry.users == 0]
        excess = len(self._entries) - max(0, size)
        if excess <= 0 or not victims:
            if excess > 0:
                log.info("%s: %d over the limit of %d while all entries are in use", self.name, excess, self.limit)
            return
        self._drop([self._entries.pop(key) for key in victims[:excess]], victims[:excess])

    def _drop(self, entries: list[_Entry[V]], keys: list[Hashable]) -> None:
        """Forget `entries`; collect garbage only if reference cycles keep some alive (a full gc is slow)."""
        refs = [entry.ref for entry in entries]
        entries.clear()
        if any(ref() is not None for ref in refs):
            gc.collect()
        for key, ref in zip(keys, refs):
            if ref() is None:
                log.info("%s: evicted %s", self.name, key)
            else:
                log.warning("%s: evicted %s, but something outside the cache still holds it", self.name, key)
        empty_cache(self.device)

    def evict(self, key: Hashable) -> bool:
        """Drop `key` unless it is in use; True when it was dropped."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.users > 0:
                return False
            del entry
            self._drop([self._entries.pop(key)], [key])
            return True

    def clear(self) -> int:
        """Evict every entry that is not in use; returns how many were dropped."""
        with self._lock:
            before = len(self._entries)
            self._shrink(0)
            return before - len(self._entries)

    def set_limit(self, limit: int) -> None:
        """Change the budget; extra entries that are not in use are evicted now."""
        with self._lock:
            self.limit = max(1, int(limit))
            self._shrink(self.limit)
