"""Stop, restart or kill the running server: A1111's `/sdapi/v1/server-stop`, `server-restart` and `server-kill`
(served only with `--api-server-stop`).

`webui.py` attaches the uvicorn server's graceful stop. Stop ends the server after the answer has been sent (the
job queue stops and models are released as on Ctrl+C); restart does the same, then `webui.py` starts the program
again in the same process (`os.execv`, same arguments); kill ends the process at once, a moment after answering.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

log = logging.getLogger(__name__)


class ServerControl:
    """The App's handle on the server that runs it (nothing is attached in tests that serve the app otherwise)."""

    def __init__(self, exit_process: Callable[[int], None] = os._exit) -> None:
        self._stop: Callable[[], None] | None = None
        self._exit = exit_process
        self.restart_requested = False

    def attach(self, stop: Callable[[], None]) -> None:
        """`stop()` makes the server finish its current requests and return from its run loop."""
        self._stop = stop

    @property
    def attached(self) -> bool:
        return self._stop is not None

    def stop(self) -> bool:
        """Ask the server to stop; False when no server is attached."""
        if self._stop is None:
            return False
        log.warning("Server stop requested through the API")
        self._stop()
        return True

    def restart(self) -> bool:
        """Stop, then start again (see the module doc); False when no server is attached."""
        if self._stop is None:
            return False
        self.restart_requested = True
        log.warning("Server restart requested through the API")
        self._stop()
        return True

    def kill(self, delay: float = 0.25) -> None:
        """End the process `delay` seconds from now (so the answer still goes out)."""
        log.warning("Server kill requested through the API")
        timer = threading.Timer(delay, self._exit, args=(0,))
        timer.daemon = True
        timer.start()
