"""Operators and shared layers for the models, in pure PyTorch."""

from __future__ import annotations

from .boxes import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
    masks_to_boxes,
    nms,
    remove_small_boxes,
)
from .feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7
from .losses import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss
from .misc import (
    MLP,
    Conv2dNormActivation,
    Conv3dNormActivation,
    FrozenBatchNorm2d,
    Permute,
    SqueezeExcitation,
    StochasticDepth,
    convert_frozen_batchnorm,
    stochastic_depth,
)
from .poolers import MultiScaleRoIAlign
from .roi_align import RoIAlign, RoIPool, roi_align, roi_pool

__all__ = [
    "Conv2dNormActivation",
    "Conv3dNormActivation",
    "SqueezeExcitation",
    "FrozenBatchNorm2d",
    "convert_frozen_batchnorm",
    "StochasticDepth",
    "stochastic_depth",
    "MLP",
    "Permute",
    # RoI pooling and the feature pyramid
    "roi_align",
    "RoIAlign",
    "roi_pool",
    "RoIPool",
    "MultiScaleRoIAlign",
    "FeaturePyramidNetwork",
    "ExtraFPNBlock",
    "LastLevelMaxPool",
    "LastLevelP6P7",
    # boxes and losses
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "box_convert",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "masks_to_boxes",
    "nms",
    "batched_nms",
    "sigmoid_focal_loss",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
]
