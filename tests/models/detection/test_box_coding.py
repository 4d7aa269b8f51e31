"""BoxCoder, BoxLinearCoder, Matcher, SSDMatcher and BalancedPositiveNegativeSampler against the reference."""

from __future__ import annotations

import math

import pytest
import torch

from tests import reference
from visionzoo.models.detection import _utils as ours

theirs = reference.models.detection._utils


def random_boxes(n: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 200
    size = torch.rand(n, 2, generator=generator, dtype=torch.float64) * 100 + 1
    return torch.cat((corner, corner + size), dim=1).to(dtype)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.5, 3.0, 0.7, 1.3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_coder_encode_decode_match_the_reference(weights: tuple[float, ...], dtype: torch.dtype) -> None:
    gt, proposals = random_boxes(50, dtype, 1), random_boxes(50, dtype, 2)
    mine, ref = ours.BoxCoder(weights), theirs.BoxCoder(weights)
    assert torch.equal(mine.encode_single(gt, proposals), ref.encode_single(gt, proposals))
    split = [gt[:20], gt[20:20], gt[20:]], [proposals[:20], proposals[20:20], proposals[20:]]
    for a, b in zip(mine.encode(*split), ref.encode(*split), strict=True):
        assert torch.equal(a, b)
    # Three classes of codes per box, some large enough to be clipped.
    codes = torch.randn(50, 12, dtype=dtype, generator=torch.Generator().manual_seed(3)) * 3
    per_image = [proposals[:30], proposals[30:]]
    assert torch.equal(mine.decode(codes, per_image), ref.decode(codes, per_image))
    assert torch.equal(mine.decode_single(codes, proposals), ref.decode_single(codes, proposals))


def test_box_coder_clip_and_round_trip() -> None:
    coder, ref = ours.BoxCoder((1.0, 1.0, 1.0, 1.0), bbox_xform_clip=0.5), theirs.BoxCoder((1.0,) * 4, 0.5)
    boxes = random_boxes(10)
    codes = torch.full((10, 4), 3.0)
    assert torch.equal(coder.decode_single(codes, boxes), ref.decode_single(codes, boxes))
    default = ours.BoxCoder((10.0, 10.0, 5.0, 5.0))
    assert default.bbox_xform_clip == math.log(1000.0 / 16)
    gt = random_boxes(10, seed=5)
    torch.testing.assert_close(default.decode_single(default.encode_single(gt, boxes), boxes), gt)


def test_box_coder_empty_and_gradients() -> None:
    coder, ref = ours.BoxCoder((10.0, 10.0, 5.0, 5.0)), theirs.BoxCoder((10.0, 10.0, 5.0, 5.0))
    empty = torch.zeros(0, 4)
    assert ours.BoxCoder((1.0,) * 4).encode_single(empty, empty).shape == (0, 4)
    assert coder.decode(torch.zeros(0, 8), [empty]).shape == ref.decode(torch.zeros(0, 8), [empty]).shape
    boxes = random_boxes(4, torch.float64)
    codes = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: coder.decode_single(c, boxes), (codes,))
    gt = random_boxes(4, torch.float64, 9).requires_grad_()
    assert torch.autograd.gradcheck(lambda g: coder.encode_single(g, boxes), (gt,))


def test_box_coder_rejects_bad_input() -> None:
    coder = ours.BoxCoder((1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="four numbers"):
        ours.BoxCoder((1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        coder.encode_single(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="2 reference boxes but 3 proposals"):
        coder.encode_single(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="rel_codes must have shape"):
        coder.decode_single(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(TypeError, match="list or tuple"):
        coder.decode(torch.zeros(3, 4), torch.zeros(3, 4))


@pytest.mark.parametrize("normalize_by_size", [True, False])
def test_box_linear_coder_matches_the_reference(normalize_by_size: bool) -> None:
    anchors, gt = random_boxes(20), random_boxes(20, seed=4)
    mine, ref = ours.BoxLinearCoder(normalize_by_size), theirs.BoxLinearCoder(normalize_by_size)
    torch.testing.assert_close(mine.encode(anchors, gt), ref.encode(anchors, gt), rtol=0, atol=1e-6)
    codes = torch.randn(20, 4)
    torch.testing.assert_close(mine.decode(codes, anchors), ref.decode(codes, anchors), rtol=0, atol=1e-5)


def quality_matrix(m: int, n: int, seed: int) -> torch.Tensor:
    """IoU-like values on a coarse grid, so that ties (within a row and across rows) are common."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (m, n), generator=generator).float() / 10


@pytest.mark.parametrize("allow_low_quality_matches", [False, True])
@pytest.mark.parametrize(("high", "low"), [(0.7, 0.3), (0.5, 0.5), (0.95, 0.0)])
def test_matcher_matches_the_reference(allow_low_quality_matches: bool, high: float, low: float) -> None:
    mine = ours.Matcher(high, low, allow_low_quality_matches)
    ref = theirs.Matcher(high, low, allow_low_quality_matches)
    for seed, (m, n) in enumerate([(1, 1), (1, 30), (5, 200), (30, 7)]):
        matrix = quality_matrix(m, n, seed)
        assert torch.equal(mine(matrix), ref(matrix))
    assert ours.Matcher.BELOW_LOW_THRESHOLD == -1 and ours.Matcher.BETWEEN_THRESHOLDS == -2


def test_ssd_matcher_matches_the_reference() -> None:
    for seed in range(3):
        matrix = quality_matrix(6, 40, seed)
        assert torch.equal(ours.SSDMatcher(0.5)(matrix), theirs.SSDMatcher(0.5)(matrix))


def test_matcher_errors() -> None:
    with pytest.raises(ValueError, match="must not be greater"):
        ours.Matcher(0.3, 0.7)
    matcher = ours.Matcher(0.7, 0.3)
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        matcher(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="No proposal boxes"):
        matcher(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="2-D"):
        matcher(torch.zeros(3))


@pytest.mark.parametrize(("batch", "fraction"), [(256, 0.5), (512, 0.25), (8, 1.0), (5, 0.0)])
def test_sampler_draws_what_the_reference_draws(batch: int, fraction: float) -> None:
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randint(-1, 3, (1000,), generator=generator),  # plenty of both
        torch.randint(-1, 1, (300,), generator=generator),  # no positives
        torch.full((40,), 2),  # no negatives
        torch.zeros(0, dtype=torch.int64),  # no candidates at all
    ]
    torch.manual_seed(7)
    mine = ours.BalancedPositiveNegativeSampler(batch, fraction)(images)
    after_ours = torch.rand(1)
    torch.manual_seed(7)
    ref = theirs.BalancedPositiveNegativeSampler(batch, fraction)(images)
    assert torch.equal(after_ours, torch.rand(1))  # the same number of draws
    for a, b in zip([*mine[0], *mine[1]], [*ref[0], *ref[1]], strict=True):
        assert a.dtype == b.dtype == torch.uint8 and torch.equal(a, b)
    positives, negatives = mine
    num_positive = min(int(batch * fraction), int((images[0] >= 1).sum()))
    assert int(positives[0].sum()) == num_positive
    assert int(negatives[0].sum()) == min(batch - num_positive, int((images[0] == 0).sum()))


def test_sampler_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="positive_fraction"):
        ours.BalancedPositiveNegativeSampler(256, 1.5)
    with pytest.raises(ValueError, match="batch_size_per_image"):
        ours.BalancedPositiveNegativeSampler(0, 0.5)
    with pytest.raises(TypeError, match="batch_size_per_image"):
        ours.BalancedPositiveNegativeSampler(2.5, 0.5)


def test_overwrite_eps_and_retrieve_out_channels() -> None:
    from visionzoo.ops import FrozenBatchNorm2d

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), FrozenBatchNorm2d(8), torch.nn.Conv2d(8, 5, 1))
    ours.overwrite_eps(model, 0.0)
    assert model[1].eps == 0.0
    model.train()
    assert ours.retrieve_out_channels(model, (20, 16)) == [5] and model.training
