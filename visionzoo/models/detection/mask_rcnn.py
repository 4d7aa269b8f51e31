"""Mask R-CNN: Faster R-CNN with a third branch that predicts a binary mask inside each detected box.

He et al., "Mask R-CNN" (2017), https://arxiv.org/abs/1703.06870. The mask branch pools 14x14 features per box
(RoIAlign), runs four 3x3 convolutions, upsamples once and predicts one 28x28 mask per class; the box's class
picks the mask. The ``_v2`` builder is the improved recipe of ``fasterrcnn_resnet50_fpn_v2``, with batch norm in
the mask head too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ...ops.misc import BatchNorm2d, Conv2dNormActivation, FrozenBatchNorm2d
from ...ops.poolers import MultiScaleRoIAlign
from .._api import WeightsEnum, register_model
from .._heads import head_width
from .._weights import detection_entry
from ..resnet import ResNet50_Weights, resnet50
from ._utils import overwrite_eps
from .backbone_utils import _build_detector, _resnet_fpn_extractor
from .faster_rcnn import FasterRCNN, FastRCNNConvFCHead, RPNHead, _default_anchorgen

__all__ = [
    "MaskRCNN",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "MaskRCNN_ResNet50_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_V2_Weights",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
]


class MaskRCNNHeads(nn.Sequential):
    """The mask branch's fully convolutional head: 3x3 convolutions (optional normalisation) with ReLU.

    Args:
        in_channels: channels of the pooled features.
        layers: the output channels of each convolution.
        dilation: the convolutions' dilation (and padding, so the size stays).
        norm_layer: normalisation after each convolution (default none).
    """

    # Version 2 names the convolutions "<i>.0"; version 1 checkpoints call them "mask_fcn<i+1>".
    _version = 2

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[int],
        dilation: int,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        blocks = []
        channels = in_channels
        for out_channels in layers:
            blocks.append(
                Conv2dNormActivation(
                    channels, out_channels, 3, padding=dilation, dilation=dilation, norm_layer=norm_layer
                )
            )
            channels = out_channels
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for index in range(len(self)):
                for kind in ("weight", "bias"):
                    old = f"{prefix}mask_fcn{index + 1}.{kind}"
                    if old in state_dict:
                        state_dict[f"{prefix}{index}.0.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class MaskRCNNPredictor(nn.Sequential):
    """Upsample the head's features twice (transposed convolution, ReLU), then one mask logit map per class.

    Args:
        in_channels: channels of the mask head's output.
        dim_reduced: channels after the upsampling.
        num_classes: classes including the background.
    """

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__(
            OrderedDict(
                conv5_mask=nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0),
                relu=nn.ReLU(inplace=True),
                mask_fcn_logits=nn.Conv2d(dim_reduced, num_classes, 1, 1, 0),
            )
        )
        for name, parameter in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(parameter, mode="fan_out", nonlinearity="relu")


def _mask_logits(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A fresh per-class mask logit layer, initialised as :class:`MaskRCNNPredictor` initialises its own."""
    layer = nn.Conv2d(in_channels, num_classes, 1, 1, 0)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


class MaskRCNN(FasterRCNN):
    """Mask R-CNN around any backbone with ``out_channels``: Faster R-CNN plus a mask for each detection.

    In eval each detection also has ``masks``: ``(N, 1, H, W)`` probabilities in ``[0, 1]`` over its whole image
    (threshold at 0.5 for a binary mask). In training the targets also need ``masks``: ``(N, H, W)`` binary masks
    of the image's size, one per box; the losses add ``loss_mask``.

    Args:
        backbone, num_classes: as for :class:`FasterRCNN`.
        mask_roi_pool: default a 14x14 ``MultiScaleRoIAlign`` over the feature maps ``"0"`` to ``"3"``.
        mask_head: default a ``MaskRCNNHeads`` of four 256-channel convolutions.
        mask_predictor: default a ``MaskRCNNPredictor`` (256 channels); then ``num_classes`` must be None.
        **kwargs: further :class:`FasterRCNN` arguments (``min_size``, ``box_score_thresh``, ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        *,
        mask_roi_pool: MultiScaleRoIAlign | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(mask_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                f"mask_roi_pool should be of type MultiScaleRoIAlign or None instead of {type(mask_roi_pool)}"
            )
        if num_classes is not None and mask_predictor is not None:
            raise ValueError("num_classes should be None when mask_predictor is specified")
        if num_classes is None and mask_predictor is None:
            raise ValueError("num_classes should not be None when mask_predictor is not specified")
        if not hasattr(backbone, "out_channels"):
            raise ValueError("backbone should contain an attribute out_channels (the channels of its feature maps)")
        # Built before the detector's other parts: the reference draws their random initialisation in this order.
        if mask_roi_pool is None:
            mask_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=14, sampling_ratio=2)
        if mask_head is None:
            mask_head = MaskRCNNHeads(backbone.out_channels, (256, 256, 256, 256), 1)
        if mask_predictor is None:
            mask_predictor = MaskRCNNPredictor(256, 256, num_classes)
        super().__init__(backbone, num_classes, **kwargs)
        self.roi_heads.mask_roi_pool = mask_roi_pool
        self.roi_heads.mask_head = mask_head
        self.roi_heads.mask_predictor = mask_predictor

    def _reset_classifier(self, num_classes: int) -> None:
        super()._reset_classifier(num_classes)
        predictor = self.roi_heads.mask_predictor
        if not isinstance(predictor, MaskRCNNPredictor):
            raise TypeError(f"cannot reset a custom mask predictor ({type(predictor).__name__}); replace it yourself")
        predictor.mask_fcn_logits = _mask_logits(head_width(predictor.mask_fcn_logits), num_classes)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"


class MaskRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        params=44401393,
        box_map=37.9,
        mask_map=34.6,
        gflops=134.38,
        file_mb=169.84,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#mask-r-cnn",
        docs="Trained on COCO train2017 with a schedule close to the paper's.",
    )
    DEFAULT = COCO_V1


class MaskRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
        params=46359409,
        box_map=47.4,
        mask_map=41.8,
        gflops=333.577,
        file_mb=177.219,
        recipe="https://github.com/pytorch/vision/pull/5773",
        docs="Trained on COCO train2017 with the longer, stronger recipe of the improved Faster R-CNN, which lifts "
        "box mAP by about nine points and mask mAP by about seven.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _resnet50_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> MaskRCNN:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, norm_layer=norm_layer)
    return MaskRCNN(_resnet_fpn_extractor(backbone, trainable), num_classes=num_classes, **kwargs)


def _resnet50_fpn_v2(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> MaskRCNN:
    backbone = _resnet_fpn_extractor(resnet50(weights=weights_backbone), trainable, norm_layer=nn.BatchNorm2d)
    anchors = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256] * 4, [1024], norm_layer=BatchNorm2d)
    mask_head = MaskRCNNHeads(backbone.out_channels, [256] * 4, 1, norm_layer=BatchNorm2d)
    return MaskRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_head=box_head,
        mask_head=mask_head,
        **kwargs,
    )


@register_model(task="detection", weights=MaskRCNN_ResNet50_FPN_Weights)
def maskrcnn_resnet50_fpn(
    *,
    weights: MaskRCNN_ResNet50_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN with a ResNet-50 FPN backbone.

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]``; see :class:`MaskRCNN` for the masks it
    adds to Faster R-CNN's outputs and targets.

    Args:
        weights: a ``MaskRCNN_ResNet50_FPN_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the box and mask predictors' class layers (with a warning).
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 5; default 3, or 5
            without any pretrained weights).
        **kwargs: ``MaskRCNN`` arguments and the deprecated ``pretrained_backbone``.
    """
    model = _build_detector(
        _resnet50_fpn,
        resnet50,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        kwargs=kwargs,
    )
    if weights == MaskRCNN_ResNet50_FPN_Weights.COCO_V1:
        overwrite_eps(model, 0.0)  # trained with frozen batch norms that added no epsilon to the variance
    return model


@register_model(task="detection", weights=MaskRCNN_ResNet50_FPN_V2_Weights)
def maskrcnn_resnet50_fpn_v2(
    *,
    weights: MaskRCNN_ResNet50_FPN_V2_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """The improved Mask R-CNN with a ResNet-50 FPN backbone (batch norm, deeper heads); arguments as
    ``maskrcnn_resnet50_fpn``, but no backbone weights by default."""
    return _build_detector(
        _resnet50_fpn_v2,
        resnet50,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        kwargs=kwargs,
    )
