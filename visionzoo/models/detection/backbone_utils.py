"""Detection backbones: a classification network's feature maps, optionally through a feature pyramid.

The classification network is built with :class:`~visionzoo.ops.FrozenBatchNorm2d` (detection batches are too
small for batch statistics), its first stages frozen (``trainable_layers``), and its stage outputs read by a
:class:`~visionzoo.models._features.FeatureTap`, which keeps the checkpoints' keys (``backbone.body.layer1...``).

The stages are numbered as ``features_only=True`` numbers them (``out_indices``, negative ones from the last), so
``returned_layers`` and ``out_indices`` are the same thing under two names; a features-only classification model
(``get_model(name, features_only=True, out_indices=...)``) can also feed :class:`BackboneWithFPN` directly.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool
from ...ops.misc import FrozenBatchNorm2d
from .. import mobilenet, resnet
from .._api import WeightsEnum, caller_stacklevel
from .._features import FeatureMaps, FeatureTap, resolve_out_indices, stage_boundaries
from .._meta import _COCO_CATEGORIES
from .._utils import build_model

__all__ = ["BackboneWithFPN", "mobilenet_backbone", "resnet_fpn_backbone"]

NormLayer = Callable[..., nn.Module]

# The builders each backbone helper accepts by name, as the reference looks them up in its modules.
_RESNETS = {name: getattr(resnet, name) for name in resnet.__all__ if name.islower()}
_MOBILENETS = {name: getattr(mobilenet, name) for name in mobilenet.__all__ if name.islower()}


class BackboneWithFPN(nn.Module):
    """A backbone's intermediate feature maps, run through a :class:`FeaturePyramidNetwork`.

    Args:
        backbone: the network; its children are run in order up to the last one named in ``return_layers``. Or a
            features-only classification model (``features_only=True``), whose maps feed the pyramid as they
            are: then leave ``return_layers`` and ``in_channels_list`` out (its ``feature_info`` has the channels).
        return_layers: ``{child name: output name}``, e.g. ``{"layer1": "0", ..., "layer4": "3"}``.
        in_channels_list: the channels of those feature maps, in the backbone's order.
        out_channels: the channels of every pyramid level.
        extra_blocks: extra levels after the last one (default :class:`LastLevelMaxPool`, a ``"pool"`` level).
        norm_layer: normalisation inside the pyramid (default none).

    Attributes:
        out_channels: the channels of every level of the output.
        feature_info: the maps that feed the pyramid (``name``, ``channels``, ``stride``), where the backbone
            describes its stages; otherwise their strides are None.

    Raises:
        ValueError: ``return_layers`` and ``in_channels_list`` missing for a backbone that is not features-only
            (or given for one that is), or of different lengths.
    """

    def __init__(
        self,
        backbone: nn.Module,
        return_layers: dict[str, str] | None = None,
        in_channels_list: list[int] | None = None,
        out_channels: int = 256,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        self.body: nn.Module
        if isinstance(backbone, FeatureMaps):
            if return_layers is not None or in_channels_list is not None:
                raise ValueError(
                    "a features-only backbone returns the maps it was built for (out_indices): "
                    "leave return_layers and in_channels_list out"
                )
            self.body = backbone
            self.feature_info = [dict(info) for info in backbone.feature_info]
            in_channels_list = [info["channels"] for info in backbone.feature_info]
        else:
            if return_layers is None or in_channels_list is None:
                raise ValueError(
                    f"{type(backbone).__name__} is not a features-only model (features_only=True): "
                    "give return_layers and in_channels_list"
                )
            if len(in_channels_list) != len(return_layers):
                raise ValueError(
                    f"in_channels_list must give the channels of each of the {len(return_layers)} returned layers, "
                    f"got {in_channels_list}"
                )
            self.body = FeatureTap(backbone, return_layers)
            strides = {info["name"]: info["stride"] for info in getattr(backbone, "feature_info", ())}
            self.feature_info = [
                {"name": name, "channels": channels, "stride": strides.get(name)}
                for name, channels in zip(return_layers, in_channels_list)
            ]
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=in_channels_list,
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
            norm_layer=norm_layer,
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.body(x)
        if isinstance(maps, list):  # a features-only body: its maps in order, named as return_layers would
            maps = OrderedDict((str(index), level) for index, level in enumerate(maps))
        return self.fpn(maps)


def _freeze_all_but(network: nn.Module, trainable_prefixes: list[str]) -> None:
    for name, parameter in network.named_parameters():
        if not name.startswith(tuple(trainable_prefixes)):
            parameter.requires_grad_(False)


def _take_legacy_pretrained(function: str, weights: Any, legacy: dict[str, Any]) -> dict[str, Any]:
    """The backbone builder's arguments for ``weights`` or the deprecated ``pretrained`` (which it folds, warning)."""
    unknown = set(legacy) - {"pretrained"}
    if unknown:
        raise TypeError(f"{function}() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    if "pretrained" in legacy and weights is not None:
        raise ValueError(f"{function}(): pass either weights=... or the deprecated pretrained=..., not both")
    return legacy if "pretrained" in legacy else {"weights": weights}


def _builder(table: dict[str, Callable[..., nn.Module]], name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise ValueError(f"Unknown backbone_name {name!r}; expected one of: {', '.join(table)}")
    return table[name]


def resnet_fpn_backbone(
    *,
    backbone_name: str,
    weights: WeightsEnum | str | None = None,
    norm_layer: NormLayer = FrozenBatchNorm2d,
    trainable_layers: int = 3,
    returned_layers: list[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    out_indices: Sequence[int] | None = None,
    **legacy: Any,
) -> BackboneWithFPN:
    """A ResNet (any of ``visionzoo.models.resnet``'s builders, by name) with a 256-channel FPN on top.

    Args:
        backbone_name: e.g. ``"resnet50"`` or ``"resnext101_32x8d"``.
        weights: the ResNet's ImageNet weights (enum member or name), or None.
        norm_layer: the ResNet's normalisation (frozen batch norm by default).
        trainable_layers: how many stages, from ``layer4`` backwards (``layer4, layer3, layer2, layer1, conv1``),
            keep trainable parameters; 0 freezes everything, 5 nothing.
        returned_layers: which of ``layer1``..``layer4`` feed the pyramid (default all four).
        extra_blocks: extra pyramid levels (default a max-pooled ``"pool"`` level).
        out_indices: ``returned_layers`` under the name ``features_only=True`` gives it (the same numbers: stage 0
            is the stem, 1 to 4 are ``layer1``..``layer4``), negative ones counting from the last.
        **legacy: the deprecated ``pretrained=`` (a bool), passed on to the ResNet builder.

    Raises:
        ValueError: an unknown ``backbone_name``, ``trainable_layers`` outside ``[0, 5]``, a returned layer
            outside ``[1, 4]``, both ``returned_layers`` and ``out_indices``.
    """
    build = _builder(_RESNETS, backbone_name)
    network = build(**_take_legacy_pretrained("resnet_fpn_backbone", weights, legacy), norm_layer=norm_layer)
    returned_layers = _returned_layers(network, backbone_name, returned_layers, out_indices)
    return _resnet_fpn_extractor(network, trainable_layers, returned_layers, extra_blocks)


def _returned_layers(
    network: nn.Module, name: str, returned_layers: list[int] | None, out_indices: Sequence[int] | None
) -> list[int] | None:
    """``returned_layers``, or ``out_indices`` (its alias, negative indices allowed) resolved against the stages."""
    if out_indices is None:
        return returned_layers
    if returned_layers is not None:
        raise ValueError("pass either returned_layers or out_indices (the same stage numbers), not both")
    return resolve_out_indices(out_indices, network.feature_info, name)


def _resnet_fpn_extractor(
    backbone: resnet.ResNet,
    trainable_layers: int,
    returned_layers: list[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    norm_layer: NormLayer | None = None,
) -> BackboneWithFPN:
    """Freeze ``backbone`` but its last ``trainable_layers`` stages and put an FPN on ``returned_layers``."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"Trainable layers should be in the range [0,5], got {trainable_layers}")
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trainable.append("bn1")  # the stem's norm, when it has parameters (a non-frozen norm_layer)
    _freeze_all_but(backbone, trainable)

    returned_layers = [1, 2, 3, 4] if returned_layers is None else list(returned_layers)
    if not returned_layers or min(returned_layers) < 1 or max(returned_layers) > 4:
        raise ValueError(f"Each returned layer should be in the range [1,4]. Got {returned_layers}")
    channels = {info["name"]: info["channels"] for info in backbone.feature_info}
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    in_channels_list = [channels[f"layer{k}"] for k in returned_layers]
    return BackboneWithFPN(backbone, return_layers, in_channels_list, 256, extra_blocks, norm_layer)


def _validate_trainable_layers(
    is_trained: bool, trainable_backbone_layers: int | None, max_value: int, default_value: int
) -> int:
    """The number of trainable backbone stages a detection builder uses.

    Without pretrained weights (``is_trained`` False) every stage trains (``max_value``); a value given then
    has no effect, with a warning. Otherwise the value given, or ``default_value``.

    Raises:
        ValueError: the value lies outside ``[0, max_value]``.
    """
    if not is_trained:
        if trainable_backbone_layers is not None:
            warnings.warn(
                "Changing trainable_backbone_layers has no effect if neither pretrained nor pretrained_backbone "
                f"have been set to True, falling back to trainable_backbone_layers={max_value} so that all layers "
                "are trainable",
                stacklevel=caller_stacklevel(),
            )
        trainable_backbone_layers = max_value
    if trainable_backbone_layers is None:
        trainable_backbone_layers = default_value
    if not 0 <= trainable_backbone_layers <= max_value:
        raise ValueError(
            f"Trainable backbone layers should be in the range [0,{max_value}], got {trainable_backbone_layers} "
        )
    return trainable_backbone_layers


def mobilenet_backbone(
    *,
    backbone_name: str,
    weights: WeightsEnum | str | None = None,
    fpn: bool,
    norm_layer: NormLayer = FrozenBatchNorm2d,
    trainable_layers: int = 2,
    returned_layers: list[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    out_indices: Sequence[int] | None = None,
    **legacy: Any,
) -> nn.Module:
    """A MobileNet's ``features`` (``"mobilenet_v2"``, ``"mobilenet_v3_large"`` or ``"mobilenet_v3_small"``),
    with a 256-channel FPN on its last stages or, without ``fpn``, a 1x1 convolution to 256 channels.

    Args:
        backbone_name: the MobileNet builder's name.
        weights: its ImageNet weights (enum member or name), or None.
        fpn: put a feature pyramid on top (else a single feature map).
        norm_layer: the MobileNet's normalisation (frozen batch norm by default).
        trainable_layers: how many resolution stages, from the last backwards, keep trainable parameters.
        returned_layers: which stages feed the pyramid (default the last two).
        extra_blocks: extra pyramid levels (default a max-pooled ``"pool"`` level).
        out_indices: ``returned_layers`` under the name ``features_only=True`` gives it (the same stage numbers,
            see :func:`~visionzoo.models._features.stage_boundaries`), negative ones counting from the last.
        **legacy: the deprecated ``pretrained=`` (a bool), passed on to the MobileNet builder.
    """
    build = _builder(_MOBILENETS, backbone_name)
    network = build(**_take_legacy_pretrained("mobilenet_backbone", weights, legacy), norm_layer=norm_layer)
    returned_layers = _returned_layers(network, backbone_name, returned_layers, out_indices)
    return _mobilenet_extractor(network, fpn, trainable_layers, returned_layers, extra_blocks)


def _mobilenet_extractor(
    backbone: nn.Module,
    fpn: bool,
    trainable_layers: int,
    returned_layers: list[int] | None = None,
    extra_blocks: ExtraFPNBlock | None = None,
    norm_layer: NormLayer | None = None,
) -> nn.Module:
    """Freeze a MobileNet's ``features`` but its last ``trainable_layers`` stages; add the FPN or the 1x1 conv."""
    blocks = backbone.features
    stages = stage_boundaries(blocks)  # the stem, each downsampling block, the last block
    num_stages = len(stages)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"Trainable layers should be in the range [0,{num_stages}], got {trainable_layers} ")
    first_trainable = len(blocks) if trainable_layers == 0 else stages[num_stages - trainable_layers]
    for block in blocks[:first_trainable]:
        block.requires_grad_(False)

    out_channels = 256
    if not fpn:
        # One map: a 1x1 convolution mixes the last block's channels down to out_channels.
        model = nn.Sequential(blocks, nn.Conv2d(blocks[-1].out_channels, out_channels, 1))
        model.out_channels = out_channels
        return model
    returned_layers = [num_stages - 2, num_stages - 1] if returned_layers is None else list(returned_layers)
    if not returned_layers or min(returned_layers) < 0 or max(returned_layers) >= num_stages:
        raise ValueError(f"Each returned layer should be in the range [0,{num_stages - 1}], got {returned_layers} ")
    return_layers = {str(stages[k]): str(v) for v, k in enumerate(returned_layers)}
    in_channels_list = [blocks[stages[k]].out_channels for k in returned_layers]
    model = BackboneWithFPN(blocks, return_layers, in_channels_list, out_channels, extra_blocks, norm_layer)
    if hasattr(backbone, "feature_info"):  # the stages under their names in the MobileNet (features.13 ...)
        model.feature_info = [backbone.feature_info[k] for k in returned_layers]
    return model


def _build_detector(
    assemble: Callable[[WeightsEnum | str | None, bool, int, int, dict[str, Any]], nn.Module],
    backbone: Callable[..., nn.Module],
    weights: WeightsEnum | Path | None,
    progress: bool,
    *,
    num_classes: int | None,
    weights_backbone: WeightsEnum | str | None,
    trainable_backbone_layers: int | None,
    max_trainable: int,
    default_trainable: int = 3,
    default_classes: int = len(_COCO_CATEGORIES),
    kwargs: dict[str, Any],
) -> nn.Module:
    """Every COCO detector builder's shared path: resolve the options as the reference does, then build and load
    via ``build_model``.

    ``assemble(weights_backbone, is_trained, trainable_layers, num_classes, kwargs)`` builds the model around
    ``backbone`` (the classification builder, named for the deprecated ``pretrained_backbone``). With
    ``weights``, the backbone's own weights are not loaded (the checkpoint holds them) and ``num_classes``
    defaults to the weights' 91; another value rebuilds only the class-scoring layers (with a warning).
    ``default_trainable`` backbone stages train unless ``trainable_backbone_layers`` says otherwise; without
    ``weights``, ``num_classes`` defaults to ``default_classes`` (Keypoint R-CNN: background and person).

    Raises:
        ValueError: ``num_classes`` is not a positive int, ``trainable_backbone_layers`` is out of range.
    """
    if "pretrained_backbone" in kwargs:
        from ..segmentation._base import _fold_pretrained_backbone

        weights_backbone = _fold_pretrained_backbone(kwargs.pop("pretrained_backbone"), backbone)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if weights is not None:
        weights_backbone = None
    elif num_classes is None:
        num_classes = default_classes
    is_trained = weights is not None or weights_backbone is not None
    trainable = _validate_trainable_layers(is_trained, trainable_backbone_layers, max_trainable, default_trainable)

    def make(num_classes: int = default_classes) -> nn.Module:
        return assemble(weights_backbone, is_trained, trainable, num_classes, kwargs)

    config = {} if num_classes is None else {"num_classes": num_classes}
    return build_model(make, weights, progress, **config)
