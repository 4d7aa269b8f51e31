"""Small layers shared by the model families.

Conv-Norm-Activation blocks, Squeeze-and-Excitation (Hu et al., https://arxiv.org/abs/1709.01507), a frozen
BatchNorm for detection backbones, Stochastic Depth (Huang et al., https://arxiv.org/abs/1603.09382), an MLP
and a ``Permute`` layer. Attribute names and ``nn.Sequential`` indices are part of the checkpoint format:
they fix the state_dict keys of every model built from these blocks, so they must not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn

from ._library import tracing

__all__ = [
    "Conv2dNormActivation",
    "Conv3dNormActivation",
    "SqueezeExcitation",
    "FrozenBatchNorm2d",
    "BatchNorm2d",
    "convert_frozen_batchnorm",
    "stochastic_depth",
    "StochasticDepth",
    "MLP",
    "Permute",
]

ModuleFactory = Callable[..., nn.Module]


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _as_tuple(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------------------
# Convolution -> normalisation -> activation
# ---------------------------------------------------------------------------------------------------------------


class _ConvNormActivation(nn.Sequential):
    """Convolution, then an optional norm layer, then an optional activation, for any spatial dimension.

    Children are numbered 0, 1, 2 in that order (whichever are present), which gives the checkpoints' keys
    ``0.weight``, ``1.running_mean``, ... The subclasses fix the dimension and the default norm layer.
    """

    _conv: type[nn.Module]
    _ndim: int

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...],
        padding: int | tuple[int, ...] | str | None,
        groups: int,
        norm_layer: ModuleFactory | None,
        activation_layer: ModuleFactory | None,
        dilation: int | tuple[int, ...],
        inplace: bool | None,
        bias: bool | None,
    ) -> None:
        _check_positive("in_channels", in_channels)
        _check_positive("out_channels", out_channels)
        _check_positive("groups", groups)
        if padding is None:
            # "Same" padding for stride 1 and odd kernels; a dilated kernel spans (k - 1) * d + 1 pixels.
            kernel = _as_tuple(kernel_size, self._ndim, "kernel_size")
            dil = _as_tuple(dilation, self._ndim, "dilation")
            padding = tuple((k - 1) // 2 * d for k, d in zip(kernel, dil))
        if bias is None:
            bias = norm_layer is None

        layers: list[nn.Module] = [
            self._conv(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            # inplace=None leaves the activation's own default, for activations without that argument.
            layers.append(activation_layer() if inplace is None else activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels


class Conv2dNormActivation(_ConvNormActivation):
    """``Conv2d`` followed by an optional norm layer and an optional activation.

    Args:
        in_channels: channels of the input.
        out_channels: channels produced by the convolution.
        kernel_size: size of the convolving kernel.
        stride: stride of the convolution.
        padding: explicit padding (int, tuple, ``"same"`` or ``"valid"``). ``None`` pads by
            ``(kernel_size - 1) // 2 * dilation`` per dimension, which keeps the size at stride 1.
        groups: number of blocked connections from input to output channels.
        norm_layer: called with ``out_channels``; ``None`` for no norm layer.
        activation_layer: called with ``inplace=inplace`` (or no argument when ``inplace`` is None); ``None``
            for no activation.
        dilation: spacing between kernel elements.
        inplace: passed to the activation layer.
        bias: whether the convolution has a bias; ``None`` means a bias only when there is no norm layer.

    Raises:
        ValueError: a channel count or ``groups`` is not a positive integer, or a tuple argument has the
            wrong length.
    """

    _conv = nn.Conv2d
    _ndim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str | None = None,
        groups: int = 1,
        norm_layer: ModuleFactory | None = nn.BatchNorm2d,
        activation_layer: ModuleFactory | None = nn.ReLU,
        dilation: int | tuple[int, int] = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            groups,
            norm_layer,
            activation_layer,
            dilation,
            inplace,
            bias,
        )


class Conv3dNormActivation(_ConvNormActivation):
    """``Conv3d`` followed by an optional norm layer and an optional activation.

    Same arguments as :class:`Conv2dNormActivation`, with 3-tuples and ``nn.BatchNorm3d`` as the default
    norm layer.
    """

    _conv = nn.Conv3d
    _ndim = 3

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] | str | None = None,
        groups: int = 1,
        norm_layer: ModuleFactory | None = nn.BatchNorm3d,
        activation_layer: ModuleFactory | None = nn.ReLU,
        dilation: int | tuple[int, int, int] = 1,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            groups,
            norm_layer,
            activation_layer,
            dilation,
            inplace,
            bias,
        )


# ---------------------------------------------------------------------------------------------------------------
# Squeeze-and-Excitation
# ---------------------------------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Squeeze-and-Excitation block (Hu et al., Fig. 1): rescales each channel by a gate computed from the
    globally pooled input.

    The two fully connected layers are 1x1 convolutions (named ``fc1``/``fc2`` after the paper's FC layers).
    ``activation`` and ``scale_activation`` are the paper's delta and sigma (eq. 3).

    Args:
        input_channels: channels of the input (and of the output).
        squeeze_channels: width of the bottleneck between ``fc1`` and ``fc2``.
        activation: factory of the bottleneck activation.
        scale_activation: factory of the gate activation.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: ModuleFactory = nn.ReLU,
        scale_activation: ModuleFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        _check_positive("input_channels", input_channels)
        _check_positive("squeeze_channels", squeeze_channels)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input: Tensor) -> Tensor:
        # Kept separate from forward so that quantizable variants can replace only the multiplication.
        squeezed = self.activation(self.fc1(self.avgpool(input)))
        return self.scale_activation(self.fc2(squeezed))

    def forward(self, input: Tensor) -> Tensor:
        return self._scale(input) * input


# ---------------------------------------------------------------------------------------------------------------
# Frozen BatchNorm
# ---------------------------------------------------------------------------------------------------------------


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm whose statistics and affine parameters are fixed buffers, not trainable parameters.

    Detection models use it in their backbones, where batches are too small for useful batch statistics.
    It computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` over dimension 1 of an
    ``(N, C, ...)`` input. A BatchNorm2d state_dict loads into it as is: ``num_batches_tracked`` is dropped.

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance for numerical stability.
    """

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        _check_positive("num_features", num_features)
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps!r}")
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> FrozenBatchNorm2d:
        """A frozen copy of ``bn``'s current statistics and affine parameters (same device and dtype).

        Raises:
            ValueError: ``bn`` keeps no running statistics, so there is nothing to freeze.
        """
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"cannot freeze {bn}: it has no running statistics (track_running_stats=False)")
        frozen = cls(bn.num_features, eps=bn.eps)
        with torch.no_grad():
            frozen.running_mean = bn.running_mean.detach().clone()
            frozen.running_var = bn.running_var.detach().clone()
            like = bn.running_mean
            # A BatchNorm without affine parameters is the identity affine map.
            frozen.weight = bn.weight.detach().clone() if bn.affine else torch.ones_like(like)
            frozen.bias = bn.bias.detach().clone() if bn.affine else torch.zeros_like(like)
        return frozen

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
        # BatchNorm checkpoints carry a step counter that means nothing here; without this, strict loading
        # would report it as unexpected. `load_state_dict` hands us its own copy of the dict.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        return _normalise(x, self.weight, self.bias, self.running_mean, self.running_var, self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.weight.shape[0]}, eps={self.eps})"


def _normalise(x: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor, eps: float) -> Tensor:
    """Batch normalisation with fixed statistics over dimension 1. The four buffers fold into one scale and one
    shift, so the input is touched by a single FMA."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = (var + eps).rsqrt()
    if weight is not None:
        scale = weight * scale
    shift = -mean * scale
    if bias is not None:
        shift = bias + shift
    return x * scale.reshape(shape) + shift.reshape(shape)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (the same parameters and state_dict) for layers whose batch size depends on the data,
    such as the detection heads that run once per RoI or detection. Traced in eval mode (``torch.export``,
    ``torch.compile``), it normalises with plain arithmetic, which traces for any batch size, where torch's
    batch-norm kernel asks whether the batch is empty; eager calls run ``nn.BatchNorm2d`` itself."""

    def forward(self, input: Tensor) -> Tensor:
        if self.training or self.running_mean is None or self.running_var is None or not tracing():
            return super().forward(input)
        return _normalise(input, self.weight, self.bias, self.running_mean, self.running_var, self.eps)


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` (and ``SyncBatchNorm``) in ``module`` by a :class:`FrozenBatchNorm2d`
    holding the same values.

    Children are replaced in place; the return value is ``module`` itself, or a new frozen layer when
    ``module`` is itself a BatchNorm.
    """
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return FrozenBatchNorm2d.from_batchnorm(module)
    for name, child in module.named_children():
        converted = convert_frozen_batchnorm(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


# ---------------------------------------------------------------------------------------------------------------
# Stochastic Depth
# ---------------------------------------------------------------------------------------------------------------


def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True) -> Tensor:
    """Randomly zero a residual branch (Huang et al., "Deep Networks with Stochastic Depth").

    Survivors are scaled by ``1 / (1 - p)`` so that the expected output equals the input.

    Args:
        input: tensor of shape ``(N, ...)``.
        p: probability of zeroing.
        mode: ``"row"`` draws one decision per sample of the batch, ``"batch"`` one for the whole batch.
        training: when False, the input is returned unchanged.

    Returns:
        A tensor of the input's shape, dtype and device.

    Raises:
        ValueError: ``p`` is outside ``[0, 1]`` or ``mode`` is neither ``"row"`` nor ``"batch"``.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability p must be in [0, 1], got {p!r}")
    if mode not in ("row", "batch"):
        raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
    if not training or p == 0.0:
        return input

    keep = 1.0 - p
    mask_shape = [1] * input.ndim
    if mode == "row":
        mask_shape[0] = input.shape[0]
    mask = input.new_empty(mask_shape).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return input * mask


# The mask's shape depends on the input's, which symbolic tracing cannot see into: record one call instead.
torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    """Module form of :func:`stochastic_depth`; active only in training mode.

    Raises:
        ValueError: as :func:`stochastic_depth`, at construction.
    """

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability p must be in [0, 1], got {p!r}")
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p}, mode={self.mode})"


# ---------------------------------------------------------------------------------------------------------------
# MLP and Permute
# ---------------------------------------------------------------------------------------------------------------


class MLP(nn.Sequential):
    """Multi-layer perceptron: per hidden layer Linear, [norm], activation, Dropout; then Linear, Dropout.

    The last entry of ``hidden_channels`` is the output width and gets no norm or activation. Indices in
    the sequence follow that order (e.g. ``0`` and ``3`` are the Linear layers of a two-layer MLP without
    norm), which is the checkpoints' key layout.

    Args:
        in_channels: width of the input.
        hidden_channels: widths of the successive Linear layers; at least one.
        norm_layer: called with each hidden width; ``None`` for no norm layer.
        activation_layer: factory of the activation; ``None`` for none.
        inplace: passed to the activation and Dropout layers; ``None`` keeps their defaults.
        bias: whether the Linear layers have biases.
        dropout: probability of each Dropout layer.

    Raises:
        ValueError: a width is not a positive integer, ``hidden_channels`` is empty, or ``dropout`` is
            outside ``[0, 1]``.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: list[int],
        norm_layer: ModuleFactory | None = None,
        activation_layer: ModuleFactory | None = nn.ReLU,
        inplace: bool | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        _check_positive("in_channels", in_channels)
        if len(hidden_channels) == 0:
            raise ValueError("hidden_channels must name at least one layer width, got an empty list")
        for width in hidden_channels:
            _check_positive("every entry of hidden_channels", width)
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout!r}")
        inplace_kwargs: dict[str, bool] = {} if inplace is None else {"inplace": inplace}

        layers: list[nn.Module] = []
        width_in = in_channels
        *hidden, width_out = hidden_channels
        for width in hidden:
            layers.append(nn.Linear(width_in, width, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(width))
            if activation_layer is not None:
                layers.append(activation_layer(**inplace_kwargs))
            layers.append(nn.Dropout(dropout, **inplace_kwargs))
            width_in = width
        layers.append(nn.Linear(width_in, width_out, bias=bias))
        layers.append(nn.Dropout(dropout, **inplace_kwargs))
        super().__init__(*layers)


class Permute(nn.Module):
    """Returns ``x.permute(dims)``, e.g. ``Permute([0, 2, 3, 1])`` turns NCHW into NHWC.

    Raises:
        ValueError: ``dims`` repeats an entry.
    """

    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        dims = list(dims)
        if len(set(dims)) != len(dims):
            raise ValueError(f"dims must not repeat a dimension, got {dims!r}")
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
