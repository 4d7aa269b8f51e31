"""New class heads on a model that is already built: :func:`reset_classifier`, and the pieces families use for it.

A family takes part with one short method next to its ``__init__``, ``_reset_classifier(self, num_classes)``, which
replaces only the layers whose outputs are per class (a classifier's last linear layer or 1x1 convolution, the
auxiliary heads' ones, a detector's predictors), built with the constructors and initialisation its ``__init__``
uses, so that a reset head starts where a model built with that ``num_classes`` would. ``build_model`` uses the
same method when published weights meet another ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)

Placement = tuple[torch.device, torch.dtype]


class NoHead(nn.Identity):
    """A removed classification head (``num_classes=0``): the model returns the features the head would have
    scored. It remembers their width, so that a later reset can build a head again."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}"


def head_width(layer: nn.Module) -> int:
    """The input width of a head layer: ``in_features`` of a linear layer (or a :class:`NoHead`), ``in_channels``
    of a convolution."""
    width = getattr(layer, "in_features", None)
    return int(width if width is not None else layer.in_channels)


def linear_head(
    in_features: int, num_classes: int, *, bias: bool = True, init: Callable[[nn.Linear], None] | None = None
) -> nn.Module:
    """A linear classification layer initialised by ``init`` (PyTorch's default when None), or a :class:`NoHead`
    for ``num_classes=0``."""
    if num_classes == 0:
        return NoHead(in_features)
    layer = nn.Linear(in_features, num_classes, bias=bias)
    if init is not None:
        init(layer)
    return layer


def truncated_normal(std: float) -> Callable[[nn.Linear], None]:
    """The transformers' head initialisation: weights from a truncated normal with ``std``, zero biases."""

    def init(layer: nn.Linear) -> None:
        nn.init.trunc_normal_(layer.weight, std=std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    return init


def require_classes(num_classes: int, model: str) -> None:
    """Refuse ``num_classes=0`` where a head cannot be removed (segmentation and detection heads)."""
    if num_classes == 0:
        raise ValueError(f"{model} needs at least one class; num_classes=0 removes only classification heads")


def reset_class_logits(detector: nn.Module, num_classes: int) -> None:
    """A single-stage detector's part: its ``head.classification_head`` resets its own class logits."""
    require_classes(num_classes, type(detector).__name__)
    head = getattr(detector.head, "classification_head", None)
    if not hasattr(head, "_reset_classifier"):
        raise TypeError(
            f"cannot reset the class logits of a custom head ({type(detector.head).__name__}); replace it yourself"
        )
    head._reset_classifier(num_classes)


def reset_classifier(model: M, num_classes: int) -> M:
    """Replace ``model``'s class heads, in place, with fresh ones for ``num_classes`` classes, and return it.

    Everything else (pretrained or not) is kept. Each head keeps its design (dropout, bias, width, a 1x1
    convolution where the family scores with one, the auxiliary heads of GoogLeNet, Inception v3 and the
    segmentation models, a detector's box, mask and class-logit predictors, with their prior initialisation) and
    is initialised as a builder given this ``num_classes`` would, on the device and in the dtype of the head it
    replaces. ``num_classes=0`` removes the head of a classification model (image or video): the model then returns
    its pooled features. A detector's ``num_classes`` counts the background; keypoint predictors (which score
    keypoints, not classes) are kept.

    Example::

        from visionzoo.models import reset_classifier, resnet50

        model = reset_classifier(resnet50(weights="DEFAULT"), 10)  # ImageNet features, a new 10-class head

    Raises:
        TypeError: ``model`` is not a visionzoo model with class heads, or ``num_classes`` is not an int.
        ValueError: ``num_classes`` is negative, 0 for a model whose heads cannot be removed, or the model is
            quantized (reset the float model's head, then quantize).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"reset_classifier expects an nn.Module, got {type(model).__name__}")
    reset = getattr(model, "_reset_classifier", None)
    if reset is None:
        raise TypeError(
            f"reset_classifier does not know the heads of {type(model).__name__}: it supports the models of "
            "visionzoo.models and its subpackages (optical flow models have no classes)"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be positive (or 0 to remove the head), got {num_classes}")
    quantized = next((k for k, v in model.state_dict().items() if isinstance(v, torch.Tensor) and v.is_quantized), None)
    if quantized is not None:
        raise ValueError(
            f"{type(model).__name__} is quantized ({quantized} is an int8 tensor), so its head cannot be "
            "re-initialised: reset the head of the float model, fine-tune, then quantize"
        )

    old = _tensors(model)  # held until the new tensors are placed, so that no new tensor can reuse an old id
    placements = {name: p for name, m in model.named_modules() if (p := _placement(m)) is not None}
    reset(num_classes)
    _place_new_tensors(model, {id(t) for t in old}, placements)
    return model


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def _placement(module: nn.Module) -> Placement | None:
    """The device and floating dtype of ``module``'s first floating tensor (its own or a child's)."""
    tensor = next((t for t in _tensors(module) if t.is_floating_point()), None)
    return None if tensor is None else (tensor.device, tensor.dtype)


def _place_new_tensors(model: nn.Module, before: set[int], placements: dict[str, Placement]) -> None:
    """Move the tensors the reset created to where the replaced head was: the placement of the same module path
    before the reset, else of its nearest ancestor that had tensors."""
    for name, module in model.named_modules():
        prefix = name
        while prefix not in placements and prefix:
            prefix = prefix.rpartition(".")[0]
        device, dtype = placements.get(prefix, (torch.device("cpu"), torch.get_default_dtype()))
        for key, param in module.named_parameters(recurse=False):
            if id(param) not in before:
                moved = param.detach().to(device=device, dtype=dtype if param.is_floating_point() else None)
                setattr(module, key, nn.Parameter(moved, requires_grad=param.requires_grad))
        for key, buffer in module.named_buffers(recurse=False):
            if id(buffer) not in before:
                setattr(module, key, buffer.to(device=device, dtype=dtype if buffer.is_floating_point() else None))
