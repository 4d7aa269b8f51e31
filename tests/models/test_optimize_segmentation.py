"""Segmentation models (dict outputs) through optimize_for_inference, and the dense top-1 rule of bfloat16."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from visionzoo import models
from visionzoo.models import optimize_for_inference

ATOL = 1e-3
SIZE = 64


def _segmenter(name: str) -> nn.Module:
    """A randomly initialised segmentation model with realistic BatchNorm statistics (so folding changes weights)."""
    torch.manual_seed(0)
    aux = {"aux_loss": True} if name.startswith("deeplab") else {}
    model = models.get_model(name, weights=None, weights_backbone=None, num_classes=5, **aux)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
                m.momentum = None
                m.reset_running_stats()
        model.train()
        model(torch.randn(2, 3, SIZE, SIZE))
    return model.eval()


@pytest.fixture(scope="module", params=["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def segmenter(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    return request.param, _segmenter(request.param)


def test_segmentation_eager_path_keeps_the_dict(segmenter: tuple[str, nn.Module]) -> None:
    name, model = segmenter
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    optimised = optimize_for_inference(model, x, compile=False)
    assert optimised.folded > 0 and optimised.channels_last and not optimised.compiled
    assert optimised.max_deviation is not None and optimised.max_deviation <= ATOL
    actual = optimised(x)
    assert set(actual) == set(expected) == ({"out", "aux"} if name.startswith("deeplab") else {"out"})
    for key in expected:
        assert actual[key].shape == (2, 5, SIZE, SIZE)
        torch.testing.assert_close(actual[key], expected[key], atol=ATOL, rtol=0)


def test_segmentation_in_bfloat16(segmenter: tuple[str, nn.Module]) -> None:
    _, model = segmenter
    x = torch.randn(1, 3, SIZE, SIZE)
    model = copy.deepcopy(model)
    # A clear winner at every pixel: class 2's bias dominates, so the dense top-1 rule is certain to pass.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.out_channels == 5 and m.bias is not None:
                m.bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
        expected = model(x)
    optimised = optimize_for_inference(model, x, compile=False, dtype="bfloat16")
    actual = optimised(x)
    assert optimised.dtype == torch.bfloat16 and actual["out"].dtype == torch.float32
    assert optimised.max_deviation == pytest.approx(max((actual[k] - expected[k]).abs().max().item() for k in expected))


class _PixelLogits(nn.Module):
    """The input's two channels are the two classes' logits (a 1x1 convolution with identity weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


def _near_ties(pixels: int) -> torch.Tensor:
    """200 pixels where class 0 wins, except ``pixels`` of them where class 1 wins by 1e-3 (a tie in bfloat16)."""
    x = torch.stack([torch.ones(10, 20), torch.full((10, 20), 0.5)])[None]
    x[0, 1].view(-1)[:pixels] = 1.001
    return x


def test_dense_top1_may_differ_at_one_percent_of_pixels() -> None:
    model = _PixelLogits().eval()
    accepted = optimize_for_inference(model, _near_ties(2), compile=False, dtype=torch.bfloat16)  # 1% flips
    assert accepted.dtype == torch.bfloat16
    with pytest.raises(RuntimeError, match=r"output\['out'\] top-1 differs at 10 of 200 positions \(5\.0%"):
        optimize_for_inference(model, _near_ties(10), compile=False, dtype=torch.bfloat16)


def test_compiled_lraspp_matches_eager() -> None:
    """The compiled path with a dict output (a C++ compile: tens of seconds on a quiet 2-core machine)."""
    model = _segmenter("lraspp_mobilenet_v3_large")
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    optimised = optimize_for_inference(model, x, keep_faster=False)
    assert optimised.compiled and optimised.max_deviation is not None and optimised.max_deviation <= ATOL
    torch.testing.assert_close(optimised(x)["out"], expected["out"], atol=ATOL, rtol=0)
