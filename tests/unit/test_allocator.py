"""The glibc allocator settings applied at start-up, and when they are left alone."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from modules.allocator import release_free_memory, tune_allocator
from modules.paths import REPO_ROOT

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "tcmalloc preloaded"),
    ("WEBUI_GLIBC_DEFAULTS", "1", "WEBUI_GLIBC_DEFAULTS is set"),
])
def test_left_alone_under_another_allocator_or_when_asked(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                          value: str, reason: str) -> None:
    monkeypatch.setenv(variable, value)
    state = tune_allocator()
    assert not state.tuned and state.reason == (reason if GLIBC else "not glibc")


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_applied_in_a_fresh_process() -> None:
    code = "from modules.allocator import tune_allocator as t, release_free_memory as r; print(t()); r()"
    env = {"PATH": "/usr/bin:/bin"}
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            check=True).stdout
    assert "tuned=True" in output


def test_release_free_memory_is_harmless_here() -> None:
    release_free_memory()
