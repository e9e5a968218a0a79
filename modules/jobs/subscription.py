"""`Subscription`: one subscriber's private, bounded buffer of `JobEvent`s, read by threads or asyncio code."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import TYPE_CHECKING, AsyncIterator, Iterator

from modules.jobs.job import JobEvent

if TYPE_CHECKING:
    from modules.jobs.queue import JobQueue


class Subscription:
    """A subscriber's private event buffer, filled by the queue, read with `get()`, iteration or `async for`.

    Holds at most `maxlen` events; when a slow reader falls behind the oldest are dropped (the final event of a
    job is the newest, so it is never the one lost). Iteration ends when a single-job subscription sees that job
    finish, or when the subscription is closed (also by `JobQueue.stop()`).
    """

    def __init__(self, queue: "JobQueue", job_id: str | None, maxlen: int = 256) -> None:
        self.job_id = job_id
        self._queue = queue
        self._events: deque[JobEvent] = deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._closed = False
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def _deliver(self, event: JobEvent) -> None:
        with self._cond:
            if self._closed:
                return
            self._events.append(event)
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:
                pass  # that event loop is closed; nobody is waiting any more

    def get(self, timeout: float | None = None) -> JobEvent | None:
        """Next event; None when closed and drained, or after `timeout` seconds without one."""
        with self._cond:
            self._cond.wait_for(lambda: self._events or self._closed, timeout)
            return self._events.popleft() if self._events else None

    async def aget(self, timeout: float | None = None) -> JobEvent | None:
        """`get()` for asyncio code, without tying up a thread while waiting."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                if self._events:
                    return self._events.popleft()
                if self._closed:
                    return None
                flag = asyncio.Event()
                self._async_waiters.append((loop, flag))
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(flag.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    def _ends_stream(self, event: JobEvent) -> bool:
        return self.job_id is not None and event.kind == "finished"

    def __iter__(self) -> Iterator[JobEvent]:
        while (event := self.get()) is not None:
            yield event
            if self._ends_stream(event):
                self.close()
                return

    async def __aiter__(self) -> AsyncIterator[JobEvent]:
        while (event := await self.aget()) is not None:
            yield event
            if self._ends_stream(event):
                self.close()
                return

    def close(self) -> None:
        """Stop receiving events; readers waiting in get()/aget() return None once the buffer is drained."""
        self._queue._unsubscribe(self)
        with self._cond:
            self._closed = True
            self._wake_locked()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

