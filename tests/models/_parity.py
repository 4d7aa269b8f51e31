"""Parity helpers: compare a visionzoo builder with the reference builder of the same name."""

from __future__ import annotations

from typing import Any

import torch

from tests import reference
from visionzoo import models


def build_pair(name: str, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The reference model (random init, fixed seed) and ours, initialised alike, with the reference's state_dict loaded."""
    torch.manual_seed(0)
    ref = reference.models.get_model(name, weights=None, **kwargs).eval()
    ours = models.get_model(name, weights=None, **kwargs).eval()
    assert_same_initialisation(ref, ours)
    # Some layers start at zero (ViT's head): outputs would be all zeros and prove nothing, so give such
    # weights random values (in the reference's own tensors) before the state is shared.
    with torch.no_grad():
        for key, tensor in ref.state_dict().items():
            if key.endswith("weight") and tensor.is_floating_point() and tensor.numel() > 1 and not tensor.any():
                tensor.normal_(0.0, 0.02)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def assert_same_outputs(ref: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        expected = ref(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def assert_same_initialisation(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Freshly built models start from the same distributions as the reference's.

    Constant tensors (norm weights, zero biases, buffers) must be equal; random ones must have matching
    mean and standard deviation (within sampling error), so training from scratch behaves the same.
    """
    theirs = ref.state_dict()
    for key, mine in ours.state_dict().items():
        expected = theirs[key]
        if not expected.is_floating_point() or expected.numel() == 0:
            continue
        if torch.all(expected == expected.flatten()[0]):
            assert torch.equal(mine, expected), f"{key}: expected the constant {expected.flatten()[0].item()}"
            continue
        if expected.numel() < 100:
            continue
        # Two independent samples: their gap has sqrt(2) standard errors; allow 6 of those (a false alarm in
        # about 1e9 tensors), while a wrong init mode (fan-in vs fan-out, another gain) moves these far more.
        n = expected.numel()
        limit = 6 * 2**0.5 / n**0.5
        std_mine, std_ref = mine.float().std().item(), expected.float().std().item()
        assert abs(std_mine / std_ref - 1) < limit / 2**0.5, f"{key}: std {std_mine:.4g}, reference {std_ref:.4g}"
        mean_gap = abs(mine.float().mean().item() - expected.float().mean().item())
        assert mean_gap < limit * std_ref, f"{key}: mean differs by {mean_gap:.4g} (std {std_ref:.4g})"
