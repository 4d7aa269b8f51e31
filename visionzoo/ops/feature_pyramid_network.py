"""Feature Pyramid Network (Lin et al., https://arxiv.org/abs/1612.03144): a top-down pathway with lateral 1x1
connections that gives every backbone level the same number of channels, plus optional extra coarser levels."""

from __future__ import annotations

import abc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .misc import Conv2dNormActivation

__all__ = ["ExtraFPNBlock", "FeaturePyramidNetwork", "LastLevelMaxPool", "LastLevelP6P7"]


def _init_conv(conv: nn.Conv2d) -> None:
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


class ExtraFPNBlock(nn.Module, abc.ABC):
    """Base class of the blocks that add levels after the FPN; a subclass that does not define ``forward`` cannot be
    instantiated."""

    @abc.abstractmethod
    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        """Take the FPN outputs, the FPN inputs and the level names; return the extended outputs and names."""


class LastLevelMaxPool(ExtraFPNBlock):
    """Adds a level ``"pool"``: the last output subsampled by 2 (a 1x1 max pooling with stride 2)."""

    def forward(self, x: list[Tensor], y: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        names.append("pool")
        x.append(F.max_pool2d(x[-1], kernel_size=1, stride=2, padding=0))
        return x, names


class LastLevelP6P7(ExtraFPNBlock):
    """Adds levels ``"p6"`` and ``"p7"`` (RetinaNet): two stride-2 3x3 convolutions, the first on P5 when it has
    ``in_channels`` channels, otherwise on C5."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        _init_conv(self.p6)
        _init_conv(self.p7)
        self.use_P5 = in_channels == out_channels

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        p6 = self.p6(p[-1] if self.use_P5 else c[-1])
        p7 = self.p7(F.relu(p6))
        p.extend([p6, p7])
        names.extend(["p6", "p7"])
        return p, names


class FeaturePyramidNetwork(nn.Module):
    """FPN over an ordered dict of feature maps, finest first.

    Args:
        in_channels_list: channels of each input level.
        out_channels: channels of every output level.
        extra_blocks: adds levels after the top-down pass (e.g. :class:`LastLevelMaxPool`).
        norm_layer: normalisation after each convolution; none by default.

    Returns (forward): an ordered dict with the input's keys (then the extra blocks'), finest first.
    """

    _version = 2  # version 1 checkpoints stored the convolutions as inner_blocks.N.weight, not inner_blocks.N.0.weight

    def __init__(
        self,
        in_channels_list: list[int],
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if any(c == 0 for c in in_channels_list):
            raise ValueError(f"FeaturePyramidNetwork: in_channels_list must not contain 0, got {in_channels_list}")
        if extra_blocks is not None and not isinstance(extra_blocks, ExtraFPNBlock):
            raise TypeError(f"extra_blocks should be of type ExtraFPNBlock not {type(extra_blocks)}")
        conv = Conv2dNormActivation
        self.inner_blocks = nn.ModuleList(
            conv(c, out_channels, kernel_size=1, padding=0, norm_layer=norm_layer, activation_layer=None)
            for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            conv(out_channels, out_channels, kernel_size=3, norm_layer=norm_layer, activation_layer=None)
            for _ in in_channels_list
        )
        for m in self.modules():  # before extra_blocks, which initialise themselves
            if isinstance(m, nn.Conv2d):
                _init_conv(m)
        self.extra_blocks = extra_blocks

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict, *args: Any) -> None:
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for block in ("inner_blocks", "layer_blocks"):
                for i in range(len(self.inner_blocks)):
                    for kind in ("weight", "bias"):
                        old = f"{prefix}{block}.{i}.{kind}"
                        if old in state_dict:
                            state_dict[f"{prefix}{block}.{i}.0.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def forward(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        names = list(x.keys())
        features = list(x.values())
        if len(features) != len(self.inner_blocks):
            raise ValueError(
                f"FeaturePyramidNetwork: expected {len(self.inner_blocks)} feature maps, got {len(features)} ({names})"
            )
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[idx](features[idx])
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, features, names)
        return OrderedDict(zip(names, results))
