"""RAFT's building blocks: the residual encoders, the update block (motion encoder, convolutional GRUs, flow head)
and the convex upsampling of the flow with its mask predictor.

Attribute names follow the published checkpoints' keys (``convnormrelu1``, ``convz``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.misc import Conv2dNormActivation

__all__ = [
    "ResidualBlock",
    "BottleneckBlock",
    "FeatureEncoder",
    "MotionEncoder",
    "ConvGRU",
    "RecurrentBlock",
    "FlowHead",
    "UpdateBlock",
    "MaskPredictor",
    "upsample_flow",
]

NormFactory = Callable[[int], nn.Module] | None


def _conv_norm_relu(
    in_channels: int, out_channels: int, kernel_size: int, norm_layer: NormFactory, stride: int = 1, relu: bool = True
) -> Conv2dNormActivation:
    # Biased convolutions even before a norm layer: RAFT's training freezes its batch norms after the first
    # dataset, so the biases keep learning (and the published checkpoints hold them).
    return Conv2dNormActivation(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=stride,
        norm_layer=norm_layer,
        activation_layer=nn.ReLU if relu else None,
        bias=True,
    )


def _projection(in_channels: int, out_channels: int, norm_layer: NormFactory, stride: int) -> nn.Module:
    """The shortcut of a residual block: identity, or a strided 1x1 convolution (and norm) where the shape changes."""
    return _conv_norm_relu(in_channels, out_channels, 1, norm_layer, stride, relu=False)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers plus a shortcut, then ReLU (the shortcut projects when ``stride != 1`` or
    ``always_project``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        norm_layer: NormFactory,
        stride: int = 1,
        always_project: bool = False,
    ) -> None:
        super().__init__()
        self.convnormrelu1 = _conv_norm_relu(in_channels, out_channels, 3, norm_layer, stride)
        self.convnormrelu2 = _conv_norm_relu(out_channels, out_channels, 3, norm_layer)
        projects = stride != 1 or always_project
        self.downsample = _projection(in_channels, out_channels, norm_layer, stride) if projects else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.downsample(x) + self.convnormrelu2(self.convnormrelu1(x)))


class BottleneckBlock(nn.Module):
    """1x1 down to a quarter of ``out_channels``, 3x3 (strided), 1x1 back up, each with norm and ReLU, plus a
    shortcut, then ReLU (raft_small's encoders)."""

    def __init__(self, in_channels: int, out_channels: int, *, norm_layer: NormFactory, stride: int = 1) -> None:
        super().__init__()
        width = out_channels // 4
        self.convnormrelu1 = _conv_norm_relu(in_channels, width, 1, norm_layer)
        self.convnormrelu2 = _conv_norm_relu(width, width, 3, norm_layer, stride)
        self.convnormrelu3 = _conv_norm_relu(width, out_channels, 1, norm_layer)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_channels, out_channels, norm_layer, stride) if stride != 1 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branch = self.convnormrelu3(self.convnormrelu2(self.convnormrelu1(x)))
        return self.relu(self.downsample(x) + branch)


class FeatureEncoder(nn.Module):
    """A 7x7 stem, three stages of two residual blocks and a 1x1 projection; RAFT uses it both as the feature
    encoder (on both images) and as the context encoder (on the first).

    Args:
        block: ``ResidualBlock`` or ``BottleneckBlock`` (anything taking ``(in, out, norm_layer=, stride=)``).
        layers: channels of the stem, of the three stages, and of the output.
        strides: strides of the stem and of the first block of each stage; RAFT needs a total downsampling of 8.
        norm_layer: e.g. ``nn.BatchNorm2d``, ``nn.InstanceNorm2d`` or None.
    """

    def __init__(
        self,
        *,
        block: Callable[..., nn.Module] = ResidualBlock,
        layers: Sequence[int] = (64, 64, 96, 128, 256),
        strides: Sequence[int] = (2, 1, 2, 2),
        norm_layer: NormFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(layers) != 5:
            raise ValueError(f"FeatureEncoder needs 5 layer widths (stem, 3 stages, output), got {len(layers)}")
        if len(strides) != 4:
            raise ValueError(f"FeatureEncoder needs 4 strides (stem and 3 stages), got {len(strides)}")
        self.convnormrelu = _conv_norm_relu(3, layers[0], 7, norm_layer, strides[0])
        for index, (width, stride) in enumerate(zip(layers[1:4], strides[1:]), start=1):
            stage = nn.Sequential(
                block(layers[index - 1], width, norm_layer=norm_layer, stride=stride),
                block(width, width, norm_layer=norm_layer, stride=1),
            )
            self.add_module(f"layer{index}", stage)
        self.conv = nn.Conv2d(layers[3], layers[4], kernel_size=1)
        self.output_dim = layers[4]
        self.downsample_factor = 2 ** sum(1 for s in strides if s == 2)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convnormrelu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.conv(x)


class MotionEncoder(nn.Module):
    """Encodes the current flow and its correlation features together; the flow itself is appended to the output
    (``out_channels`` in all, the last 2 being the flow).

    Args:
        in_channels_corr: channels of the correlation features (the correlation block's ``out_channels``).
        corr_layers: widths of the 1x1 (and optional 3x3) convolutions on the correlation features.
        flow_layers: widths of the 7x7 and 3x3 convolutions on the flow.
        out_channels: channels of the output, the flow's 2 included.
    """

    def __init__(
        self,
        *,
        in_channels_corr: int,
        corr_layers: Sequence[int] = (256, 192),
        flow_layers: Sequence[int] = (128, 64),
        out_channels: int = 128,
    ) -> None:
        super().__init__()
        if len(flow_layers) != 2:
            raise ValueError(f"MotionEncoder needs 2 flow_layers, got {len(flow_layers)}")
        if len(corr_layers) not in (1, 2):
            raise ValueError(f"MotionEncoder needs 1 or 2 corr_layers, got {len(corr_layers)}")
        self.convcorr1 = _conv_norm_relu(in_channels_corr, corr_layers[0], 1, None)
        self.convcorr2 = (
            _conv_norm_relu(corr_layers[0], corr_layers[1], 3, None) if len(corr_layers) == 2 else nn.Identity()
        )
        self.convflow1 = _conv_norm_relu(2, flow_layers[0], 7, None)
        self.convflow2 = _conv_norm_relu(flow_layers[0], flow_layers[1], 3, None)
        self.conv = _conv_norm_relu(corr_layers[-1] + flow_layers[-1], out_channels - 2, 3, None)
        self.out_channels = out_channels

    def forward(self, flow: Tensor, corr_features: Tensor) -> Tensor:
        corr = self.convcorr2(self.convcorr1(corr_features))
        motion = self.convflow2(self.convflow1(flow))
        return torch.cat([self.conv(torch.cat([corr, motion], dim=1)), flow], dim=1)


class ConvGRU(nn.Module):
    """A GRU cell whose gates are convolutions over the hidden state and the input, concatenated."""

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int],
    ) -> None:
        super().__init__()
        channels = hidden_size + input_size
        self.convz = nn.Conv2d(channels, hidden_size, kernel_size=kernel_size, padding=padding)  # update gate
        self.convr = nn.Conv2d(channels, hidden_size, kernel_size=kernel_size, padding=padding)  # reset gate
        self.convq = nn.Conv2d(channels, hidden_size, kernel_size=kernel_size, padding=padding)  # candidate

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        hx = torch.cat([h, x], dim=1)
        update = torch.sigmoid(self.convz(hx))
        reset = torch.sigmoid(self.convr(hx))
        candidate = torch.tanh(self.convq(torch.cat([reset * h, x], dim=1)))
        return (1 - update) * h + update * candidate


class RecurrentBlock(nn.Module):
    """One or two ConvGRUs applied in turn to the hidden state (raft_large: a 1x5 then a 5x1 one, which see as far
    as a 5x5 GRU for less compute).

    Args:
        input_size: channels of the input (motion features and context).
        hidden_size: channels of the hidden state.
        kernel_size, padding: one entry per GRU.
    """

    def __init__(
        self,
        *,
        input_size: int,
        hidden_size: int,
        kernel_size: Sequence[int | tuple[int, int]] = ((1, 5), (5, 1)),
        padding: Sequence[int | tuple[int, int]] = ((0, 2), (2, 0)),
    ) -> None:
        super().__init__()
        if len(kernel_size) != len(padding):
            raise ValueError(
                f"RecurrentBlock needs one padding per kernel size, got {len(kernel_size)} kernel sizes and "
                f"{len(padding)} paddings"
            )
        if len(kernel_size) not in (1, 2):
            raise ValueError(f"RecurrentBlock holds 1 or 2 GRUs, got {len(kernel_size)} kernel sizes")
        grus = [
            ConvGRU(input_size=input_size, hidden_size=hidden_size, kernel_size=k, padding=p)
            for k, p in zip(kernel_size, padding)
        ]
        self.convgru1 = grus[0]
        self.convgru2 = grus[1] if len(grus) == 2 else None
        self.hidden_size = hidden_size

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        h = self.convgru1(h, x)
        return h if self.convgru2 is None else self.convgru2(h, x)


class FlowHead(nn.Module):
    """Two 3x3 convolutions (ReLU between) from the hidden state to a flow update ``(N, 2, h, w)``."""

    def __init__(self, *, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_size, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_size, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """One refinement step: encode the motion, update the recurrent hidden state with it and the context, and
    predict a flow update from the new state.

    Attributes:
        hidden_state_size: channels of the recurrent block's hidden state (RAFT splits its context this way).
    """

    def __init__(self, *, motion_encoder: nn.Module, recurrent_block: nn.Module, flow_head: nn.Module) -> None:
        super().__init__()
        self.motion_encoder = motion_encoder
        self.recurrent_block = recurrent_block
        self.flow_head = flow_head
        self.hidden_state_size: int = recurrent_block.hidden_size

    def forward(
        self, hidden_state: Tensor, context: Tensor, corr_features: Tensor, flow: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(new hidden state, flow update)``."""
        motion = self.motion_encoder(flow, corr_features)
        hidden_state = self.recurrent_block(hidden_state, torch.cat([context, motion], dim=1))
        return hidden_state, self.flow_head(hidden_state)


class MaskPredictor(nn.Module):
    """Predicts, from the hidden state, the weights of the convex upsampling: 9 neighbour weights for each of the
    8x8 output pixels of every position (``(N, 8 * 8 * 9, h, w)``; paper section 3.3 and appendix B).

    Args:
        multiplier: scales the output; the original code's 0.25 damps this branch's gradients.
    """

    def __init__(self, *, in_channels: int, hidden_size: int, multiplier: float = 0.25) -> None:
        super().__init__()
        self.convrelu = _conv_norm_relu(in_channels, hidden_size, 3, None)
        self.conv = nn.Conv2d(hidden_size, 8 * 8 * 9, 1, padding=0)
        self.multiplier = multiplier

    def forward(self, x: Tensor) -> Tensor:
        return self.multiplier * self.conv(self.convrelu(x))


def upsample_flow(flow: Tensor, up_mask: Tensor | None = None, factor: int = 8) -> Tensor:
    """Flow ``(N, 2, h, w)`` at 1/``factor`` resolution -> ``(N, 2, factor*h, factor*w)`` in full-resolution pixels.

    With ``up_mask`` ``(N, 9 * factor**2, h, w)``, each output pixel is a convex combination (softmax weights) of
    the 3x3 coarse neighbourhood of its coarse position; without, bilinear interpolation (corners aligned).
    """
    batch_size, channels, height, width = flow.shape
    if up_mask is None:
        return factor * F.interpolate(flow, size=(factor * height, factor * width), mode="bilinear", align_corners=True)
    weights = torch.softmax(up_mask.view(batch_size, 1, 9, factor, factor, height, width), dim=2)
    neighbours = F.unfold(factor * flow, kernel_size=3, padding=1)
    neighbours = neighbours.view(batch_size, channels, 9, 1, 1, height, width)
    fine = (weights * neighbours).sum(dim=2)  # (N, 2, factor, factor, h, w): sub-pixel (i, j) of coarse (y, x)
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(batch_size, channels, factor * height, factor * width)
