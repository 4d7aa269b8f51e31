"""MobileNet V3 (Large and Small).

Howard et al., "Searching for MobileNetV3" (2019), https://arxiv.org/abs/1905.02244. MobileNet V2's inverted
residuals found by architecture search, with squeeze-and-excitation in some blocks (gated by a hard sigmoid),
hard-swish activations in the deeper half, and a cheaper head. ``dilated`` and ``reduced_tail`` are the
paper's options for dense prediction backbones (section 6.1.2): dilate the last stage instead of striding,
and halve its channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..ops.misc import Conv2dNormActivation, SqueezeExcitation
from ._api import WeightsEnum, register_model
from ._features import inverted_residual_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, init_conv_net, make_divisible
from ._weights import imagenet_entry

__all__ = [
    "MobileNetV3",
    "InvertedResidualConfig",
    "MobileNet_V3_Large_Weights",
    "MobileNet_V3_Small_Weights",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]

NormLayer = Callable[..., nn.Module]

_ACTIVATIONS = {"RE": nn.ReLU, "HS": nn.Hardswish}


class InvertedResidualConfig:
    """One row of the paper's Tables 1 and 2, with channels scaled by ``width_mult``.

    Args:
        input_channels, expanded_channels, out_channels: widths before scaling.
        kernel: depthwise kernel size.
        use_se: whether the block has squeeze-and-excitation.
        activation: ``"RE"`` (ReLU) or ``"HS"`` (hard-swish), as in the paper's tables.
        stride: stride of the depthwise convolution (ignored when ``dilation`` > 1).
        dilation: dilation of the depthwise convolution.
        width_mult: channel multiplier; scaled widths are rounded to multiples of 8.

    Raises:
        ValueError: ``activation`` is neither ``"RE"`` nor ``"HS"``.
    """

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        dilation: int,
        width_mult: float,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be 'RE' (ReLU) or 'HS' (hard-swish), got {activation!r}")
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels: int, width_mult: float) -> int:
        return make_divisible(channels * width_mult, 8)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when the width does not change), depthwise, optional SE, linear 1x1 projection.

    The SE bottleneck is a quarter of the expanded width, rounded to a multiple of 8, and its gate is a hard
    sigmoid (section 5.3 of the paper).

    Raises:
        ValueError: the stride is not 1 or 2.
    """

    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: NormLayer,
        se_layer: Callable[..., nn.Module] = partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid),
    ) -> None:
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {cnf.stride}")
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer)
        activation = nn.Hardswish if cnf.use_hs else nn.ReLU
        expanded = cnf.expanded_channels

        layers: list[nn.Module] = []
        if expanded != cnf.input_channels:
            layers.append(conv(cnf.input_channels, expanded, kernel_size=1, activation_layer=activation))
        layers.append(
            conv(
                expanded,
                expanded,
                kernel_size=cnf.kernel,
                stride=1 if cnf.dilation > 1 else cnf.stride,
                dilation=cnf.dilation,
                groups=expanded,
                activation_layer=activation,
            )
        )
        if cnf.use_se:
            layers.append(se_layer(expanded, make_divisible(expanded // 4, 8)))
        layers.append(conv(expanded, cnf.out_channels, kernel_size=1, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        self.out_channels = cnf.out_channels
        # "Is a convolution that reduces resolution" (or would, undilated): backbones cut stages here.
        self._is_cn = cnf.stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out += x  # in place: the block's output is a fresh tensor
        return out


class MobileNetV3(nn.Module):
    """A 3x3 hard-swish stem, the configured inverted residual blocks, a 1x1 convolution to six times the
    last block's width, pooling, and a two-layer classifier.

    Args:
        inverted_residual_setting: one ``InvertedResidualConfig`` per block.
        last_channel: width of the classifier's hidden layer.
        num_classes: size of the classification head.
        block: block constructor, called as ``block(cnf, norm_layer)``.
        norm_layer: normalisation layer constructor (default BatchNorm with eps 0.001, momentum 0.01).
        dropout: dropout probability before the last linear layer.

    Raises:
        ValueError: the setting is empty. TypeError: it holds something other than ``InvertedResidualConfig``.
    """

    def __init__(
        self,
        inverted_residual_setting: Sequence[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: NormLayer | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("inverted_residual_setting must hold at least one InvertedResidualConfig")
        if not isinstance(inverted_residual_setting, Sequence) or not all(
            isinstance(cnf, InvertedResidualConfig) for cnf in inverted_residual_setting
        ):
            raise TypeError(
                f"inverted_residual_setting must be a list of InvertedResidualConfig, got {inverted_residual_setting!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block = block or InvertedResidual
        # The TensorFlow defaults of the paper's training setup, in PyTorch's momentum convention.
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        conv_hardswish = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.Hardswish)

        last_block_channels = inverted_residual_setting[-1].out_channels
        head_channels = 6 * last_block_channels
        self.features = nn.Sequential(
            conv_hardswish(3, inverted_residual_setting[0].input_channels, stride=2),
            *(block(cnf, norm_layer) for cnf in inverted_residual_setting),
            conv_hardswish(last_block_channels, head_channels, kernel_size=1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(head_channels, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )

        init_conv_net(self)

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier[3] = linear_head(head_width(self.classifier[3]), num_classes, init=init_conv_net)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The maps ``features_only=True`` returns (:func:`inverted_residual_stages`)."""
        return inverted_residual_stages(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# Rows of the paper's Table 1 (Large) and Table 2 (Small): input, kernel, expanded, output, SE, activation,
# stride. ``tail`` marks the last stage, which ``reduced_tail`` halves and ``dilated`` dilates.
_LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
]
_LARGE_TAIL = [(112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1)]
_SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
]
_SMALL_TAIL = [(48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1)]
_ARCHS = {"mobilenet_v3_large": (_LARGE, _LARGE_TAIL, 1280), "mobilenet_v3_small": (_SMALL, _SMALL_TAIL, 1024)}


def _mobilenet_v3_conf(
    arch: str, width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False, **kwargs: Any
) -> tuple[list[InvertedResidualConfig], int]:
    """The block configurations and classifier width of ``arch`` (``"mobilenet_v3_large"`` or ``"..._small"``).

    Args:
        width_mult: channel multiplier of every block and of the classifier.
        reduced_tail: halve the channels of the last stage and of the classifier.
        dilated: dilate the last stage by 2 instead of striding (output stride 16 instead of 32).
        **kwargs: other builder arguments, ignored here.

    Raises:
        ValueError: unknown ``arch``.
    """
    if arch not in _ARCHS:
        raise ValueError(f"Unknown MobileNetV3 arch {arch!r}; expected one of {', '.join(_ARCHS)}")
    body, tail, last_channel = _ARCHS[arch]
    divider = 2 if reduced_tail else 1
    dilation = 2 if dilated else 1
    config = partial(InvertedResidualConfig, width_mult=width_mult)

    setting = [config(*row, 1) for row in body]
    for index, (inp, kernel, expanded, out, se, activation, stride) in enumerate(tail):
        # The tail's first block reads and expands the body's full-width output; only its output is reduced.
        if index > 0:
            inp, expanded = inp // divider, expanded // divider
        setting.append(config(inp, kernel, expanded, out // divider, se, activation, stride, dilation))
    return setting, InvertedResidualConfig.adjust_channels(last_channel // divider, width_mult)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE_V1 = "https://github.com/pytorch/vision/tree/main/references/classification#mobilenetv3-large--small"


class MobileNet_V3_Large_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}mobilenet_v3_large-8738ca79.pth",
        params=5483032,
        acc1=74.042,
        acc5=91.34,
        gflops=0.217,
        file_mb=21.114,
        recipe=_RECIPE_V1,
        docs="Trained from scratch with a simple recipe.",
    )
    IMAGENET1K_V2 = imagenet_entry(
        f"{_URL}mobilenet_v3_large-5c1a4163.pth",
        params=5483032,
        acc1=75.274,
        acc5=92.566,
        gflops=0.217,
        file_mb=21.107,
        recipe="https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning",
        resize=232,
        docs="Retrained with TorchVision's improved recipe, with regularisation tuned for this small model; "
        "a little above the paper. Evaluated after resizing to 232 pixels.",
    )
    DEFAULT = IMAGENET1K_V2


class MobileNet_V3_Small_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}mobilenet_v3_small-047dcff4.pth",
        params=2542856,
        acc1=67.668,
        acc5=87.402,
        gflops=0.057,
        file_mb=9.829,
        recipe=_RECIPE_V1,
        docs="Trained with a simple recipe; above the accuracy the paper reports.",
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _mobilenet_v3(arch: str, weights: WeightsEnum | Path | None, progress: bool, **kwargs: Any) -> MobileNetV3:
    fixed = [name for name in ("inverted_residual_setting", "last_channel") if name in kwargs]
    if fixed:
        raise ValueError(
            f"{arch} derives {' and '.join(fixed)} from width_mult, reduced_tail and dilated; "
            "build MobileNetV3 directly for a custom setting"
        )
    setting, last_channel = _mobilenet_v3_conf(arch, **kwargs)
    for option in ("width_mult", "reduced_tail", "dilated"):
        kwargs.pop(option, None)
    return build_model(
        MobileNetV3, weights, progress, inverted_residual_setting=setting, last_channel=last_channel, **kwargs
    )


@register_model(weights=MobileNet_V3_Large_Weights)
def mobilenet_v3_large(
    *, weights: MobileNet_V3_Large_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV3:
    """MobileNet V3 Large.

    Args:
        weights: a ``MobileNet_V3_Large_Weights`` member, its name, ``None`` for random initialisation, or
            the path of a local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``width_mult``, ``reduced_tail``, ``dilated`` (see ``_mobilenet_v3_conf``) and
            ``MobileNetV3`` arguments (num_classes, block, norm_layer, dropout).
    """
    return _mobilenet_v3("mobilenet_v3_large", weights, progress, **kwargs)


@register_model(weights=MobileNet_V3_Small_Weights)
def mobilenet_v3_small(
    *, weights: MobileNet_V3_Small_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV3:
    """MobileNet V3 Small; arguments as ``mobilenet_v3_large``."""
    return _mobilenet_v3("mobilenet_v3_small", weights, progress, **kwargs)
