"""Per-job interrupt/skip flags, checked by the denoise loop at every step."""

from __future__ import annotations

import threading


class CancelToken:
    """Interrupt stops the job now (finished images are kept); skip abandons only the current batch."""

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._skip = threading.Event()

    def interrupt(self) -> None:
        self._interrupt.set()

    def skip(self) -> None:
        self._skip.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    @property
    def skipped(self) -> bool:
        return self._skip.is_set()

    def should_stop_batch(self) -> bool:
        """True when the current batch must end now (interrupt or skip)."""
        return self._interrupt.is_set() or self._skip.is_set()

    def clear_skip(self) -> None:
        """Called by the core when a new batch starts: a skip applies to one batch only."""
        self._skip.clear()
