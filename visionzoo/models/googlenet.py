"""GoogLeNet (Inception v1).

Szegedy et al., "Going Deeper with Convolutions" (2014), https://arxiv.org/abs/1409.4842. This is the
batch-normalised variant whose weights were ported from TensorFlow: they expect inputs scaled to [-1, 1], which
``transform_input`` produces from ImageNet-normalised ones. Two auxiliary classifiers help training; they run only
in training mode.

``BasicConv2d``, the input re-scaling and the rules for loading pretrained weights are shared with Inception v3.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._api import WeightsEnum, caller_stacklevel, register_model
from ._features import FeatureRecipe
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "GoogLeNet_Weights", "googlenet"]

ConvBlock = Callable[..., nn.Module]


class GoogLeNetOutputs(NamedTuple):
    """What GoogLeNet returns in training mode with ``aux_logits=True``."""

    logits: Tensor
    aux_logits2: Tensor | None
    aux_logits1: Tensor | None


_GoogLeNetOutputs = GoogLeNetOutputs  # the reference still exports this older name


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm with TensorFlow's eps of 1e-3, then ReLU.

    The attributes are ``conv`` and ``bn`` (not a ``Conv2dNormActivation``'s ``0``/``1``) because those are the
    checkpoints' keys. ``conv_kwargs`` go to ``nn.Conv2d`` (kernel_size, stride, padding, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _imagenet_to_unit_range(x: Tensor) -> Tensor:
    """Turn an ImageNet-normalised batch, ``(x - mean) / std``, into TensorFlow's ``(x - 0.5) / 0.5`` scaling."""
    scale = x.new_tensor([std / 0.5 for std in _IMAGENET_STD]).view(1, 3, 1, 1)
    shift = x.new_tensor([(mean - 0.5) / 0.5 for mean in _IMAGENET_MEAN]).view(1, 3, 1, 1)
    return x * scale + shift


def _unit_range_step(features: nn.Module, x: Tensor) -> Tensor:
    """The input transform as a :class:`~visionzoo.models._features.FeatureTap` step (the weights' input scaling)."""
    return _imagenet_to_unit_range(x)


def _unpack_blocks(blocks: list[ConvBlock] | None, defaults: list[ConvBlock]) -> list[ConvBlock]:
    """Validate a swappable list of block classes (``blocks`` / ``inception_blocks``) against its default."""
    if blocks is None:
        return defaults
    if len(blocks) != len(defaults):
        names = ", ".join(block.__name__ for block in defaults)
        raise ValueError(f"Expected {len(defaults)} block classes in the order [{names}], got {len(blocks)}")
    return list(blocks)


class Inception(nn.Module):
    """Four parallel branches, concatenated along channels: 1x1; 1x1 then 3x3; 1x1 then "5x5"; 3x3 max-pool then 1x1.

    Args:
        in_channels: input channels.
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: branch widths, as in Table 1 of the paper
            ("red" is the 1x1 reduction before the larger convolution).
        conv_block: the convolution module class (default ``BasicConv2d``).
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        conv_block: ConvBlock | None = None,
    ) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch1 = conv_block(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv_block(in_channels, ch3x3red, kernel_size=1), conv_block(ch3x3red, ch3x3, kernel_size=3, padding=1)
        )
        # The paper's 5x5 convolution is 3x3 in the ported checkpoints (pytorch/vision#906), so it stays 3x3 here.
        self.branch3 = nn.Sequential(
            conv_block(in_channels, ch5x5red, kernel_size=1), conv_block(ch5x5red, ch5x5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv_block(in_channels, pool_proj, kernel_size=1),
        )

    def _forward(self, x: Tensor) -> list[Tensor]:
        """The branch outputs before concatenation (quantizable variants concatenate them their own way)."""
        return [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: pool to 4x4, 1x1 conv to 128 channels, then two linear layers with dropout between."""

    def __init__(
        self, in_channels: int, num_classes: int, conv_block: ConvBlock | None = None, dropout: float = 0.7
    ) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.conv = conv_block(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        return self.fc2(x)


def _truncated_normal_weight(layer: nn.Conv2d | nn.Linear) -> None:
    nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.01, a=-2, b=2)  # biases keep PyTorch's default


# The last layer at each stride, with its output channels: the stages of features_only=True.
_STAGES = [
    ("conv1", 64, 2),
    ("conv3", 192, 4),
    ("inception3b", 480, 8),
    ("inception4e", 832, 16),
    ("inception5b", 1024, 32),
]


class GoogLeNet(nn.Module):
    """A convolutional stem, nine Inception blocks in three stages, global average pooling and a linear head.

    Args:
        num_classes: size of the classification head (and of the auxiliary heads).
        aux_logits: build the two auxiliary classifiers; in training mode ``forward`` then returns
            ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, in eval mode the logits alone.
        transform_input: re-scale ImageNet-normalised inputs to [-1, 1], as the ported weights expect.
        init_weights: truncated-normal initialisation (std 0.01) of convolutions and linear layers; ``None`` means
            True. False keeps PyTorch's default initialisation (faster to build).
        blocks: the classes used for ``[BasicConv2d, Inception, InceptionAux]`` (quantizable variants swap them).
        dropout: dropout probability before the main head.
        dropout_aux: dropout probability inside the auxiliary heads.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool | None = None,
        blocks: list[ConvBlock] | None = None,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        conv_block, inception_block, aux_block = _unpack_blocks(blocks, [BasicConv2d, Inception, InceptionAux])
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        self.conv1 = conv_block(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_block(64, 64, kernel_size=1)
        self.conv3 = conv_block(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        # Widths from Table 1 of the paper: in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection.
        self.inception3a = inception_block(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception_block(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = inception_block(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception_block(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception_block(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception_block(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception_block(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = inception_block(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception_block(832, 384, 192, 384, 48, 128, 128)

        # The auxiliary heads read the outputs of inception4a and inception4d.
        self.aux1: nn.Module | None = aux_block(512, num_classes, dropout=dropout_aux) if aux_logits else None
        self.aux2: nn.Module | None = aux_block(528, num_classes, dropout=dropout_aux) if aux_logits else None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

        if init_weights is None or init_weights:
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    _truncated_normal_weight(module)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes, init=_truncated_normal_weight)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                aux.fc2 = linear_head(head_width(aux.fc2), num_classes, init=_truncated_normal_weight)

    def _transform_input(self, x: Tensor) -> Tensor:
        return _imagenet_to_unit_range(x) if self.transform_input else x

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Logits and, in training mode with auxiliary heads, the auxiliary logits (aux2 first, as returned)."""
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x), aux2, aux1

    def eager_outputs(self, x: Tensor, aux2: Tensor | None, aux1: Tensor | None) -> GoogLeNetOutputs | Tensor:
        """The named tuple in training mode with auxiliary heads, else the logits alone."""
        return GoogLeNetOutputs(x, aux2, aux1) if self.training and self.aux_logits else x

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The last layer at each stride: ``conv1``, ``conv3``, ``inception3b``, ``4e`` and ``5b`` (strides 2 to 32),
        the maps ``features_only=True`` returns."""
        return [{"name": n, "channels": c, "stride": s} for n, c, s in _STAGES]

    def _feature_recipe(self) -> FeatureRecipe:
        prepare = {"conv1": _unit_range_step} if self.transform_input else {}
        return FeatureRecipe(min_size=(15, 15), prepare=prepare)

    def forward(self, x: Tensor) -> GoogLeNetOutputs | Tensor:
        check_image_batch(x, type(self).__name__, min_size=(15, 15))
        return self.eager_outputs(*self._forward(self._transform_input(x)))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


class GoogLeNet_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        "https://download.pytorch.org/models/googlenet-1378be20.pth",
        params=6624904,
        acc1=69.778,
        acc5=89.53,
        gflops=1.498,
        file_mb=49.731,
        min_size=(15, 15),
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#googlenet",
        docs="Ported from the TensorFlow release of the paper's network; the auxiliary heads were never trained.",
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _apply_pretrained_rules(
    kwargs: dict[str, Any], weights: Any, aux_prefixes: tuple[str, ...], keep_aux_by_default: bool
) -> tuple[str, ...]:
    """Set the Inception family's defaults for loading a checkpoint; return the key prefixes to leave out.

    Checkpoint inputs are scaled to [-1, 1], so ``transform_input`` defaults to True; ``init_weights=True`` is
    refused (the checkpoint overwrites every tensor); ``aux_logits`` defaults to ``keep_aux_by_default``. Without
    auxiliary heads the model is built without them, and their tensors in the checkpoint are ignored.

    Raises:
        ValueError: ``init_weights=True``, or ``aux_logits=False`` with a published weights entry (refused as the
            reference refuses it; a local checkpoint saved without the heads may pass ``aux_logits=False``).
    """
    if kwargs.get("init_weights"):
        raise ValueError("init_weights=True asks for a random initialisation, but weights=... overwrites it; omit it")
    if kwargs.get("aux_logits") is False and isinstance(weights, WeightsEnum):
        default = "drops them for inference" if not keep_aux_by_default else "keeps them, as trained"
        raise ValueError(
            f"aux_logits=False cannot be combined with weights={weights!r}: the published checkpoint holds the "
            f"auxiliary heads. Omit aux_logits (the builder {default}), or set model.aux_logits = False after "
            "building to get plain logits in training mode"
        )
    kwargs["init_weights"] = False
    kwargs.setdefault("transform_input", True)
    return () if kwargs.setdefault("aux_logits", keep_aux_by_default) else aux_prefixes


@register_model(weights=GoogLeNet_Weights)
def googlenet(
    *, weights: GoogLeNet_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> GoogLeNet:
    """GoogLeNet (Inception v1).

    Args:
        weights: a ``GoogLeNet_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local checkpoint. With weights, ``transform_input`` defaults to True and the auxiliary heads are left
            out unless ``aux_logits=True`` is passed (the published ones were never trained: a warning says so).
        progress: show a download progress bar.
        **kwargs: ``GoogLeNet`` arguments (num_classes, aux_logits, transform_input, init_weights, blocks,
            dropout, dropout_aux).

    Raises:
        ValueError: ``init_weights=True`` together with weights.
    """
    aux_keys: tuple[str, ...] = ()
    if weights is not None:
        aux_keys = _apply_pretrained_rules(kwargs, weights, ("aux1.", "aux2."), keep_aux_by_default=False)
        if kwargs["aux_logits"] and isinstance(weights, WeightsEnum):
            warnings.warn(
                f"The auxiliary heads of {weights!r} were never trained; train them before relying on them",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
    return build_model(GoogLeNet, weights, progress, ignore_unexpected=aux_keys, **kwargs)
