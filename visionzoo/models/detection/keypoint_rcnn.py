"""Keypoint R-CNN: Faster R-CNN with a branch that predicts one heatmap per keypoint inside each detected box.

He et al., "Mask R-CNN" (2017), https://arxiv.org/abs/1703.06870, section 5 (human pose). The keypoint branch
pools 14x14 features per box, runs eight 3x3 convolutions of 512 channels and upsamples to 56x56 heatmaps; each
keypoint is placed at its heatmap's maximum.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops.misc import FrozenBatchNorm2d
from ...ops.poolers import MultiScaleRoIAlign
from .._api import Weights, WeightsEnum, caller_stacklevel, register_model
from .._meta import _COCO_PERSON_CATEGORIES, _COCO_PERSON_KEYPOINT_NAMES
from .._weights import detection_entry
from ..resnet import ResNet50_Weights, resnet50
from ._utils import overwrite_eps
from .backbone_utils import _build_detector, _resnet_fpn_extractor
from .faster_rcnn import FasterRCNN

__all__ = [
    "KeypointRCNN",
    "KeypointRCNNHeads",
    "KeypointRCNNPredictor",
    "KeypointRCNN_ResNet50_FPN_Weights",
    "keypointrcnn_resnet50_fpn",
]


class KeypointRCNNHeads(nn.Sequential):
    """The keypoint branch's head: 3x3 convolutions with ReLU.

    Args:
        in_channels: channels of the pooled features.
        layers: the output channels of each convolution.
    """

    def __init__(self, in_channels: int, layers: list[int] | tuple[int, ...]) -> None:
        blocks: list[nn.Module] = []
        channels = in_channels
        for out_channels in layers:
            blocks += [nn.Conv2d(channels, out_channels, 3, stride=1, padding=1), nn.ReLU(inplace=True)]
            channels = out_channels
        super().__init__(*blocks)
        for layer in self.children():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(layer.bias, 0)


class KeypointRCNNPredictor(nn.Module):
    """One heatmap per keypoint at four times the pooled size: a stride-2 transposed convolution, then a 2x
    bilinear upsampling.

    Args:
        in_channels: channels of the keypoint head's output.
        num_keypoints: the number of keypoints (heatmaps).
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, 4, stride=2, padding=1)
        nn.init.kaiming_normal_(self.kps_score_lowres.weight, mode="fan_out", nonlinearity="relu")
        nn.init.constant_(self.kps_score_lowres.bias, 0)
        self.up_scale = 2
        self.out_channels = num_keypoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(R, C, h, w)`` features to ``(R, num_keypoints, 4h, 4w)`` heatmap logits."""
        return F.interpolate(
            self.kps_score_lowres(x),
            scale_factor=float(self.up_scale),
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )


def _check_num_keypoints(num_keypoints: Any) -> None:
    if num_keypoints is not None and (
        isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 1
    ):
        raise ValueError(f"num_keypoints must be a positive int, got {num_keypoints!r}")


class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN around any backbone with ``out_channels``: Faster R-CNN plus keypoints for each detection.

    In eval each detection also has ``keypoints`` (``(N, K, 3)``: x, y and a visibility of 1, in the image's
    coordinates) and ``keypoints_scores`` (``(N, K)``, the heatmap logits at those points). In training the
    targets also need float32 ``keypoints`` ``(N, K, 3)`` (visibility 0 for an unlabelled keypoint); the losses
    add ``loss_keypoint``.

    Args:
        backbone, num_classes: as for :class:`FasterRCNN`.
        min_size: default one of 640 to 800 at random for each training image (800 in eval).
        keypoint_roi_pool: default a 14x14 ``MultiScaleRoIAlign`` over the feature maps ``"0"`` to ``"3"``.
        keypoint_head: default a ``KeypointRCNNHeads`` of eight 512-channel convolutions.
        keypoint_predictor: default a ``KeypointRCNNPredictor`` for ``num_keypoints``.
        num_keypoints: default 17 (COCO's person keypoints); must be None with a ``keypoint_predictor``.
        **kwargs: further :class:`FasterRCNN` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        *,
        min_size: int | tuple[int, ...] | None = None,
        keypoint_roi_pool: MultiScaleRoIAlign | None = None,
        keypoint_head: nn.Module | None = None,
        keypoint_predictor: nn.Module | None = None,
        num_keypoints: int | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(keypoint_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                f"keypoint_roi_pool should be of type MultiScaleRoIAlign or None instead of {type(keypoint_roi_pool)}"
            )
        if num_keypoints is not None and keypoint_predictor is not None:
            raise ValueError("num_keypoints should be None when keypoint_predictor is specified")
        _check_num_keypoints(num_keypoints)
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone should contain an attribute out_channels (the channels of its feature maps)")
        if min_size is None:
            min_size = (640, 672, 704, 736, 768, 800)
        # Built before the detector's other parts: the reference draws their random initialisation in this order.
        if keypoint_roi_pool is None:
            keypoint_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
        if keypoint_head is None:
            keypoint_head = KeypointRCNNHeads(backbone.out_channels, [512] * 8)
        if keypoint_predictor is None:
            keypoint_predictor = KeypointRCNNPredictor(512, 17 if num_keypoints is None else num_keypoints)
        super().__init__(backbone, num_classes, min_size=min_size, **kwargs)
        self.roi_heads.keypoint_roi_pool = keypoint_roi_pool
        self.roi_heads.keypoint_head = keypoint_head
        self.roi_heads.keypoint_predictor = keypoint_predictor


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def _person_keypoints_entry(url: str, **facts: Any) -> Weights:
    """An entry of the COCO person keypoint detector: its two classes, 17 keypoints, size and parameters."""
    return detection_entry(
        url,
        params=59137258,
        file_mb=226.054,
        categories=_COCO_PERSON_CATEGORIES,
        keypoint_names=_COCO_PERSON_KEYPOINT_NAMES,
        **facts,
    )


class KeypointRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_LEGACY = _person_keypoints_entry(
        "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-9f466800.pth",
        box_map=50.6,
        kp_map=61.1,
        gflops=133.924,
        recipe="https://github.com/pytorch/vision/issues/1606",
        docs="Trained on COCO train2017 person keypoints with a recipe close to the paper's, taken from an early "
        "epoch.",
    )
    COCO_V1 = _person_keypoints_entry(
        "https://download.pytorch.org/models/keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
        box_map=54.6,
        kp_map=65.0,
        gflops=137.42,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#keypoint-r-cnn",
        docs="Trained on COCO train2017 person keypoints with a recipe close to the paper's.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _resnet50_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> KeypointRCNN:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, norm_layer=norm_layer)
    return KeypointRCNN(_resnet_fpn_extractor(backbone, trainable), num_classes, **kwargs)


def _legacy_entry(kwargs: dict[str, Any]) -> str:
    return "COCO_LEGACY" if kwargs.get("pretrained") == "legacy" else "COCO_V1"


@register_model(task="detection", weights=KeypointRCNN_ResNet50_FPN_Weights, legacy_weights=_legacy_entry)
def keypointrcnn_resnet50_fpn(
    *,
    weights: KeypointRCNN_ResNet50_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    num_keypoints: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> KeypointRCNN:
    """Keypoint R-CNN with a ResNet-50 FPN backbone, for person keypoints.

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]``; see :class:`KeypointRCNN` for the
    keypoints it adds to Faster R-CNN's outputs and targets.

    Args:
        weights: a ``KeypointRCNN_ResNet50_FPN_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 2: no person, person). With published weights,
            another value re-initialises the box predictor (with a warning).
        num_keypoints: keypoints per object (default 17, COCO's). With published weights, another value
            re-initialises the keypoint predictor (with a warning).
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 5; default 3, or 5
            without any pretrained weights).
        **kwargs: ``KeypointRCNN`` arguments and the deprecated ``pretrained_backbone``.
    """
    _check_num_keypoints(num_keypoints)
    published = isinstance(weights, WeightsEnum)
    trained_keypoints = len(weights.meta["keypoint_names"]) if published else None
    fresh_predictor = published and num_keypoints is not None and num_keypoints != trained_keypoints
    build_keypoints = trained_keypoints if fresh_predictor else num_keypoints
    model = _build_detector(
        _resnet50_fpn,
        resnet50,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        kwargs={**kwargs, "num_keypoints": build_keypoints},
        default_classes=len(_COCO_PERSON_CATEGORIES),
    )
    if weights == KeypointRCNN_ResNet50_FPN_Weights.COCO_V1:
        overwrite_eps(model, 0.0)  # trained with frozen batch norms that added no epsilon to the variance
    if fresh_predictor:
        old = model.roi_heads.keypoint_predictor
        model.roi_heads.keypoint_predictor = KeypointRCNNPredictor(old.kps_score_lowres.in_channels, num_keypoints)
        warnings.warn(
            f"num_keypoints={num_keypoints} differs from the {trained_keypoints} keypoints of {weights!r}: every "
            "pretrained tensor was loaded except roi_heads.keypoint_predictor.kps_score_lowres.weight and .bias, "
            f"which were re-initialised for {num_keypoints} keypoints (fine-tune them before use)",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    return model
