"""Shared event log for the test extensions written by the tests (they import it by this unique module name)."""

from __future__ import annotations

EVENTS: list[tuple[str, str]] = []
