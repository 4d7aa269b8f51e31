"""visionzoo: pretrained vision models for PyTorch.

Subpackages and modules (``models``, ``transforms``, ``io``, ``ops``, ``utils``, ...) are imported lazily so that
``import visionzoo`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("models", "transforms", "io", "ops", "hub", "inference", "deploy", "cli", "allocator", "utils")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'visionzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
