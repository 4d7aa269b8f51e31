"""SSD: one network scores and regresses a fixed set of default boxes on several feature maps at once.

Liu et al., "SSD: Single Shot MultiBox Detector" (2016), https://arxiv.org/abs/1512.02325. There are no proposals:
every default box is a candidate, trained against its matched ground truth (at most three hard negatives per
positive for the classification loss) and, in eval, filtered by score, per class, and by NMS. Images are resized
to a fixed square before the backbone. ``ssdlite.py`` reuses :class:`SSD` with a lighter head.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import boxes as box_ops
from ...ops._library import operator
from ...ops.boxes import _strict_threshold
from .._api import WeightsEnum, caller_stacklevel, register_model
from .._heads import reset_class_logits
from .._weights import detection_entry
from ..vgg import VGG16_Weights, vgg16
from ._utils import BoxCoder, SSDMatcher, retrieve_out_channels
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _build_detector
from .transform import GeneralizedRCNNTransform

__all__ = [
    "SSD",
    "SSDHead",
    "SSDScoringHead",
    "SSDClassificationHead",
    "SSDRegressionHead",
    "SSDFeatureExtractorVGG",
    "SSD300_VGG16_Weights",
    "ssd300_vgg16",
]

Target = dict[str, torch.Tensor]


def _xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class SSDScoringHead(nn.Module):
    """One layer per feature map, each predicting ``num_columns`` values for every default box of its cells.

    Args:
        module_list: per feature map, a module from its ``(N, C_k, H_k, W_k)`` features to
            ``(N, B_k * num_columns, H_k, W_k)``, ``B_k`` the default boxes per cell.
        num_columns: the values per default box (the classes, or 4 box offsets).
    """

    def __init__(self, module_list: nn.ModuleList, num_columns: int) -> None:
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """The predictions for every default box of every feature map, ``(N, num_boxes, num_columns)``, in the
        order :class:`DefaultBoxGenerator` places the boxes (maps in turn, cells row-major, a cell's boxes together).

        Raises:
            ValueError: a number of feature maps other than the head's.
        """
        if len(x) != len(self.module_list):
            raise ValueError(f"got {len(x)} feature maps for a head built for {len(self.module_list)}")
        outputs = []
        for layer, features in zip(self.module_list, x):
            out = layer(features)
            n, _, height, width = out.shape
            out = out.view(n, -1, self.num_columns, height, width).permute(0, 3, 4, 1, 2)
            outputs.append(out.reshape(n, -1, self.num_columns))
        return torch.cat(outputs, dim=1)


class SSDClassificationHead(SSDScoringHead):
    """A 3x3 convolution per feature map giving each default box a logit per class (background included).

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
        num_classes: classes including the background.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> None:
        super().__init__(_class_layers(in_channels, num_anchors, num_classes), num_classes)
        self.num_classes = num_classes

    def _reset_classifier(self, num_classes: int) -> None:
        channels = [layer.in_channels for layer in self.module_list]
        anchors = [layer.out_channels // self.num_classes for layer in self.module_list]
        self.module_list = _class_layers(channels, anchors, num_classes)
        self.num_classes = self.num_columns = num_classes


def _class_layers(in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> nn.ModuleList:
    layers = nn.ModuleList(
        nn.Conv2d(channels, num_classes * anchors, kernel_size=3, padding=1)
        for channels, anchors in zip(in_channels, num_anchors)
    )
    _xavier_init(layers)
    return layers


class SSDRegressionHead(SSDScoringHead):
    """A 3x3 convolution per feature map giving each default box its four box offsets.

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int]) -> None:
        layers = nn.ModuleList(
            nn.Conv2d(channels, 4 * anchors, kernel_size=3, padding=1)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _xavier_init(layers)
        super().__init__(layers, 4)


class SSDHead(nn.Module):
    """SSD's classification and box regression heads over the same feature maps.

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
        num_classes: classes including the background.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors)

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"bbox_regression": (N, num_boxes, 4), "cls_logits": (N, num_boxes, num_classes)}``."""
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SSD(nn.Module):
    """SSD around any backbone that returns a list (an ordered dict) of feature maps.

    Args:
        backbone: the batch ``(N, 3, H, W)`` to one feature map or an ordered dict of them; its ``out_channels``
            (a list, one entry per map) sizes the default head, else it is found by running the backbone once.
        anchor_generator: the default boxes, one entry of ``aspect_ratios`` per feature map.
        size: the ``(width, height)`` every image is resized to.
        num_classes: classes including the background (used by the default head).
        image_mean, image_std: the input normalisation (default ImageNet's).
        head: returns ``{"bbox_regression", "cls_logits"}`` for the feature maps (default an :class:`SSDHead`).
        score_thresh: detections need a class probability above this (eval).
        nms_thresh: the IoU above which NMS drops the lower-scored detection of the same class (eval).
        detections_per_img: the most detections returned per image (eval).
        iou_thresh: a default box whose IoU with a ground-truth box reaches this is its positive (training); each
            ground truth also takes the default box that overlaps it most.
        topk_candidates: per class, the best-scored boxes kept before NMS (eval).
        positive_fraction: the share of positives among the boxes the classification loss sees: the hardest
            negatives, ``(1 - positive_fraction) / positive_fraction`` per positive, make up the rest.
        **kwargs: further ``GeneralizedRCNNTransform`` arguments.

    Raises:
        ValueError: the backbone's feature maps and the anchor generator's disagree in number; a bad ``size`` or
            ``positive_fraction``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: tuple[int, int],
        num_classes: int,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        head: nn.Module | None = None,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        iou_thresh: float = 0.5,
        topk_candidates: int = 400,
        positive_fraction: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"size must be (width, height), two positive ints, got {size!r}")
        if not 0.0 < positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction!r}")
        resizing = sorted({"min_size", "max_size"} & kwargs.keys())
        if resizing:
            raise TypeError(
                f"SSD resizes every image to size=(width, height) (here {tuple(size)}); it takes no "
                f"{' or '.join(resizing)}: pass size=(W, H) instead"
            )
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        if head is None:
            out_channels = getattr(backbone, "out_channels", None)
            if out_channels is None:
                out_channels = retrieve_out_channels(backbone, size)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(
                    f"The length of the output channels from the backbone ({len(out_channels)}) do not match the "
                    f"length of the anchor generator aspect ratios ({len(anchor_generator.aspect_ratios)})"
                )
            head = SSDHead(out_channels, anchor_generator.num_anchors_per_location(), num_classes)
        self.head = head
        self.proposal_matcher = SSDMatcher(iou_thresh)
        self.transform = GeneralizedRCNNTransform(
            min(size),
            max(size),
            [0.485, 0.456, 0.406] if image_mean is None else image_mean,
            [0.229, 0.224, 0.225] if image_std is None else image_std,
            size_divisible=1,
            fixed_size=size,
            **kwargs,
        )
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def _reset_classifier(self, num_classes: int) -> None:
        reset_class_logits(self, num_classes)

    def forward(
        self, images: list[torch.Tensor], targets: list[Target] | None = None
    ) -> dict[str, torch.Tensor] | list[Target]:
        """Detect objects in ``images`` (a list of ``(3, H, W)`` float tensors in ``[0, 1]``, sizes may differ).

        Returns:
            In training (``targets`` required: one dict per image with float ``boxes`` ``(N, 4)`` as x1 y1 x2 y2
            and integer ``labels`` ``(N,)``; ``N`` may be 0), the losses ``{"bbox_regression", "classification"}``.
            In eval, one dict per image with ``boxes``, ``scores`` and ``labels``, the boxes in that image's own
            pixel coordinates.

        Raises:
            ValueError: training without targets, targets in eval mode, a malformed image or target (named by
                its index, and the bad box by its index).
            TypeError: images or targets of the wrong type.
        """
        if self.training and targets is None:
            raise ValueError("targets should not be None in training mode: pass one dict of boxes and labels per image")
        if not self.training and targets is not None:
            raise ValueError(
                "targets were given in eval mode, where the model only predicts; call model.train() to compute "
                "the losses, or leave targets out"
            )
        if not isinstance(images, (list, tuple)):
            raise TypeError(f"images must be a list of (C, H, W) tensors, got {type(images).__name__}")
        original_sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images if isinstance(i, torch.Tensor)]
        image_list, targets = self.transform(images, targets)  # validates images and targets
        features = self.backbone(image_list.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        features = list(features.values())
        head_outputs = self.head(features)
        anchors = self.anchor_generator(image_list, features)
        if self.training:
            matched = [self._match(target["boxes"], boxes) for target, boxes in zip(targets, anchors)]
            return self.compute_loss(targets, head_outputs, anchors, matched)
        detections = self.postprocess_detections(head_outputs, anchors, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def _match(self, gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Each default box's ground-truth index, or -1 (background); an image without objects is all -1."""
        if gt_boxes.numel() == 0:
            return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        return self.proposal_matcher(box_ops.box_iou(gt_boxes, anchors))

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Smooth L1 on the positives' box offsets and cross-entropy on the positives and the hardest negatives,
        both summed over the batch and divided by the number of positives (at least 1)."""
        cls_logits = head_outputs["cls_logits"]
        box_losses, class_targets, num_foreground = [], [], 0
        for target, regression, boxes, matched in zip(targets, head_outputs["bbox_regression"], anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]
            gt_index = matched[foreground]
            num_foreground += foreground.numel()
            wanted = self.box_coder.encode_single(target["boxes"][gt_index], boxes[foreground])
            box_losses.append(F.smooth_l1_loss(regression[foreground], wanted, reduction="sum"))
            classes = torch.zeros(matched.shape, dtype=torch.int64, device=matched.device)
            classes[foreground] = target["labels"][gt_index].to(torch.int64)
            class_targets.append(classes)
        classes = torch.stack(class_targets)
        class_loss = F.cross_entropy(
            cls_logits.reshape(-1, cls_logits.shape[-1]), classes.flatten(), reduction="none"
        ).view(classes.shape)
        positive = classes > 0
        negative = self._hardest_negatives(class_loss, positive)
        normaliser = max(1, num_foreground)
        return {
            "bbox_regression": torch.stack(box_losses).sum() / normaliser,
            "classification": (class_loss[positive].sum() + class_loss[negative].sum()) / normaliser,
        }

    def _hardest_negatives(self, class_loss: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Per image, the ``neg_to_pos_ratio * positives`` boxes with the highest loss among the non-positives
        (hard negative mining, section 2.2 of the paper), as a mask shaped like ``class_loss``."""
        budget = self.neg_to_pos_ratio * positive.sum(dim=1, keepdim=True)
        negative_loss = class_loss.detach().masked_fill(positive, -float("inf"))  # positives rank last
        order = negative_loss.sort(dim=1, descending=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        return rank < budget

    def postprocess_detections(
        self,
        head_outputs: dict[str, torch.Tensor],
        image_anchors: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[Target]:
        """Per image: decode and clip every box; per foreground class, its ``topk_candidates`` best boxes with a
        score above ``score_thresh``; then per-class NMS and the ``detections_per_img`` best."""
        all_scores = F.softmax(head_outputs["cls_logits"], dim=-1)
        detections = []
        for regression, scores, anchors, image_shape in zip(
            head_outputs["bbox_regression"], all_scores, image_anchors, image_shapes
        ):
            boxes = box_ops.clip_boxes_to_image(self.box_coder.decode_single(regression, anchors), image_shape)
            per_class = scores[:, 1:].t()  # (classes - 1, boxes): the background is not a detection
            per_class = per_class.masked_fill(per_class <= self.score_thresh, -float("inf"))
            top_scores, top_boxes = per_class.topk(min(self.topk_candidates, per_class.shape[1]), dim=1)
            candidate = top_scores > self.score_thresh
            class_boxes = boxes[top_boxes]  # (classes - 1, k, 4), each row in decreasing score
            labels = torch.arange(1, scores.shape[1], device=scores.device)[:, None].expand_as(top_boxes)
            if top_boxes.shape[1] <= _ROW_NMS_MAX:
                keep = _nms_per_row(class_boxes, candidate, float(self.nms_thresh))
                image_boxes, image_scores, image_labels = class_boxes[keep], top_scores[keep], labels[keep]
                best = image_scores.sort(descending=True, stable=True).indices[: self.detections_per_img]
            else:
                image_boxes, image_scores = class_boxes[candidate], top_scores[candidate]
                image_labels = labels[candidate]
                best = box_ops.batched_nms(image_boxes, image_scores, image_labels, self.nms_thresh)
                best = best[: self.detections_per_img]
            detections.append({"boxes": image_boxes[best], "scores": image_scores[best], "labels": image_labels[best]})
        return detections


# Per-class candidate lists up to this long go through the row-wise NMS below (one step per position);
# longer ones through the general batched_nms.
_ROW_NMS_MAX = 1024
_NMS_BLOCK = 16  # positions whose overlaps one step computes


def _kept_mask(boxes: torch.Tensor, candidate: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    return torch.empty_like(candidate)


@operator("nms_per_row", _kept_mask)
def _nms_per_row(boxes: torch.Tensor, candidate: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS within each row of ``boxes`` (``(R, k, 4)``, each row in decreasing score order, equal scores in
    the order NMS takes them), among the boxes ``candidate`` marks (``(R, k)``). Returns the ``(R, k)`` mask of the
    boxes kept: what ``batched_nms`` keeps with one category per row.

    SSD's per-class candidates are short (a few hundred): stepping down the positions of all classes at once, each
    box still kept removing the later boxes of its class it overlaps too much, is far cheaper than sorting and
    sweeping every candidate of every class together. The overlaps are computed a block of positions at a time.
    """
    keep = candidate.clone()
    threshold = _strict_threshold(iou_threshold, boxes.dtype)
    x1, y1, x2, y2 = (c.contiguous() for c in boxes.unbind(-1))
    area = (x2 - x1) * (y2 - y1)
    used = candidate.any(dim=0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 0  # positions after the last candidate change nothing
    for start in range(0, length - 1, _NMS_BLOCK):
        block, rest = slice(start, start + _NMS_BLOCK), slice(start, None)
        # The IoU as the shared NMS computes it, operation for operation (ties with the threshold compare alike).
        w = (torch.min(x2[:, block, None], x2[:, None, rest]) - torch.max(x1[:, block, None], x1[:, None, rest])).clamp(
            min=0
        )
        h = (torch.min(y2[:, block, None], y2[:, None, rest]) - torch.max(y1[:, block, None], y1[:, None, rest])).clamp(
            min=0
        )
        inter = w * h
        overlaps = inter / (area[:, block, None] + area[:, None, rest] - inter) > threshold  # (R, block, k - start)
        for j in range(overlaps.shape[1]):
            i = start + j
            keep[:, i + 1 :] &= ~(overlaps[:, j, j + 1 :] & keep[:, i, None])
    return keep


# --------------------------------------------------------------------------------------------------
# The VGG-16 backbone of SSD300
# --------------------------------------------------------------------------------------------------


def _extra_layer(in_channels: int, middle: int, out_channels: int, **conv: Any) -> nn.Sequential:
    """A 1x1 reduction then a 3x3 (or ``kernel_size``) convolution, each with ReLU: SSD's extra feature layers."""
    kernel_size = conv.pop("kernel_size", 3)
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(middle, out_channels, kernel_size=kernel_size, **conv),
        nn.ReLU(inplace=True),
    )


class SSDFeatureExtractorVGG(nn.Module):
    """VGG-16's convolutions as SSD uses them (figure 2 of the paper): six feature maps, 38 to 1 cells at 300x300.

    ``conv4_3`` (L2-normalised per position, then scaled per channel by a learnt weight starting at 20), then
    ``conv5_3`` followed by the atrous ``fc6``/``fc7`` convolutions that replace VGG's classifier, then four extra
    layers (five with ``highres``, for SSD512). The third max pool rounds up, so that 75 cells become 38.

    Args:
        backbone: a VGG-16 ``features`` (13 convolutions, 5 max pools); its layers are reused, not copied.
        highres: add the fifth extra layer of SSD512.

    Raises:
        ValueError: ``backbone`` does not have VGG's five max pools.
    """

    def __init__(self, backbone: nn.Sequential, highres: bool) -> None:
        super().__init__()
        pools = [i for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"expected a VGG features module with 5 max pools, got {len(pools)}")
        backbone[pools[2]].ceil_mode = True
        self.scale_weight = nn.Parameter(torch.full((512,), 20.0))
        self.features = nn.Sequential(*backbone[: pools[3]])  # up to conv4_3 and its ReLU
        extra = nn.ModuleList(
            [
                _extra_layer(1024, 256, 512, stride=2, padding=1),  # conv8_2
                _extra_layer(512, 128, 256, stride=2, padding=1),  # conv9_2
                _extra_layer(256, 128, 256),  # conv10_2
                _extra_layer(256, 128, 256),  # conv11_2
            ]
        )
        if highres:
            extra.append(_extra_layer(256, 128, 256, kernel_size=4))  # conv12_2 (SSD512, footnote 5)
        _xavier_init(extra)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5 keeps the resolution
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        # conv5_1..conv5_3 (VGG's last pool dropped), then fc6/fc7: the second feature map.
        extra.insert(0, nn.Sequential(*backbone[pools[3] : -1], fc))
        self.extra = extra
        self.out_channels = [512, 1024, 512, 256, 256, 256] + ([256] if highres else [])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature maps, ``"0"`` (rescaled ``conv4_3``) to ``"5"`` (``"6"`` with ``highres``)."""
        x = self.features(x)
        outputs = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x, dim=1)]
        for block in self.extra:
            x = block(x)
            outputs.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(outputs))


def _vgg_extractor(backbone: nn.Module, highres: bool, trainable_layers: int) -> SSDFeatureExtractorVGG:
    """Freeze a VGG's ``features`` but its last ``trainable_layers`` of five stages (each ending at a max pool),
    then wrap them as SSD's feature extractor."""
    features = backbone.features
    pools = [i for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
    stage_starts = [0, *pools[:-1]]
    if not 0 <= trainable_layers <= len(stage_starts):
        raise ValueError(f"trainable_layers should be in the range [0, {len(stage_starts)}], got {trainable_layers}")
    first_trainable = len(features) if trainable_layers == 0 else stage_starts[len(stage_starts) - trainable_layers]
    for layer in features[:first_trainable]:
        layer.requires_grad_(False)
    return SSDFeatureExtractorVGG(features, highres)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


class SSD300_VGG16_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth",
        params=35641826,
        box_map=25.1,
        gflops=34.858,
        file_mb=135.988,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#ssd300-vgg16",
        docs="Trained on COCO train2017 with a recipe close to the paper's.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _drop_size(builder: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The SSD builders fix the input size: a ``size`` argument is dropped with a warning."""
    if "size" in kwargs:
        warnings.warn(
            f"{builder} resizes every image to its fixed size; ignoring size={kwargs['size']!r}",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
        kwargs = {k: v for k, v in kwargs.items() if k != "size"}
    return kwargs


def _fold_pretrained_vgg(kwargs: dict[str, Any], weights_backbone: Any) -> Any:
    """The deprecated ``pretrained_backbone=`` of ``ssd300_vgg16``: True meant the SSD authors' VGG-16 features."""
    if "pretrained_backbone" not in kwargs:
        return weights_backbone
    legacy = kwargs.pop("pretrained_backbone")
    chosen = VGG16_Weights.IMAGENET1K_FEATURES if legacy else None
    warnings.warn(
        f"pretrained_backbone={legacy} is deprecated and may be removed; use weights_backbone={chosen!r} instead.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    return chosen


def _ssd300_vgg16(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> SSD:
    backbone = _vgg_extractor(vgg16(weights=weights_backbone), False, trainable)
    anchors = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    # The backbone's weights came from Caffe: 0-255 pixels minus the mean pixel.
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3}
    return SSD(backbone, anchors, (300, 300), num_classes, **{**defaults, **kwargs})


@register_model(task="detection", weights=SSD300_VGG16_Weights)
def ssd300_vgg16(
    *,
    weights: SSD300_VGG16_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: VGG16_Weights | str | None = VGG16_Weights.IMAGENET1K_FEATURES,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> SSD:
    """SSD300 with a VGG-16 backbone: images resized to 300x300, 8732 default boxes on six feature maps.

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]`` (sizes may differ); see
    :meth:`SSD.forward` for what it returns in training and in eval.

    Args:
        weights: an ``SSD300_VGG16_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the classification head (with a warning) and loads everything else.
        weights_backbone: the VGG-16 weights, used when ``weights`` is None (default the SSD authors' features).
        trainable_backbone_layers: VGG stages left trainable, from the last (0 to 5; default 4, or 5 without any
            pretrained weights).
        **kwargs: ``SSD`` arguments (``score_thresh``, ``nms_thresh``, ``detections_per_img``, ``iou_thresh``,
            ``topk_candidates``, ``positive_fraction``, ``image_mean``, ``image_std``, ...) and the deprecated
            ``pretrained_backbone``.
    """
    weights_backbone = _fold_pretrained_vgg(kwargs, weights_backbone)
    return _build_detector(
        _ssd300_vgg16,
        vgg16,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        default_trainable=4,
        kwargs=_drop_size("ssd300_vgg16", kwargs),
    )
