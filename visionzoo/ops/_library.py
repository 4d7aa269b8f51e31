"""Operators whose work depends on the data (non-maximum suppression, RoIAlign's sampling grid), registered as
``torch.library`` custom operators so that ``torch.export``, ``torch.compile`` and ONNX see each one as a single
node with a declared output shape instead of tracing into their Python loops.

The number of boxes non-maximum suppression keeps is known only at run time; its fake (shape-only)
implementation gives it an unbacked size, which ``torch.export`` carries through the rest of the program.
An exported program runs the operator's real implementation, the same Python code the eager model runs, so an
exported model computes exactly what the eager one does.

Custom operators need torch >= 2.4; on older versions :func:`operator` returns the plain function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["operator", "HAS_CUSTOM_OPS", "NAMESPACE", "unbacked_size", "tracing"]

NAMESPACE = "visionzoo"
HAS_CUSTOM_OPS = hasattr(torch.library, "custom_op") and hasattr(torch.library, "get_ctx")


def operator(name: str, fake: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register the (type-annotated) function as the custom operator ``visionzoo::name``, whose
    shapes ``fake`` computes without data, and return the operator (called like the function)."""

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        if not HAS_CUSTOM_OPS:
            return function
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", mutates_args=())(function)
        op.register_fake(fake)
        return op

    return register


def unbacked_size(upper_bound: int | torch.SymInt) -> torch.SymInt:
    """A new size known only at run time, between 0 and ``upper_bound`` where that is a known number (inside a
    fake implementation)."""
    ctx = torch.library.get_ctx()
    return ctx.new_dynamic_size(max=upper_bound) if isinstance(upper_bound, int) else ctx.new_dynamic_size()


def tracing() -> bool:
    """Whether ``torch.compile`` or ``torch.export`` is tracing the code that asks (checks on tensor values,
    which a graph cannot branch on, are then left to run eagerly)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())
