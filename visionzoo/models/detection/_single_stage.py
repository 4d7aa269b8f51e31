"""What the single-stage detectors (RetinaNet, FCOS) share: the forward from images to losses or detections, the
per-level candidate selection and NMS that turns dense predictions into detections, the dense heads' conv tower
and the class-scoring convolution whose bias starts at a prior probability.

A single-stage detector scores every anchor (or point) of every pyramid level for every class at once; the
detector file says how it scores, decodes and matches, this module does the rest.
"""

from __future__ import annotations

import abc
import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from ...ops import boxes as box_ops
from ...ops.misc import Conv2dNormActivation
from .._heads import reset_class_logits
from .anchor_utils import AnchorGenerator
from .rpn import permute_and_flatten
from .transform import GeneralizedRCNNTransform, check_targets_for_mode

__all__ = [
    "SingleStageDetector",
    "PriorConv2d",
    "conv_tower",
    "init_small_normal",
    "flatten_per_position",
    "select_top_candidates",
    "sum_in_order",
]

Target = dict[str, torch.Tensor]
HeadOutputs = dict[str, torch.Tensor]


class PriorConv2d(nn.Conv2d):
    """A 3x3 class-logit convolution whose weights start small (normal, std 0.01) and whose bias starts at
    ``-log((1 - p) / p)``, so every class begins with probability ``p`` (the focal loss paper's prior, which keeps
    the many easy negatives from swamping the first iterations).

    Its ``reset_parameters`` is the whole initialisation, so a head re-initialised for a new number of classes
    starts from the prior too.
    """

    def __init__(self, in_channels: int, out_channels: int, prior_probability: float = 0.01) -> None:
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability!r}")
        self.prior_probability = prior_probability
        super().__init__(in_channels, out_channels, kernel_size=3, stride=1, padding=1)

    def reset_parameters(self) -> None:
        super().reset_parameters()  # the default draws first: a seeded build matches the reference's draws
        nn.init.normal_(self.weight, std=0.01)
        nn.init.constant_(self.bias, -math.log((1 - self.prior_probability) / self.prior_probability))


def conv_tower(in_channels: int, depth: int, norm_layer: Callable[..., nn.Module] | None) -> nn.Sequential:
    """``depth`` 3x3 convolutions (each with ``norm_layer`` if given, then ReLU), keeping ``in_channels``."""
    return nn.Sequential(*(Conv2dNormActivation(in_channels, in_channels, norm_layer=norm_layer) for _ in range(depth)))


def init_small_normal(layers: nn.Module) -> None:
    """Every convolution in ``layers``: weights normal with std 0.01, biases zero (the dense heads' init)."""
    for layer in layers.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, std=0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def flatten_per_position(levels: list[torch.Tensor], columns: int) -> torch.Tensor:
    """Per-level dense predictions ``(N, A * columns, H, W)`` as one ``(N, sum H * W * A, columns)`` tensor in the
    anchors' order (levels, then positions row-major, then the anchors of a position)."""
    flat = []
    for level in levels:
        n, channels, height, width = level.shape
        flat.append(permute_and_flatten(level, n, channels // columns, columns, height, width))
    return torch.cat(flat, dim=1)


def select_top_candidates(
    scores: torch.Tensor, score_thresh: float, topk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (anchor, class) pairs of one level that score above ``score_thresh``, at most the ``topk`` best.

    Args:
        scores: ``(num_anchors, num_classes)`` probabilities.

    Returns:
        Their scores (highest first), anchor indices and class labels.
    """
    num_classes = scores.shape[-1]
    flat = scores.flatten()
    above = torch.where(flat > score_thresh)[0]
    best, order = flat[above].topk(min(topk, above.numel()))
    chosen = above[order]
    return best, torch.div(chosen, num_classes, rounding_mode="floor"), chosen % num_classes


class SingleStageDetector(nn.Module, abc.ABC):
    """Runs ``transform -> backbone -> head``, then the losses (training) or the detections (eval), which
    per image keep each level's ``topk_candidates`` best (anchor, class) pairs above ``score_thresh``, decode and
    clip their boxes, and keep the ``detections_per_img`` best after class-wise NMS at ``nms_thresh``, in the input
    image's coordinates.

    Subclasses define ``compute_loss(targets, head_outputs, anchors, num_anchors_per_level)``,
    ``_class_scores(level_outputs)`` (one image's one level: ``(num_anchors, num_classes)`` probabilities) and
    ``_decode_boxes(regression, anchors)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: AnchorGenerator,
        head: nn.Module,
        transform: GeneralizedRCNNTransform,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        topk_candidates: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.head = head
        self.transform = transform
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def _reset_classifier(self, num_classes: int) -> None:
        reset_class_logits(self, num_classes)

    @staticmethod
    def _check_parts(backbone: nn.Module, anchor_generator: AnchorGenerator | None) -> None:
        """Raise ``ValueError`` for a backbone without ``out_channels``, ``TypeError`` for an anchor generator of
        another type (before a subclass builds on them)."""
        if not hasattr(backbone, "out_channels"):
            raise ValueError(
                "backbone should contain an attribute out_channels specifying the number of output channels "
                "(assumed to be the same for all the levels)"
            )
        if not isinstance(anchor_generator, (AnchorGenerator, type(None))):
            raise TypeError(f"anchor_generator should be of type AnchorGenerator or None, got {type(anchor_generator)}")

    @abc.abstractmethod
    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: HeadOutputs,
        anchors: list[torch.Tensor],
        num_anchors_per_level: list[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training losses, from the (resized) targets, the head outputs and each image's anchors."""

    @abc.abstractmethod
    def _class_scores(self, level_outputs: HeadOutputs) -> torch.Tensor:
        """One image's one level of head outputs to ``(num_anchors, num_classes)`` probabilities."""

    @abc.abstractmethod
    def _decode_boxes(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes ``(n, 4)`` from the regression outputs and anchors of ``n`` candidates."""

    def postprocess_detections(
        self,
        head_outputs: dict[str, list[torch.Tensor]],
        anchors: list[list[torch.Tensor]],
        image_shapes: list[tuple[int, int]],
    ) -> list[Target]:
        """Each image's detections in its resized coordinates, from the head outputs and anchors split per level
        (``head_outputs[key][level]`` is ``(N, H * W * A, C)``, ``anchors[image][level]`` ``(H * W * A, 4)``)."""
        detections = []
        for index, image_shape in enumerate(image_shapes):
            boxes, scores, labels = [], [], []
            for level, level_anchors in enumerate(anchors[index]):
                outputs = {key: values[level][index] for key, values in head_outputs.items()}
                level_scores, anchor_idxs, level_labels = select_top_candidates(
                    self._class_scores(outputs), self.score_thresh, self.topk_candidates
                )
                decoded = self._decode_boxes(outputs["bbox_regression"][anchor_idxs], level_anchors[anchor_idxs])
                boxes.append(box_ops.clip_boxes_to_image(decoded, image_shape))
                scores.append(level_scores)
                labels.append(level_labels)
            image_boxes, image_scores, image_labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = box_ops.batched_nms(image_boxes, image_scores, image_labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            detections.append({"boxes": image_boxes[keep], "scores": image_scores[keep], "labels": image_labels[keep]})
        return detections

    def forward(
        self, images: list[torch.Tensor], targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor] | list[Target]:
        """Detect objects in ``images`` (a list of ``(C, H, W)`` float tensors in ``[0, 1]``, sizes may differ).

        Returns:
            In training (``targets`` required: one dict per image with float ``boxes`` ``(N, 4)`` as x1 y1 x2 y2
            and int64 ``labels`` ``(N,)``; ``N`` may be 0), the dict of losses. In eval, one dict per image with
            ``boxes``, ``scores`` and ``labels``, the boxes in that image's own pixel coordinates.

        Raises:
            ValueError: training without targets, targets in eval mode, a malformed image or target (named by
                its index, and the bad box by its index).
            TypeError: images or targets of the wrong type.
        """
        check_targets_for_mode(self.training, targets)
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of (C, H, W) tensors, got {type(images).__name__}")
        original_sizes = [(im.shape[-2], im.shape[-1]) for im in images if isinstance(im, torch.Tensor)]
        image_list, targets = self.transform(images, targets)  # validates images and targets
        features = self.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        feature_maps = list(features.values())
        head_outputs = self.head(feature_maps)
        anchors = self.anchor_generator(image_list, feature_maps)
        positions = [level.shape[-2] * level.shape[-1] for level in feature_maps]
        per_position = head_outputs["cls_logits"].shape[1] // sum(positions)
        num_anchors_per_level = [count * per_position for count in positions]
        if self.training:
            return self.compute_loss(targets, head_outputs, anchors, num_anchors_per_level)
        split_outputs = {key: list(value.split(num_anchors_per_level, dim=1)) for key, value in head_outputs.items()}
        split_anchors = [list(image_anchors.split(num_anchors_per_level)) for image_anchors in anchors]
        detections = self.postprocess_detections(split_outputs, split_anchors, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)


def sum_in_order(values: list[torch.Tensor]) -> torch.Tensor:
    """``values[0] + values[1] + ...`` left to right (the reference's summation order, bit for bit)."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total
