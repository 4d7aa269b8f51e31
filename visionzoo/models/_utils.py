"""The one build-and-load path every builder goes through, plus small builder helpers.

``build_model`` owns everything that is not architecture: choosing ``num_classes`` from the weights,
building on the ``meta`` device when a checkpoint will overwrite every tensor, loading the checkpoint
(by ``assign``, so there is no second copy in memory and no wasted random initialisation), applying a
family's fix-ups of old checkpoint layouts, and re-creating the classification head when the caller asks
for a different number of classes than the weights were trained on.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.fx
from torch import nn
from torch.overrides import TorchFunctionMode

from ..transforms.functional import _count_non_finite
from ._api import WeightsEnum

M = TypeVar("M", bound=nn.Module)

StateDict = dict[str, torch.Tensor]


def build_model(
    make: Callable[..., M],
    weights: WeightsEnum | Path | None,
    progress: bool = True,
    *,
    convert_state_dict: Callable[[StateDict], StateDict] | None = None,
    **kwargs: Any,
) -> M:
    """Build ``make(**kwargs)`` and load ``weights`` into it.

    Args:
        make: the model class (or a function returning the model).
        weights: an enum member, a path to a local checkpoint (``.pth`` or ``.safetensors``), or None for a
            randomly initialised model.
        progress: show a progress bar while downloading.
        convert_state_dict: the family's fix-up of older checkpoint layouts, applied before loading.
        **kwargs: architecture arguments. ``num_classes`` defaults to the weights' number of categories; a
            different value keeps every pretrained tensor except the classification head, which is built
            fresh (with its layers' default initialisation) and named in a warning.

    Raises:
        ValueError: the checkpoint does not fit the architecture (lists missing, unexpected and
            mismatched keys).
    """
    if weights is None:
        return make(**kwargs)

    categories = len(weights.meta.get("categories") or ()) if isinstance(weights, WeightsEnum) else 0
    if categories:
        kwargs.setdefault("num_classes", categories)
    # Only published weights get a fresh head; a user's own checkpoint must fit exactly (a mismatch there is
    # far more likely a forgotten num_classes than a wish to discard the trained head).
    fresh_head = isinstance(weights, WeightsEnum) and kwargs.get("num_classes", categories) != categories

    if isinstance(weights, WeightsEnum):
        state_dict = weights.get_state_dict(progress=progress)
        source = repr(weights)
    else:
        state_dict = load_local_checkpoint(weights)
        source = str(weights)
    if convert_state_dict is not None:
        state_dict = convert_state_dict(state_dict)

    with torch.device("meta"), _SkipInPlaceOnMeta():
        model = make(**kwargs)
    skipped = _head_keys_to_skip(model, state_dict, kwargs["num_classes"]) if fresh_head else []
    load_into(model, {k: v for k, v in state_dict.items() if k not in skipped}, source, allow_missing=skipped)
    if skipped:
        _reinitialise(model, skipped)
        trained = f"{categories} categories" if categories else f"{state_dict[skipped[0]].shape[0]} outputs"
        warnings.warn(
            f"num_classes={kwargs['num_classes']} differs from the {trained} of {source}: "
            f"every pretrained tensor was loaded except {', '.join(skipped)}, which were re-initialised "
            f"for {kwargs['num_classes']} classes (fine-tune them before use)",
            UserWarning,
            stacklevel=3,
        )
    _check_materialised(model, source)
    return model


class _SkipInPlaceOnMeta(TorchFunctionMode):
    """Turns in-place calls on ``meta`` tensors (random initialisation: ``nn.init.normal_`` and friends) into no-ops.

    A model built to receive a checkpoint has no data to initialise, yet some fills on ``meta`` tensors go
    through decompositions that import ``torch._dynamo`` (seconds on first use); skipping them keeps building
    on ``meta`` nearly free.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        target = args[0] if args else (kwargs or {}).get("tensor")  # nn.init passes `tensor=` on
        in_place = name.endswith("_") and not name.startswith("__")
        if in_place and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **(kwargs or {}))


def load_local_checkpoint(path: Path) -> StateDict:
    """Read a user's checkpoint safely and unwrap the usual containers.

    Accepts a bare state_dict, ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers written by training
    scripts, and ``module.``-prefixed keys left by ``DistributedDataParallel``.
    """
    from visionzoo import hub

    loaded: Any = hub.load_checkpoint(path)
    for wrapper_key in ("model", "state_dict", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper_key), dict):
            loaded = loaded[wrapper_key]
            break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded


def load_into(model: nn.Module, state_dict: StateDict, source: str, allow_missing: list[str] = ()) -> None:
    """``load_state_dict(strict=True, assign=True)`` with an error that lists every problem at once."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and k not in allow_missing]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    floating = {k for k, t in expected.items() if isinstance(t, torch.Tensor) and t.is_floating_point()}
    wrong_kind = [
        f"{k}: checkpoint {v.dtype} vs model {expected[k].dtype}"
        for k, v in state_dict.items()
        if k in floating and not v.is_floating_point()
    ]
    if missing or unexpected or mismatched or wrong_kind:
        lines = [f"The checkpoint {source} does not fit {type(model).__name__}:"]
        problems = (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
            ("dtype mismatches", wrong_kind),
        )
        for label, keys in problems:
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        if mismatched:
            lines.append("  (a checkpoint fine-tuned for another number of classes needs num_classes=<that number>)")
        raise ValueError("\n".join(lines))
    # Floating tensors take the model's dtype, as load_state_dict's copy gives them (assign=True would keep a
    # half-precision checkpoint's float16 and make a float16 model).
    state_dict = {
        k: v.to(expected[k].dtype) if k in floating and v.dtype != expected[k].dtype else v for k, v in state_dict.items()
    }
    model.load_state_dict(state_dict, strict=not allow_missing, assign=True)


def _head_keys_to_skip(model: nn.Module, state_dict: StateDict, num_classes: int) -> list[str]:
    """Keys of the classification head(s): tensors that differ from the model's only in their class dimension."""
    expected = model.state_dict()
    return [
        k
        for k, v in state_dict.items()
        if k in expected
        and v.shape != expected[k].shape
        and expected[k].shape[:1] == (num_classes,)
        and v.shape[1:] == expected[k].shape[1:]
    ]


def _reinitialise(model: nn.Module, keys: list[str]) -> None:
    """Give the modules owning ``keys`` real storage and their default initialisation."""
    device = next((t.device for t in model.parameters() if not t.is_meta), torch.device("cpu"))
    for owner_name in dict.fromkeys(k.rsplit(".", 1)[0] for k in keys):
        owner = model.get_submodule(owner_name)
        owner.to_empty(device=device, recurse=False)
        if not hasattr(owner, "reset_parameters"):
            raise ValueError(f"Cannot re-initialise {owner_name} ({type(owner).__name__}) for a new num_classes")
        owner.reset_parameters()


def _check_materialised(model: nn.Module, source: str) -> None:
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"Loading {source} left these tensors without data: {', '.join(left[:8])}")


def set_or_check(kwargs: dict[str, Any], name: str, value: Any) -> None:
    """Fix an architecture argument that a builder's name implies (``groups=32`` for resnext50_32x4d)."""
    if name in kwargs and kwargs[name] != value:
        raise ValueError(f"This builder fixes {name}={value!r}; got {name}={kwargs[name]!r}")
    kwargs[name] = value


def conv_bn_layers(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
    bn_momentum: float = 0.1,
) -> list[nn.Module]:
    """Conv (same padding, no bias), BatchNorm and optionally ReLU, as a flat list of layers.

    For families whose checkpoints keep these layers flat in a parent ``Sequential`` (ShuffleNet, MNASNet).
    Built directly rather than taken out of a ``Conv2dNormActivation``: the throw-away containers made those
    models 5-10% slower to build than the reference's.
    """
    padding = (kernel_size - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, momentum=bn_momentum),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going more than 10% below it (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def check_image_batch(x: Any, model: str, channels: int = 3, min_size: tuple[int, int] = (1, 1)) -> None:
    """Validate a model input at the public boundary so mistakes surface as clear errors.

    An empty batch is refused (as the presets refuse it): it is almost always an upstream bug, and the
    reference's answer, an empty output, hides it. NaN and infinite values are refused for CPU inputs, at the
    cost of one summing pass (about 0.1% of a forward); inputs on other devices are not scanned, because
    reading the answer would wait for the device (see ``transforms.functional._count_non_finite``).

    Raises:
        TypeError: ``x`` is not a floating point tensor.
        ValueError: wrong number of dimensions or channels, an empty batch, spatial size below ``min_size``,
            or NaN/infinite values.
    """
    if isinstance(x, torch.fx.Proxy):
        return  # symbolic tracing (feature extraction): the checks apply to the real tensors later
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, {channels}, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating point tensor, got {x.dtype}; "
            "preprocess images with weights.transforms() (it converts uint8 to float and normalises)"
        )
    if x.dim() != 4:
        raise ValueError(f"{model} expects a 4-D batch (N, {channels}, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{model} expects {channels} channels, got {x.shape[1]} (input shape {tuple(x.shape)})")
    if x.shape[0] == 0:
        raise ValueError(f"{model} got an empty batch (input shape {tuple(x.shape)}); pass at least one image")
    if x.shape[-2] < min_size[0] or x.shape[-1] < min_size[1]:
        raise ValueError(
            f"{model} needs images of at least {min_size[0]}x{min_size[1]} pixels, got {x.shape[-2]}x{x.shape[-1]}"
        )
    bad = _count_non_finite(x)
    if bad:
        raise ValueError(
            f"{model} got {bad} NaN or infinite values in its input (shape {tuple(x.shape)}); "
            "check the data source and the preprocessing (e.g. a division by a zero std)"
        )



def _small_normal(linear: nn.Linear) -> None:
    nn.init.normal_(linear.weight, 0.0, 0.01)


def init_conv_net(model: nn.Module, linear: Callable[[nn.Linear], None] | None = _small_normal) -> None:
    """The initialisation most convolutional classifiers share (He et al., 2015).

    Convolutions get He-normal weights scaled by their fan-out, batch and group norms start as the
    identity, and every bias starts at zero. ``linear`` initialises the weight of each ``nn.Linear``
    (default: normal with std 0.01); pass ``None`` to leave linear layers as PyTorch built them.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
            nn.init.ones_(module.weight)
        elif isinstance(module, nn.Linear) and linear is not None:
            linear(module)
        else:
            continue
        if module.bias is not None:
            nn.init.zeros_(module.bias)
