"""Parity helpers: compare a visionzoo builder with the reference builder of the same name."""

from __future__ import annotations

from typing import Any

import torch

from tests import reference
from visionzoo import models


def build_pair(name: str, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference model (random init, fixed seed) and ours with the reference's state_dict loaded strictly."""
    torch.manual_seed(0)
    ref = reference.models.get_model(name, weights=None, **kwargs).eval()
    ours = models.get_model(name, weights=None, **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def assert_same_outputs(ref: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        expected = ref(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
