"""visionzoo.metrics: the segmentation confusion matrix and the flow errors, against figures worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from visionzoo.metrics.classification import topk_hits
from visionzoo.metrics.flow import FlowMetrics, end_point_error
from visionzoo.metrics.segmentation import ConfusionMatrix


def test_confusion_matrix_by_hand() -> None:
    matrix = ConfusionMatrix(3)
    matrix.update(torch.tensor([[0, 1], [1, 255]]), torch.tensor([[0, 1], [0, 2]]))  # the 255 pixel is left out
    assert matrix.counts.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    # class 0: TP 1, FP 1 -> 50%; class 1: TP 1, FN 1 -> 50%; class 2 never occurs -> NaN, left out of the mean.
    iou = matrix.iou().tolist()
    assert iou[:2] == [50.0, 50.0] and math.isnan(iou[2])
    assert matrix.compute() == pytest.approx({"miou": 50.0, "pixel_acc": 200 / 3})
    matrix.update(torch.tensor([2, 2]), torch.tensor([2, 1]))  # class 2: TP 1, FN 1 -> 50%; class 1: FP 1 -> 1/3
    assert matrix.compute() == pytest.approx({"miou": (50 + 100 / 3 + 50) / 3, "pixel_acc": 60.0})
    assert math.isnan(ConfusionMatrix(2).compute()["miou"])


@pytest.mark.parametrize(
    "target, prediction, fragment",
    [
        (torch.tensor([0, 7]), torch.tensor([0, 1]), "the target holds class 7, but there are 3 classes"),
        (torch.tensor([0, 1]), torch.tensor([0, 3]), "predictions must lie in 0..2"),
        (torch.tensor([0, 1]), torch.tensor([0]), "differ in shape"),
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "target must hold class indices"),
    ],
)
def test_confusion_matrix_errors(target: torch.Tensor, prediction: torch.Tensor, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ConfusionMatrix(3).update(target, prediction)


def test_flow_metrics_by_hand() -> None:
    true = torch.zeros(2, 1, 4)
    true[0] = torch.tensor([0.0, 10.0, 100.0, 4.0])
    predicted = true.clone()
    predicted[0] += torch.tensor([0.5, 0.0, 4.0, 0.0])  # errors 0.5, 2, 4 (u) and 0
    predicted[1] += torch.tensor([0.0, 2.0, 0.0, 0.0])  # (v): pixel 1 moves by (0, 2)
    assert end_point_error(predicted, true).tolist() == [0.5, 2.0, 4.0, 0.0]
    metrics = FlowMetrics()
    metrics.update(predicted, true)
    # Pixel 2: 4 px > 3 px but 4% of 100 px: no outlier. Second pair: pixel 0 only, 6 px off a 0 px motion.
    second = torch.zeros(2, 1, 4)
    second_true = torch.zeros(2, 1, 4)
    second[1, 0, 0] = 6.0
    second[1, 0, 1] = 99.0  # not valid: ignored
    metrics.update(second, second_true, torch.tensor([[True, False, False, False]]))
    assert metrics.compute() == pytest.approx(
        {
            "epe": (0.5 + 2 + 4 + 0 + 6) / 5,
            "per_image_epe": (6.5 / 4 + 6) / 2,
            "1px": 40.0,
            "3px": 60.0,
            "5px": 80.0,
            "fl_all": 20.0,
        }
    )
    metrics.update(second, second_true, torch.zeros(1, 4, dtype=torch.bool))  # no valid pixel: nothing added
    assert metrics.images == 2
    with pytest.raises(ValueError, match="expected two"):
        end_point_error(torch.zeros(2, 3, 3), torch.zeros(2, 3, 4))


def test_topk_hits() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert topk_hits(logits, torch.tensor([2, 0]), ks=(1, 2, 5)) == {1: 1, 2: 2, 5: 2}
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        topk_hits(logits, torch.tensor([3, 0]))
