"""Feature maps out of a classification backbone, by layer name: what dense prediction heads read.

Segmentation models read one or two maps of a dilated ResNet or of MobileNetV3's feature stages; detection
models read the inputs of their feature pyramid the same way. :class:`FeatureTap` keeps the backbone's own
modules under their own names, so checkpoints keep the keys ``backbone.layer4...`` or ``backbone.0.0.weight``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["FeatureTap", "stage_boundaries"]


class FeatureTap(nn.ModuleDict):
    """The children of ``model`` up to the last requested one, run in order, returning the requested outputs.

    Children after the last requested one (pooling, classifier) are left out, so they cost nothing and are not
    in the state_dict. The model must call its children in the order it registered them (ResNet and a
    ``Sequential`` of stages do).

    Args:
        model: the backbone, e.g. a ``ResNet`` or ``MobileNetV3.features``.
        return_layers: ``{child name: output name}``, e.g. ``{"layer3": "aux", "layer4": "out"}``.

    Raises:
        ValueError: a requested name is not a direct child of ``model`` (the message lists the children).
    """

    def __init__(self, model: nn.Module, return_layers: Mapping[str, str]) -> None:
        children = dict(model.named_children())
        unknown = [name for name in return_layers if name not in children]
        if not return_layers or unknown:
            raise ValueError(
                f"return_layers must name children of {type(model).__name__}; unknown: {unknown or 'none given'} "
                f"(children: {', '.join(children)})"
            )
        last = max(list(children).index(name) for name in return_layers)
        super().__init__(list(children.items())[: last + 1])
        self.return_layers = dict(return_layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {}
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                outputs[self.return_layers[name]] = x
        return outputs


def stage_boundaries(blocks: nn.Sequential) -> list[int]:
    """Indices of the blocks whose output starts a new resolution stage, with the first and the last block.

    A block marks itself with ``_is_cn`` when it reduces the resolution (or would, undilated): MobileNet's
    inverted residuals do. For MobileNetV3-Large ``features`` this gives ``[0, 2, 4, 7, 13, 16]``: output
    strides 2, 4, 8, 16, 32 (16 when dilated) and the last 1x1 convolution.
    """
    downsampling = [i for i, block in enumerate(blocks) if getattr(block, "_is_cn", False)]
    return [0, *downsampling, len(blocks) - 1]
