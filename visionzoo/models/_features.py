"""Feature maps out of a classification backbone, by layer name: what dense prediction heads read.

Segmentation models read one or two maps of a dilated ResNet or of MobileNetV3's feature stages; detection
models read the inputs of their feature pyramid the same way; ``features_only=True`` on any classification builder
returns a :class:`FeatureMaps` of its stages. All of them are a :class:`FeatureTap`, which keeps the backbone's own
modules under their own names, so checkpoints keep their keys (``backbone.layer4...``, ``features.3.0...``).

Each classification family says which of its modules are its stages in its ``feature_info`` (name, channels,
stride), and, where running its children in order is not the whole story (ViT's class token, Swin's channels-last
maps, GoogLeNet's input transform), what else it needs in a :class:`FeatureRecipe` from ``_feature_recipe()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn

from ._utils import check_image_batch

__all__ = [
    "FeatureMaps",
    "FeatureRecipe",
    "FeatureTap",
    "inverted_residual_stages",
    "last_per_stride",
    "static_stages",
    "sequential_stages",
    "stage_boundaries",
]

# Glue run on the running tensor before a child: ``fn(tap, x)``, with the tap holding that child (and the tapped
# module's own parameters, e.g. ViT's class token).
Prepare = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class FeatureTap(nn.ModuleDict):
    """The children of ``model`` up to the last requested one, run in order, returning the requested outputs.

    Children after the last requested one (pooling, classifier) are left out, so they cost nothing and are not
    in the state_dict. The model must call its children in the order it registered them (ResNet and a
    ``Sequential`` of stages do). A dotted name (``"features.3"``) taps a grandchild: the child ``features`` is
    kept as a tap of its own children, so the keys stay ``features.3...``. The tapped modules' own parameters and
    buffers (ViT's ``class_token``) are kept under their names too.

    Args:
        model: the backbone, e.g. a ``ResNet`` or ``MobileNetV3.features``.
        return_layers: ``{module name: output name}``, e.g. ``{"layer3": "aux", "layer4": "out"}``.
        prepare: ``{child name: fn(tap, x)}``, glue applied to the running tensor before that child runs.
        readout: applied to every returned output (not to the running tensor), e.g. a permute to channels first.
        skip: children that are not run and not kept (side branches such as an auxiliary classifier).

    Raises:
        ValueError: a requested name is not a child of ``model`` (the message lists the children).
    """

    def __init__(
        self,
        model: nn.Module,
        return_layers: Mapping[str, str],
        *,
        prepare: Mapping[str, Prepare] | None = None,
        readout: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skip: Sequence[str] = (),
    ) -> None:
        children = {name: child for name, child in model.named_children() if name not in skip}
        unknown = [name for name in return_layers if name.split(".", 1)[0] not in children]
        if not return_layers or unknown:
            raise ValueError(
                f"return_layers must name children of {type(model).__name__}; unknown: {unknown or 'none given'} "
                f"(children: {', '.join(children)})"
            )
        order = list(children)
        last = max(order.index(name.split(".", 1)[0]) for name in return_layers)
        kept: list[tuple[str, nn.Module]] = []
        for name in order[: last + 1]:
            inner = {k.split(".", 1)[1]: v for k, v in return_layers.items() if k.startswith(name + ".")}
            kept.append((name, FeatureTap(children[name], inner, readout=readout) if inner else children[name]))
        super().__init__(kept)
        for name, parameter in model.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        buffers = dict(model.named_buffers(recurse=False))
        persistent = set(model.state_dict(keep_vars=True)) if buffers else set()
        for name, buffer in buffers.items():
            self.register_buffer(name, buffer, persistent=name in persistent)
        self.return_layers = {k: v for k, v in return_layers.items() if "." not in k}
        self._prepare = dict(prepare or {})
        self._readout = readout

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs: dict[str, torch.Tensor] = {}
        self._run(x, outputs)
        return outputs

    def _run(self, x: torch.Tensor, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        for name, module in self.items():
            if name in self._prepare:
                x = self._prepare[name](self, x)
            x = module._run(x, outputs) if isinstance(module, FeatureTap) else module(x)
            if name in self.return_layers:
                outputs[self.return_layers[name]] = x if self._readout is None else self._readout(x)
        return x


@dataclass(frozen=True)
class FeatureRecipe:
    """What a family needs, besides the stage names of its ``feature_info``, to run its stages on their own.

    Attributes:
        min_size: the smallest (height, width) the network takes; every input is checked as the classification
            model checks it (``check_image_batch``: a float batch of 3-channel images, finite values).
        check: a further check of an input batch (ViT's fixed image size).
        prepare: glue before top-level children (see :class:`FeatureTap`).
        readout: turns a stage output into an (N, C, H, W) map (Swin: channels last; ViT: tokens).
        skip: top-level children that are side branches (Inception v3's auxiliary classifier).
    """

    min_size: tuple[int, int] = (1, 1)
    check: Callable[[torch.Tensor], None] | None = None
    prepare: Mapping[str, Prepare] = field(default_factory=dict)
    readout: Callable[[torch.Tensor], torch.Tensor] | None = None
    skip: tuple[str, ...] = ()


class FeatureMaps(FeatureTap):
    """A classification network's stage outputs, as a list of (N, C, H, W) maps: what ``features_only=True`` builds.

    Only the modules up to the last selected stage are kept, under their names in the classification model, so
    its checkpoints load into this model (their other keys are unexpected here). Built by the classification
    builders; use ``get_model(name, features_only=True, out_indices=...)`` rather than this class.

    Attributes:
        feature_info: one dict per returned map, in order: ``index`` (of the stage), ``name`` (of the module in the
            classification model), ``channels`` and ``stride`` (the reduction from the input).
        input_size: (height, width), for a network built for one input size (ViT, MaxViT) only.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None, *, name: str | None = None) -> None:
        stages = model_stages(model)
        label = name or type(model).__name__
        indices = resolve_out_indices(out_indices, stages, label)
        recipe: FeatureRecipe = model._feature_recipe() if hasattr(model, "_feature_recipe") else FeatureRecipe()
        super().__init__(
            model,
            {stages[i]["name"]: str(k) for k, i in enumerate(indices)},
            prepare=recipe.prepare,
            readout=recipe.readout,
            skip=recipe.skip,
        )
        self.feature_info = [{"index": i, **stages[i]} for i in indices]
        if getattr(model, "input_size", None) is not None:
            self.input_size = tuple(model.input_size)  # built for one input size (ViT, MaxViT)
        self._min_size = recipe.min_size
        self._check = recipe.check
        self._label = label

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        check_image_batch(x, self._label, min_size=self._min_size)
        if self._check is not None and not isinstance(x, torch.fx.Proxy):
            self._check(x)
        outputs = super().forward(x)
        return [outputs[str(k)] for k in range(len(self.feature_info))]

    def channels(self) -> list[int]:
        """The channels of each returned map."""
        return [info["channels"] for info in self.feature_info]

    def strides(self) -> list[int]:
        """The stride (reduction from the input) of each returned map."""
        return [info["stride"] for info in self.feature_info]

    def extra_repr(self) -> str:
        return f"out_indices={[info['index'] for info in self.feature_info]}"


def model_stages(model: nn.Module) -> list[dict[str, Any]]:
    """A classification network's stages (its ``feature_info``), or a ``ValueError`` for a network without."""
    stages = getattr(model, "feature_info", None)
    if not stages:
        raise ValueError(f"{type(model).__name__} does not describe its stages (no feature_info): no features_only")
    return [dict(info) for info in stages]


def resolve_out_indices(out_indices: Any, stages: Sequence[Mapping[str, Any]], label: str) -> list[int]:
    """``out_indices`` as non-negative stage indices (all stages for None; negative ones count from the end).

    Raises:
        TypeError: not a sequence of ints.
        ValueError: empty, repeated, or an index outside ``[-len(stages), len(stages) - 1]`` (the message lists the
            stages with their names and strides).
    """
    count = len(stages)
    if out_indices is None:
        return list(range(count))
    listing = ", ".join(f"{i}: {s['name']} (stride {s['stride']})" for i, s in enumerate(stages))
    if isinstance(out_indices, (str, bytes)) or not isinstance(out_indices, Sequence):
        raise TypeError(f"out_indices must be a sequence of stage indices, e.g. (1, 2, 3), got {out_indices!r}")
    if any(isinstance(i, bool) or not isinstance(i, int) for i in out_indices):
        raise TypeError(f"out_indices must hold ints, got {out_indices!r}")
    bad = [i for i in out_indices if not -count <= i < count]
    if bad or not out_indices:
        raise ValueError(
            f"out_indices {list(out_indices)} of {label}: each must lie in [{-count}, {count - 1}], "
            f"its {count} stages being {listing}"
        )
    resolved = [i % count for i in out_indices]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"out_indices {list(out_indices)} of {label} name a stage twice (stages: {listing})")
    return resolved


def stage_boundaries(blocks: nn.Sequential) -> list[int]:
    """Indices of the blocks whose output starts a new resolution stage, with the first and the last block.

    A block marks itself with ``_is_cn`` when it reduces the resolution (or would, undilated): MobileNet's
    inverted residuals do. For MobileNetV3-Large ``features`` this gives ``[0, 2, 4, 7, 13, 16]``: output
    strides 2, 4, 8, 16, 32 (16 when dilated) and the last 1x1 convolution.
    """
    downsampling = [i for i, block in enumerate(blocks) if getattr(block, "_is_cn", False)]
    return [0, *downsampling, len(blocks) - 1]


def static_stages(model: nn.Module, names: Sequence[str], in_channels: int = 3) -> list[dict[str, Any]]:
    """``{"name", "channels", "stride"}`` after each of the modules ``names`` of ``model``, which runs them in that
    order, read off the layers without running anything.

    A module's stride is the largest stride of the convolutions and poolings inside it (parallel branches stride
    together); its output channels are its ``out_channels`` when it says (blocks that concatenate branches do), else
    those of its last layer that changes them (a convolution or a norm), else unchanged (activations, poolings).
    """
    stages, stride, channels = [], 1, in_channels
    for name in names:
        module = model.get_submodule(name)
        stride *= _largest_stride(module)
        channels = _output_channels(module) or channels
        stages.append({"name": name, "channels": channels, "stride": stride})
    return stages


def _largest_stride(module: nn.Module) -> int:
    strides = [1]
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            strides.append(stride if isinstance(stride, int) else stride[0])
    return max(strides)


def _output_channels(module: nn.Module) -> int | None:
    if isinstance(getattr(module, "out_channels", None), int):
        return module.out_channels
    if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        return module.num_features if isinstance(module, nn.BatchNorm2d) else module.num_channels
    for child in reversed(list(module.children())):
        channels = _output_channels(child)
        if channels is not None:
            return channels
    return None


def last_per_stride(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The last of consecutive stages with the same stride: one map per resolution, its most processed one."""
    kept: list[dict[str, Any]] = []
    for info in stages:
        if kept and kept[-1]["stride"] == info["stride"]:
            kept.pop()
        kept.append(dict(info))
    return kept


def sequential_stages(model: nn.Module, container: str = "", exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The last child of ``model.<container>`` (or of ``model``) at each stride: the stages of a network that runs
    a plain sequence of layers (VGG's ``features``, ShuffleNet's children), ``exclude`` left out (its head)."""
    parent = model.get_submodule(container)
    prefix = f"{container}." if container else ""
    names = [prefix + name for name, _ in parent.named_children() if name not in exclude]
    return last_per_stride(static_stages(model, names))


def inverted_residual_stages(model: nn.Module) -> list[dict[str, Any]]:
    """MobileNet V2/V3's feature maps: the stem, the first block at each new stride and the last 1x1 convolution of
    ``model.features``, as the detection backbones number them (:func:`stage_boundaries`)."""
    stages = static_stages(model, [f"features.{i}" for i in range(len(model.features))])
    return [stages[i] for i in stage_boundaries(model.features)]
