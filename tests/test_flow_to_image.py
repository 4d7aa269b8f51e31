"""flow_to_image against the reference: one flow and a batch (scaled by the batch's longest vector), bit for bit,
plus the colours of known directions and the errors."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.utils import flow_to_image


@pytest.mark.parametrize("shape", [(2, 17, 23), (3, 2, 9, 11), (1, 2, 1, 1)])
def test_flow_to_image_equals_the_reference(shape: tuple[int, ...]) -> None:
    flow = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 5
    got = flow_to_image(flow)
    assert got.dtype == torch.uint8 and got.shape == (*shape[:-3], 3, *shape[-2:])
    assert torch.equal(got, reference.utils.flow_to_image(flow))


def test_a_batch_is_scaled_by_its_longest_vector() -> None:
    flows = torch.stack([torch.full((2, 4, 4), 1.0), torch.full((2, 4, 4), 10.0)])
    batch = flow_to_image(flows)
    assert torch.equal(batch[1], flow_to_image(flows[1]))  # the longest vectors: saturated either way
    assert not torch.equal(batch[0], flow_to_image(flows[0]))  # a tenth of the batch's longest: paler
    assert torch.equal(batch, reference.utils.flow_to_image(flows))


def test_known_directions_and_zero_flow() -> None:
    # right, left, down and no motion (the maximum length 1 makes the first three fully saturated)
    flow = torch.tensor([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]).view(2, 1, 4)
    colours = flow_to_image(flow)[:, 0].T.tolist()
    assert colours[0] == [255, 0, 0]  # rightwards: red, the start of the wheel
    assert colours[1][2] == 255 and colours[1][0] < 10  # leftwards: cyan-blue, half a turn away
    assert colours[3] == [255, 255, 255]  # no motion: white


@pytest.mark.parametrize(
    ("flow", "error", "match"),
    [
        (torch.zeros(2, 4, 4, dtype=torch.float64), ValueError, "float32 flow, got torch.float64"),
        (torch.zeros(3, 4, 4), ValueError, r"shape \(2, H, W\) or \(N, 2, H, W\), got \(3, 4, 4\)"),
        (torch.zeros(4, 4), ValueError, "got \\(4, 4\\)"),
        (torch.full((2, 4, 4), float("nan")), ValueError, "NaN or infinite"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_flows_raise_clear_errors(flow: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        flow_to_image(flow)  # type: ignore[arg-type]
