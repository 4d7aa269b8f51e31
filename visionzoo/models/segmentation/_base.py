"""What every segmentation model shares: the backbone-plus-heads model and the one build path of the builders.

A model runs its backbone (a :class:`~visionzoo.models._features.FeatureTap` over a classification network),
a classifier on the ``"out"`` feature map and, when built with ``aux_loss``, an auxiliary classifier on the
``"aux"`` map (a training aid); both predictions are upsampled bilinearly to the input's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from .._api import WeightsEnum
from .._features import FeatureTap, stage_boundaries
from .._heads import head_width, require_classes
from .._meta import _VOC_CATEGORIES
from .._utils import build_model, check_image_batch

M = TypeVar("M", bound=nn.Module)


def upsample_to(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a score map to ``size`` (half-pixel centres, as every segmentation head here uses)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Module):
    """A backbone returning ``{"out": ..., "aux": ...}`` feature maps, a classifier and an optional auxiliary one.

    Args:
        backbone: returns a dict with ``"out"`` (and ``"aux"`` when ``aux_classifier`` is given).
        classifier: turns the ``"out"`` map into per-class scores.
        aux_classifier: turns the ``"aux"`` map into per-class scores; used for an auxiliary training loss.

    The forward returns ``{"out": scores}`` (and ``"aux"``), each ``(N, num_classes, H, W)`` for an input
    ``(N, 3, H, W)``.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def _reset_classifier(self, num_classes: int) -> None:
        # Each classifier ends in a 1x1 convolution to the classes, with PyTorch's default initialisation.
        require_classes(num_classes, type(self).__name__)
        for head in (self.classifier, self.aux_classifier):
            if head is not None:
                head[-1] = nn.Conv2d(head_width(head[-1]), num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, type(self).__name__)
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": upsample_to(self.classifier(features["out"]), size)}
        if self.aux_classifier is not None:
            result["aux"] = upsample_to(self.aux_classifier(features["aux"]), size)
        return result


def build_segmentation(
    assemble: Callable[[nn.Module, int, bool], M],
    backbone: Callable[..., nn.Module],
    weights: WeightsEnum | Path | None,
    progress: bool,
    *,
    backbone_options: Mapping[str, Any],
    num_classes: int | None,
    aux_loss: bool | None,
    weights_backbone: WeightsEnum | str | None,
    **legacy: Any,
) -> M:
    """The builders' shared path: resolve the options as the reference does, then build and load via ``build_model``.

    Args:
        assemble: ``assemble(backbone_network, num_classes, aux)`` builds the model around the classification
            network (it builds the aux head only when ``aux``).
        backbone: the registered classification builder, e.g. ``resnet50``.
        backbone_options: its dense-prediction options, e.g. ``{"replace_stride_with_dilation": [False, True, True]}``.
        weights: resolved segmentation weights, a local checkpoint, or None.
        num_classes: default: the weights' categories, else 21 (the VOC labels). With published weights, another
            value loads every tensor but the classifiers' last layers, which are re-initialised (with a warning).
        aux_loss: build the auxiliary classifier. Default: with published weights, yes (they hold it); otherwise
            no. Weights holding an auxiliary classifier load into a model built without one.
        weights_backbone: the backbone's ImageNet weights (a member of its enum or a member name), used only when
            ``weights`` is None.
        **legacy: the deprecated ``pretrained_backbone`` (a bool), as the reference accepts it.

    Raises:
        ValueError: ``num_classes`` is not a positive int. TypeError: an unknown keyword argument.
    """
    if "pretrained_backbone" in legacy:
        weights_backbone = _fold_pretrained_backbone(legacy.pop("pretrained_backbone"), backbone)
    if legacy:
        raise TypeError(f"Unexpected keyword argument(s) {', '.join(map(repr, legacy))} for a segmentation builder")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if weights is not None:
        weights_backbone = None  # every backbone tensor comes from the segmentation checkpoint
    elif num_classes is None:
        num_classes = len(_VOC_CATEGORIES)
    aux = isinstance(weights, WeightsEnum) if aux_loss is None else bool(aux_loss)

    def make(num_classes: int = len(_VOC_CATEGORIES)) -> M:
        return assemble(backbone(weights=weights_backbone, progress=progress, **backbone_options), num_classes, aux)

    config = {} if num_classes is None else {"num_classes": num_classes}
    ignore = () if aux else ("aux_classifier.",)
    return build_model(make, weights, progress, ignore_unexpected=ignore, **config)


def _fold_pretrained_backbone(pretrained: bool, backbone: Callable[..., nn.Module]) -> WeightsEnum | None:
    """Map the deprecated ``pretrained_backbone=`` to ``weights_backbone=``, with a warning, as the reference does."""
    from .._api import caller_stacklevel, get_model_weights

    enum = get_model_weights(backbone)
    chosen = next(iter(enum)) if pretrained else None
    advice = f"weights_backbone={chosen!r}" if chosen is not None else "weights_backbone=None"
    warnings.warn(
        f"pretrained_backbone={pretrained} is deprecated and may be removed; use {advice} instead.",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )
    return chosen


def dilated_resnet_features(network: nn.Module, *, aux: bool) -> tuple[FeatureTap, dict[str, int]]:
    """A dilated ResNet's ``layer4`` as ``"out"`` (output stride 8) and, with ``aux``, ``layer3`` as ``"aux"``.

    Returns the tap and the channels of each output.
    """
    layers = {"layer4": "out", **({"layer3": "aux"} if aux else {})}
    channels = {info["name"]: info["channels"] for info in network.feature_info}
    return FeatureTap(network, layers), {output: channels[layer] for layer, output in layers.items()}


def mobilenet_v3_features(network: nn.Module, *, last: str, stride8: str | None) -> tuple[FeatureTap, dict[str, int]]:
    """A dilated MobileNetV3's last feature map (output stride 16) as ``last`` and, when named, the end of its
    stride-8 stage as ``stride8``. Returns the tap (over ``network.features``) and the channels of each output."""
    blocks = network.features
    stages = stage_boundaries(blocks)
    layers = {str(stages[-1]): last, **({str(stages[-4]): stride8} if stride8 else {})}
    return FeatureTap(blocks, layers), {output: blocks[int(index)].out_channels for index, output in layers.items()}
