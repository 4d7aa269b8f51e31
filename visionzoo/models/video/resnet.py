"""Video ResNets: R3D, MC3 and R(2+1)D.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition" (2018). An 18-layer ResNet
whose convolutions see time too: full 3x3x3 kernels (R3D), 3D kernels in the first stage and 2D (1x3x3) ones after
(MC3, "mixed convolutions"), or each 3x3x3 kernel factored into a spatial 1x3x3 and a temporal 3x1x1 convolution
with a BatchNorm and ReLU between them (R(2+1)D), whose middle width keeps the parameter count of the 3D kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from .._api import WeightsEnum, register_model
from .._heads import head_width, linear_head
from .._utils import build_model, init_conv_net
from .._weights import kinetics_entry
from ._common import check_clip_batch

__all__ = [
    "VideoResNet",
    "R3D_18_Weights",
    "MC3_18_Weights",
    "R2Plus1D_18_Weights",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
]

Stride3d = tuple[int, int, int]


# --------------------------------------------------------------------------------------------------
# Convolutions: each kind knows how the shortcut of a strided block must stride to match it
# --------------------------------------------------------------------------------------------------


class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution, strided alike in time and space (``midplanes`` is unused)."""

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> Stride3d:
        """The (time, height, width) stride of the 1x1x1 shortcut of a block strided by ``stride``."""
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """A 1x3x3 convolution: spatial only, strided in space only (``midplanes`` is unused)."""

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__(
            in_planes,
            out_planes,
            kernel_size=(1, 3, 3),
            stride=(1, stride, stride),
            padding=(0, padding, padding),
            bias=False,
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> Stride3d:
        return 1, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factored as 1x3x3 (to ``midplanes`` channels), BatchNorm, ReLU, then 3x1x1."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(
                in_planes,
                midplanes,
                kernel_size=(1, 3, 3),
                stride=(1, stride, stride),
                padding=(0, padding, padding),
                bias=False,
            ),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1), padding=(padding, 0, 0), bias=False
            ),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> Stride3d:
        return stride, stride, stride


ConvMaker = type[Conv3DSimple] | type[Conv3DNoTemporal] | type[Conv2Plus1D]


def _factored_width(in_planes: int, out_planes: int) -> int:
    """The middle width of a (2+1)D factorisation with as many parameters as the 3x3x3 kernel it replaces:
    ``in * out * 27 = mid * (in * 9 + out * 3)``."""
    return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


# --------------------------------------------------------------------------------------------------
# Blocks and stems
# --------------------------------------------------------------------------------------------------


def _conv_bn(conv: nn.Module, planes: int, relu: bool) -> nn.Sequential:
    """``conv``, BatchNorm3d and optionally ReLU, as the ``convN`` Sequentials the checkpoints hold."""
    layers = [conv, nn.BatchNorm3d(planes)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two ``conv_builder`` convolutions (the first strided) with BatchNorm, plus the shortcut, then ReLU.

    Args:
        inplanes, planes: input and output channels.
        conv_builder: one of :class:`Conv3DSimple`, :class:`Conv3DNoTemporal`, :class:`Conv2Plus1D`.
        stride: stride of the first convolution.
        downsample: the shortcut's projection when the shape changes (None: identity).
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        conv_builder: ConvMaker,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        mid = _factored_width(inplanes, planes)
        self.conv1 = _conv_bn(conv_builder(inplanes, planes, mid, stride), planes, relu=True)
        self.conv2 = _conv_bn(conv_builder(planes, planes, mid), planes, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out += shortcut  # in place: one block-sized allocation less per call
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1x1 reduction, a ``conv_builder`` convolution (strided), 1x1x1 expansion by 4, plus the shortcut, then
    ReLU. Arguments as :class:`BasicBlock`; the output has ``4 * planes`` channels."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        conv_builder: ConvMaker,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        mid = _factored_width(inplanes, planes)
        wide = planes * self.expansion
        self.conv1 = _conv_bn(nn.Conv3d(inplanes, planes, kernel_size=1, bias=False), planes, relu=True)
        self.conv2 = _conv_bn(conv_builder(planes, planes, mid, stride), planes, relu=True)
        self.conv3 = _conv_bn(nn.Conv3d(planes, wide, kernel_size=1, bias=False), wide, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        out += shortcut  # in place, as in BasicBlock
        return self.relu(out)


class BasicStem(nn.Sequential):
    """Conv 3x7x7 to 64 channels, stride (1, 2, 2); BatchNorm; ReLU."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class R2Plus1dStem(nn.Sequential):
    """The stem factored like the blocks: 1x7x7 to 45 channels (stride (1, 2, 2)), then 3x1x1 to 64, each with
    BatchNorm and ReLU."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class VideoResNet(nn.Module):
    """A stem, four stages of residual blocks (64, 128, 256, 512 channels; stages 2-4 halve time and space unless
    their convolution kind keeps time), global average pooling over (T, H, W) and a linear head.

    Takes ``(N, 3, T, H, W)`` clips of any size and returns ``(N, num_classes)`` logits.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        conv_makers: the convolution kind of each of the four stages.
        layers: blocks per stage.
        stem: a callable returning the stem (:class:`BasicStem` or :class:`R2Plus1dStem`).
        num_classes: size of the head.
        zero_init_residual: start every block's last BatchNorm at zero, so each block begins as the identity.
            (The reference applies this to Bottleneck blocks only and fails on them; here it works for both kinds.)

    Raises:
        ValueError: not four stages, or a non-positive ``num_classes``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        conv_makers: Sequence[ConvMaker],
        layers: Sequence[int],
        stem: Callable[[], nn.Module],
        num_classes: int = 400,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(conv_makers) != 4 or len(layers) != 4 or min(layers) < 1:
            raise ValueError(
                f"conv_makers and layers must describe 4 stages of at least one block, got {len(conv_makers)} "
                f"convolution kinds and layers={list(layers)}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.inplanes = 64
        self.stem = stem()
        self.layer1 = self._make_layer(block, conv_makers[0], 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._initialise(zero_init_residual)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], conv: ConvMaker, planes: int, blocks: int, stride: int
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self.inplanes, out_planes, kernel_size=1, stride=conv.get_downsample_stride(stride), bias=False
                ),
                nn.BatchNorm3d(out_planes),
            )
        stage = [block(self.inplanes, planes, conv, stride, downsample)]
        self.inplanes = out_planes
        stage += [block(out_planes, planes, conv) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes, init=init_conv_net)  # N(0, 0.01), zero bias

    def _initialise(self, zero_init_residual: bool) -> None:
        """He-normal convolutions (fan-out), identity BatchNorms, a small normal head (std 0.01), zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    last = module.conv3 if isinstance(module, Bottleneck) else module.conv2
                    nn.init.zeros_(last[1].weight)

    def forward(self, x: Tensor) -> Tensor:
        check_clip_batch(x, type(self).__name__)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/video_classification"
_DOCS = (
    "The weights reproduce closely the accuracy of the paper. The accuracies are estimated on video-level with "
    "parameters `frame_rate=15`, `clips_per_video=5`, and `clip_len=16`."
)


def _entry(url: str, **facts: Any) -> Any:
    # Every video ResNet: 112x112 crops of frames resized to 128x171, the video ResNets' own mean and std.
    return kinetics_entry(_URL + url, recipe=_RECIPE, docs=_DOCS, crop=(112, 112), resize=(128, 171), **facts)


class R3D_18_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "r3d_18-b3b3357e.pth", params=33371472, acc1=63.2, acc5=83.479, gflops=40.697, file_mb=127.359
    )
    DEFAULT = KINETICS400_V1


class MC3_18_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "mc3_18-a90a0ba3.pth", params=11695440, acc1=63.96, acc5=84.13, gflops=43.343, file_mb=44.672
    )
    DEFAULT = KINETICS400_V1


class R2Plus1D_18_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "r2plus1d_18-91a641e6.pth", params=31505325, acc1=67.463, acc5=86.175, gflops=40.519, file_mb=120.318
    )
    DEFAULT = KINETICS400_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


def _video_resnet(
    conv_makers: list[ConvMaker], stem: Callable[[], nn.Module], weights: WeightsArg, progress: bool, **kwargs: Any
) -> VideoResNet:
    return build_model(
        VideoResNet, weights, progress, block=BasicBlock, conv_makers=conv_makers, layers=[2, 2, 2, 2], stem=stem,
        **kwargs,
    )  # fmt: skip


@register_model(task="video", weights=R3D_18_Weights)
def r3d_18(*, weights: R3D_18_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VideoResNet:
    """R3D-18: 3x3x3 convolutions throughout."""
    return _video_resnet([Conv3DSimple] * 4, BasicStem, weights, progress, **kwargs)


@register_model(task="video", weights=MC3_18_Weights)
def mc3_18(*, weights: MC3_18_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VideoResNet:
    """MC3-18: 3x3x3 convolutions in the first stage, 1x3x3 in the other three."""
    return _video_resnet([Conv3DSimple] + [Conv3DNoTemporal] * 3, BasicStem, weights, progress, **kwargs)


@register_model(task="video", weights=R2Plus1D_18_Weights)
def r2plus1d_18(
    *, weights: R2Plus1D_18_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VideoResNet:
    """R(2+1)D-18: every 3x3x3 convolution factored into 1x3x3 and 3x1x1."""
    return _video_resnet([Conv2Plus1D] * 4, R2Plus1dStem, weights, progress, **kwargs)
