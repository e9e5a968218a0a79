"""`IdleTimer`: runs a callback once no job has run for a while (the allocator's `release_free_memory`).

`started()` when a job starts, `ended()` when it ends: the last job to end arms the timer, the next one to start
disarms it, so the callback runs once per idle spell, `after` seconds into it. A failing callback is logged and
never reaches the job's thread. Used by `LocalThreadExecutor` and by each Ray worker (`RayWorker`).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class IdleTimer:
    """See the module doc; `name` labels the log line of a failing callback."""

    def __init__(self, on_idle: Callable[[], None], after: float = 2.0, name: str = "executor") -> None:
        self._on_idle, self._after, self._name = on_idle, after, name
        self._lock = threading.Lock()
        self._busy = 0
        self._timer: threading.Timer | None = None

    def started(self) -> None:
        self._change(+1)

    def ended(self) -> None:
        self._change(-1)

    def _change(self, change: int) -> None:
        with self._lock:
            self._busy += change
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._busy == 0:
                self._timer = threading.Timer(self._after, self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._busy:
                return
        try:
            self._on_idle()
        except Exception:  # noqa: BLE001 - housekeeping never ends the executor
            log.exception("%s: idle callback failed", self._name)
