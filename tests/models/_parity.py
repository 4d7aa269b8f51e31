"""Parity helpers: build a reference model and ours alike and compare them, for every family's tests.

``build_pair`` pairs two builders of the same name, ``pair`` any two constructors (a family's model class with
a small configuration, a single layer); both check the initialisation, share the reference's weights with ours
and hand back two models that must compute the same thing (``assert_same_outputs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tests import reference
from visionzoo import models


def pair(
    make_reference: Callable[[], nn.Module], make_ours: Callable[[], nn.Module], *, check_init: bool = True
) -> tuple[nn.Module, nn.Module]:
    """The reference model and ours, each made under the same seed, with the reference's state_dict loaded into
    ours (same keys in the same order, strict), both in eval mode.

    Args:
        make_reference: builds the reference model.
        make_ours: builds ours.
        check_init: ours must start where the reference starts: same distributions and, under the same seed,
            the same tensors draw for draw (a user who seeds a training run from scratch gets the reference's
            starting point). False builds ours on ``meta`` instead and loads copies of the reference's tensors:
            for the largest models, whose initialisation test_classification.py checks already.
    """
    torch.manual_seed(0)
    ref = make_reference().eval()
    torch.manual_seed(0)
    with torch.device("cpu" if check_init else "meta"):
        ours = make_ours().eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    if check_init:
        assert_same_initialisation(ref, ours)
        assert_seeded_alike(ref, ours)
    # Some layers start at zero (ViT's head): outputs would be all zeros and prove nothing, so give such
    # weights random values (in the reference's own tensors) before the state is shared.
    with torch.no_grad():
        for key, tensor in ref.state_dict().items():
            if key.endswith("weight") and tensor.is_floating_point() and tensor.numel() > 1 and not tensor.any():
                tensor.normal_(0.0, 0.02)
    if check_init:
        ours.load_state_dict(ref.state_dict(), strict=True)
    else:
        ours.load_state_dict({k: v.clone() for k, v in ref.state_dict().items()}, strict=True, assign=True)
        assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])
    return ref, ours


def build_pair(
    name: str, *, reference_kwargs: dict[str, Any] | None = None, check_init: bool = True, **kwargs: Any
) -> tuple[nn.Module, nn.Module]:
    """:func:`pair` of the reference builder called ``name`` and ours, both without weights.

    Args:
        name: a builder both packages register.
        reference_kwargs: arguments that differ for the reference (its own classes, e.g. its
            ``FrozenBatchNorm2d``), merged over ``kwargs``.
        check_init: see :func:`pair`.
        **kwargs: builder arguments for both.
    """
    theirs = {**kwargs, **(reference_kwargs or {})}
    return pair(
        lambda: reference.models.get_model(name, weights=None, **theirs),
        lambda: models.get_model(name, weights=None, **kwargs),
        check_init=check_init,
    )


def assert_same_outputs(ref: torch.nn.Module, ours: torch.nn.Module, x: torch.Tensor) -> Any:
    """Our output on ``x`` equals the reference's (atol and rtol 1e-4); returns ours."""
    with torch.inference_mode():
        expected = ref(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    return actual


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


def assert_seeded_alike(ref: torch.nn.Module, ours: torch.nn.Module) -> None:
    """Built under the same seed, every parameter and buffer equals the reference's exactly (same random
    draws in the same order)."""
    theirs = ref.state_dict()
    differing = [key for key, mine in ours.state_dict().items() if not torch.equal(mine, theirs[key])]
    assert not differing, f"{len(differing)} tensors differ from the reference's under the same seed: {differing[:3]}"


def _same_meta_value(mine: Any, theirs: Any) -> bool:
    """``==``, except that two NaN floats are equal (metrics of feature-only weights are NaN), also when nested,
    and weights entries (a quantized entry's ``unquantized``) compare by enum and member name."""
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return mine.keys() == theirs.keys() and all(_same_meta_value(mine[k], theirs[k]) for k in theirs)
    if hasattr(theirs, "meta") and hasattr(theirs, "name"):
        return (type(mine).__name__, mine.name) == (type(theirs).__name__, theirs.name)
    if isinstance(mine, float) and isinstance(theirs, float) and math.isnan(mine) and math.isnan(theirs):
        return True
    return mine == theirs


def assert_same_weights(name: str) -> None:
    """Our weights enum of builder ``name`` equals the reference's: members, DEFAULT, urls and every meta fact."""
    ours = models.get_model_weights(name)
    ref = reference.models.get_model_weights(name)
    assert ours.__name__ == ref.__name__
    assert list(ours.__members__) == list(ref.__members__)
    assert ours.DEFAULT.name == ref.DEFAULT.name
    for member in ref:
        mine = ours[member.name]
        assert mine.url == member.url
        assert set(mine.meta) == set(member.meta)
        for key, value in member.meta.items():
            if key == "_docs":
                assert isinstance(mine.meta[key], str) and mine.meta[key].strip()
            else:
                assert _same_meta_value(mine.meta[key], value), f"{mine!r} meta[{key!r}]"
        assert models.get_weight(f"{ours.__name__}.{member.name}") is mine
