"""The k-diffusion package (the reference A1111's samplers are built on), loaded for tests only.

Only `k_diffusion.sampling` and `k_diffusion.external` are imported, without the package's `__init__` (which pulls
in training code: clean-fid, kornia, wandb). setup.sh installs it without dependencies (requirements-reference.txt).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


def _package() -> None:
    if "k_diffusion" in sys.modules:
        return
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.submodule_search_locations is None:
        raise RuntimeError("k-diffusion is not installed: run scripts/setup.sh test (requirements-reference.txt)")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package


def sampling() -> Any:
    _package()
    return importlib.import_module("k_diffusion.sampling")


def external() -> Any:
    _package()
    return importlib.import_module("k_diffusion.external")
